"""Aligned views: dense, padded per-modality arrays that training reads directly.

Layout under ``aligned/<view>/``: a Zarr v3 group with ``<m>/values [N, L, D]``,
``<m>/lengths [N]``, ``<m>/present [N]``, ``<m>/mean`` and ``<m>/std [D]`` per modality ``m``
(plus ``text_tokens/input_ids`` and ``text_tokens/attention_mask [N, T]`` when the text set has
token ids), ``clips.parquet`` (row order, labels, splits) and ``view.json`` (attrs + fingerprint),
written last: a view without ``view.json`` is incomplete and invisible.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import zarr

from store.errors import StoreError
from store.featureset import COMPRESSORS
from store.fs import StoreFS
from store.schema import CLASS_LABELS, conform

#: a view's clip table: the score and, for categorical targets, the class labels (null when absent)
CLIPS_SCHEMA = pa.schema(
    [("row", pa.int64()), ("clip_id", pa.string()), ("label", pa.float64()), ("split", pa.string())]
    + [(name, pa.string()) for name in CLASS_LABELS]
)


def _fs(store: Any) -> StoreFS:
    """Accept a FeatureStore, a StoreFS, a path or a URL."""
    if isinstance(store, StoreFS):
        return store
    if hasattr(store, "fs") and isinstance(store.fs, StoreFS):
        return store.fs
    return StoreFS(os.fspath(store))


def write_view(
    store: Any, name: str, arrays: dict[str, np.ndarray], clips: pa.Table, attrs: dict[str, Any]
) -> None:
    """Write a whole view, replacing any previous one of that name; ``view.json`` goes last."""
    fs = _fs(store)
    rel = f"aligned/{name}"
    fs.rm(rel)
    n = clips.num_rows
    group = zarr.open_group(fs.zarr_store(rel), mode="w", zarr_format=3)
    for key, data in arrays.items():
        data = np.asarray(data)
        if data.ndim >= 1 and key.split("/")[-1] not in ("mean", "std") and data.shape[0] != n:
            raise StoreError(f"view {name!r}: array {key!r} has {data.shape[0]} rows for {n} clips")
        arr = group.create_array(key, shape=data.shape, dtype=data.dtype, compressors=COMPRESSORS, **_layout(data))
        if data.size:
            arr[...] = data
    table = conform(clips, CLIPS_SCHEMA)
    fs.write_parquet(f"{rel}/clips.parquet", table)
    fs.write_bytes_atomic(f"{rel}/view.json", json.dumps(attrs, sort_keys=True, default=str).encode())


def _layout(data: np.ndarray) -> dict[str, Any]:
    """Per-clip arrays get one chunk per clip (a random read decompresses one clip) grouped into
    shards of up to 256 clips (few files); vectors such as mean/std are one chunk."""
    if data.ndim < 2:
        return {"chunks": data.shape or ()}
    clip = (1, *data.shape[1:])
    return {"chunks": clip, "shards": (max(1, min(256, data.shape[0])), *data.shape[1:])}


def group_array(group: zarr.Group, name: str) -> zarr.Array:
    """``group[name]``, which in a view is always an array (KeyError when absent)."""
    arr = group[name]
    if not isinstance(arr, zarr.Array):
        raise StoreError(f"{name!r} is a group, not an array")
    return arr


@dataclass
class AlignedView:
    """A committed view; arrays open lazily so DataLoader workers each open their own handles."""

    fs: StoreFS
    name: str
    attrs: dict[str, Any]
    clips: pa.Table

    @property
    def rel(self) -> str:
        return f"aligned/{self.name}"

    @property
    def fingerprint(self) -> str:
        return str(self.attrs.get("fingerprint", ""))

    @property
    def modalities(self) -> list[str]:
        return sorted(self.attrs.get("modalities", {}))

    def group(self) -> zarr.Group:
        return self.fs.open_group(self.rel)

    def array(self, name: str) -> zarr.Array:
        try:
            return group_array(self.group(), name)
        except KeyError:
            raise StoreError(f"view {self.name!r} has no array {name!r}") from None

    def has_array(self, name: str) -> bool:
        try:
            self.group()[name]
        except KeyError:
            return False
        return True


def open_view(store: Any, name: str) -> AlignedView:
    fs = _fs(store)
    rel = f"aligned/{name}"
    if not fs.exists(f"{rel}/view.json"):
        raise StoreError(f"{fs.url}: no aligned view {name!r} (run `emoflow align` first)")
    attrs = json.loads(fs.read_bytes(f"{rel}/view.json"))
    clips = conform(fs.read_parquet(f"{rel}/clips.parquet"), CLIPS_SCHEMA)  # views older than the class columns
    return AlignedView(fs=fs, name=name, attrs=attrs, clips=clips)

