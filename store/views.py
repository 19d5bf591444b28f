"""Aligned views: dense, padded per-modality arrays that training reads directly.

Layout under ``aligned/<view>/``: a Zarr v3 group with ``<m>/values [N, L, D]``,
``<m>/lengths [N]``, ``<m>/present [N]``, ``<m>/mean`` and ``<m>/std [D]`` per modality ``m``
(plus ``text_tokens/input_ids`` and ``text_tokens/attention_mask [N, T]`` when the text set has
token ids), ``clips.parquet`` (row order, labels, splits) and ``view.json`` (attrs + fingerprint),
written last: a view without ``view.json`` is incomplete and invisible.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
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
    with ViewWriter(store, name, clips.num_rows) as writer:
        for key, data in arrays.items():
            writer.write(key, np.asarray(data))
        writer.finish(clips, attrs)


#: a view build's lock older than this (its builder was killed) is broken by the next build
VIEW_LOCK_STALE_S = 3600.0


class ViewWriter:
    """Writes a view array by array or block by block (``create`` then ``write_block``), so a view
    larger than memory can be built. Use it as a context manager.

    The new view is built in ``aligned/.build-<key>`` under the lock ``aligned/.lock-<key>`` (``key``:
    a hash of the name):
    a build that fails leaves the previous view of the name as it was (not deleted before the new
    one exists), and a second build of the same name at once is refused instead of writing its
    arrays into the first one's folder (a view mixing two configs). ``finish`` replaces the old view
    with the new folder and writes ``view.json`` last, so a reader never takes a half-written view
    for a complete one."""

    def __init__(self, store: Any, name: str, n_clips: int) -> None:
        self.fs = _fs(store)
        self.name = name
        self.rel = f"aligned/{name}"
        # by a hash of the name: a view name may already take the 255 bytes a file name can have
        key = hashlib.sha256(name.encode()).hexdigest()[:16]
        self.build = f"aligned/.build-{key}"
        self.lock = f"aligned/.lock-{key}"
        self.n = n_clips
        self._take_lock()
        self.fs.rm(self.build)  # what a killed build of this name left
        self.group = zarr.open_group(self.fs.zarr_store(self.build), mode="w", zarr_format=3)

    def _take_lock(self) -> None:
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}).encode()
        if self.fs.create_exclusive(self.lock, body):
            return
        try:
            holder = self.fs.read_json(self.lock, "view build lock")
        except (FileNotFoundError, StoreError):
            holder = {}  # gone, or damaged by its killed holder: as good as stale
        since = float(holder.get("time", 0.0))
        if time.time() - since >= VIEW_LOCK_STALE_S:
            self.fs.rm(self.lock)
            if self.fs.create_exclusive(self.lock, body):
                return
        raise StoreError(
            f"view {self.name!r} in {self.fs.url} is being built by another run (host {holder.get('host')}, "
            f"pid {holder.get('pid')}, {time.time() - since:.0f} s ago); wait for it, or delete "
            f"{self.fs.path(self.lock)} if that run is dead")

    def __enter__(self) -> ViewWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        """Release the lock; after a failure also drop the half-built folder (the old view stays)."""
        if exc_type is not None:
            self.fs.rm(self.build)
        self.fs.rm(self.lock)

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
        """Replace the view of this name with the built folder; ``view.json`` last."""
        self.fs.write_parquet(f"{self.build}/clips.parquet", conform(clips, CLIPS_SCHEMA))
        self.fs.rm(f"{self.rel}/view.json")  # the old view is invisible before any of its files goes
        self.fs.rm(self.rel)
        self.fs.fs.mv(self.fs.path(self.build), self.fs.path(self.rel), recursive=True)
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

