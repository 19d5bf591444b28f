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
from store.fs import StoreFS, damaged_as_store_error
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
    """Write a whole view from arrays in memory, replacing any previous one of that name."""
    writer = ViewWriter(store, name, clips.num_rows)
    for key, data in arrays.items():
        writer.write(key, np.asarray(data))
    writer.finish(clips, attrs)


class ViewWriter:
    """Writes a view array by array or block by block (``create`` then ``write_block``), so a view
    larger than memory can be built; ``view.json`` goes last (``finish``), and a previous view of the
    name is removed first, so a reader never takes a half-written view for a complete one."""

    def __init__(self, store: Any, name: str, n_clips: int) -> None:
        self.fs = _fs(store)
        self.name = name
        self.rel = f"aligned/{name}"
        self.n = n_clips
        self.fs.rm(self.rel)
        self.group = zarr.open_group(self.fs.zarr_store(self.rel), mode="w", zarr_format=3)

    def create(self, key: str, shape: tuple[int, ...], dtype: Any) -> zarr.Array:
        """An empty per-clip array (first dimension = clips) or a vector such as mean/std."""
        if len(shape) >= 1 and key.split("/")[-1] not in ("mean", "std") and shape[0] != self.n:
            raise StoreError(f"view {self.name!r}: array {key!r} has {shape[0]} rows for {self.n} clips")
        return self.group.create_array(key, shape=shape, dtype=dtype, compressors=COMPRESSORS, **_layout(shape))

    def write(self, key: str, data: np.ndarray) -> None:
        arr = self.create(key, data.shape, data.dtype)
        if data.size:
            arr[...] = data

    @staticmethod
    def write_block(arr: zarr.Array, start: int, data: np.ndarray) -> None:
        """Rows ``[start, start + len(data))`` of a per-clip array (whole shards when ``start`` is a
        multiple of ``VIEW_SHARD``)."""
        if len(data):
            arr[start : start + len(data)] = data

    def finish(self, clips: pa.Table, attrs: dict[str, Any]) -> None:
        self.fs.write_parquet(f"{self.rel}/clips.parquet", conform(clips, CLIPS_SCHEMA))
        self.fs.write_bytes_atomic(f"{self.rel}/view.json", json.dumps(attrs, sort_keys=True, default=str).encode())


#: clips per zarr shard of a view's per-clip arrays (a block writer's natural unit)
VIEW_SHARD = 256


def _layout(shape: tuple[int, ...]) -> dict[str, Any]:
    """Per-clip arrays get one chunk per clip (a random read decompresses one clip) grouped into
    shards of up to ``VIEW_SHARD`` clips (few files); vectors such as mean/std are one chunk."""
    if len(shape) < 2:
        return {"chunks": shape or ()}
    clip = (1, *shape[1:])
    return {"chunks": clip, "shards": (max(1, min(VIEW_SHARD, shape[0])), *shape[1:])}


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

    def read(self, name: str) -> np.ndarray:
        """A whole array; a damaged chunk is a ``StoreError`` naming the view and the array."""
        arr = self.array(name)
        with damaged_as_store_error(self.fs.path(self.rel, name), f"array of aligned view {self.name!r}"):
            return np.asarray(arr[...])

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
    attrs = fs.read_json(f"{rel}/view.json", "view description")
    with damaged_as_store_error(fs.path(rel, "clips.parquet"), "view clip table"):
        clips = conform(fs.read_parquet(f"{rel}/clips.parquet"), CLIPS_SCHEMA)  # views older than the class columns
    return AlignedView(fs=fs, name=name, attrs=attrs, clips=clips)

