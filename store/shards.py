"""Merging small shards into large ones during index compaction: fewer files per clip.

Every committed batch is one shard written by one writer (the commit protocol's crash safety), so a
batch of 8 text clips costs 11 files (a group plus values, times and three extras, each metadata
and one chunk): 1.4 files per clip, 1.4 M files at 10^6 clips. Compaction already rewrites the
index under its lock, so it also copies the shards smaller than ``SMALL_SHARD_BYTES`` into merged
shards of up to ``MERGED_SHARD_BYTES``, each array one Zarr v3 sharded file (inner chunks of
``ROWS_PER_CHUNK`` rows stay individually readable), and points the rows at them in the new
consolidated index.

Why it keeps the protocol's guarantees:
- a merged shard is written under a fresh id by the compaction alone, *before* the manifest that
  references it; a crash before the manifest leaves an orphan that vacuum removes;
- the source shards are not deleted: they become unreferenced once the manifest is published, and
  ``vacuum`` removes them later. A reader still holding the previous snapshot reads them until then,
  so compaction writes ``retired/<id>.json`` (the shards it replaced) and vacuum keeps those shards
  for the grace period after their retirement, not after their (old) creation;
- values, times and extras are copied bit for bit, so every row keeps its checksum and ``verify``
  checks merged rows like any others;
- rows committed after the compaction's snapshot (a ``link`` that copied a row pointing at a source
  shard) keep pointing at it, and vacuum keeps a shard any row references.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from store.fs import StoreFS
from store.ids import new_id, now_utc


class ShardedSet(Protocol):
    """What merging and retiring shards use of a feature set (``store.featureset.FeatureSet``)."""

    name: str
    rel: str

    @property
    def fs(self) -> StoreFS: ...

    @property
    def attrs(self) -> dict[str, Any]: ...

    def read_shard(self, shard: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]: ...

    def write_shard(
        self, shard: str, values: np.ndarray, times: np.ndarray, extras: dict[str, list[np.ndarray]], n: int,
        sharded: bool = False,
    ) -> None: ...

log = logging.getLogger(__name__)

SMALL_SHARD_BYTES = 16 << 20  # shards below this (values + times) are merged
MERGED_SHARD_BYTES = 64 << 20  # a merged shard grows to about this size
RETIRED = "retired"  # features/<set>/retired/<id>.json: shards a compaction replaced, and when


@dataclass
class _Bucket:
    """Source shards being copied into one merged shard."""

    sources: list[str] = field(default_factory=list)
    base: dict[str, int] = field(default_factory=dict)  # source shard -> its first row in the merged shard
    values: list[np.ndarray] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)
    extras: dict[str, list[np.ndarray]] = field(default_factory=dict)
    rows: int = 0
    nbytes: int = 0
    signature: tuple[object, ...] | None = None

    def add(self, shard: str, values: np.ndarray, times: np.ndarray, extras: dict[str, np.ndarray]) -> None:
        self.sources.append(shard)
        self.base[shard] = self.rows
        if len(values):
            self.values.append(values)
            self.times.append(times)
            for k, v in extras.items():
                self.extras.setdefault(k, []).append(v)
        self.rows += len(values)
        self.nbytes += values.nbytes + times.nbytes


def _signature(values: np.ndarray, extras: dict[str, np.ndarray]) -> tuple[object, ...]:
    """What must agree for two shards' rows to share arrays: widths, dtypes, extras."""
    return (values.shape[1:], str(values.dtype),
            tuple(sorted((k, str(v.dtype), v.shape[1:]) for k, v in extras.items())))


def small_shards(index: pa.Table, dim: int) -> list[str]:
    """Shards the rows of ``index`` reference whose used range is under ``SMALL_SHARD_BYTES``, in
    shard-id (commit time) order."""
    if index.num_rows == 0:
        return []
    ends = pc.add(index.column("offset"), index.column("length"))
    per_shard = pa.table({"shard": index.column("shard"), "end": ends}).group_by("shard").aggregate([("end", "max")])
    row_bytes = dim * 4 + 16
    shards = per_shard.column("shard").to_pylist()
    sizes = per_shard.column("end_max").to_numpy() * row_bytes
    return sorted(s for s, n in zip(shards, sizes) if n < SMALL_SHARD_BYTES)


def _buckets(fset: ShardedSet, shards: list[str]) -> Iterator[_Bucket]:
    """Consecutive small shards grouped into buckets of up to ``MERGED_SHARD_BYTES`` with one
    signature each. A shard that cannot be read is left where it is (``verify`` reports it)."""
    bucket = _Bucket()
    for shard in shards:
        try:
            values, times, extras = fset.read_shard(shard)
        except Exception as exc:  # a damaged shard stays as it is; merging the others goes on
            log.warning("feature set %s: shard %s left unmerged: %s: %s", fset.name, shard, type(exc).__name__, exc)
            continue
        sig = _signature(values, extras) if len(values) else None
        if bucket.sources and sig is not None and bucket.signature not in (None, sig):
            yield bucket
            bucket = _Bucket()
        bucket.signature = bucket.signature or sig
        bucket.add(shard, values, times, extras)
        if bucket.nbytes >= MERGED_SHARD_BYTES:
            yield bucket
            bucket = _Bucket()
    if bucket.sources:
        yield bucket


def merge_small_shards(fset: ShardedSet, index: pa.Table) -> tuple[pa.Table, list[str]]:
    """Copy the small shards ``index`` references into merged shards and return ``(index with its
    rows pointing at them, the shards replaced)``; ``index`` itself when nothing was merged. Memory:
    one merged shard (≈ ``MERGED_SHARD_BYTES``) at a time."""
    dim = int(fset.attrs.get("dim") or 0)
    moved: dict[str, tuple[str, int]] = {}  # source shard -> (merged shard, base row)
    for bucket in _buckets(fset, small_shards(index, dim)):
        if len(bucket.sources) < 2:
            continue
        merged = new_id()
        values = np.concatenate(bucket.values) if bucket.values else np.zeros((0, dim), np.float32)
        times = np.concatenate(bucket.times) if bucket.times else np.zeros((0, 2), np.float64)
        fset.write_shard(merged, values, times, bucket.extras, bucket.rows, sharded=True)
        moved.update({s: (merged, bucket.base[s]) for s in bucket.sources})
    if not moved:
        return index, []
    shards = index.column("shard").to_pylist()
    offsets = index.column("offset").to_numpy()
    new_shard = [moved[s][0] if s in moved else s for s in shards]
    new_offset = offsets + np.fromiter((moved[s][1] if s in moved else 0 for s in shards), np.int64, len(shards))
    pos = index.schema.get_field_index
    index = index.set_column(pos("shard"), "shard", pa.array(new_shard, pa.string()))
    index = index.set_column(pos("offset"), "offset", pa.array(new_offset, index.schema.field("offset").type))
    return index, sorted(moved)


def write_retired(fset: ShardedSet, shards: list[str]) -> None:
    """Record that ``shards`` were replaced now, before the manifest that replaces them is published,
    so vacuum gives readers of the previous snapshot the grace period from this moment."""
    doc = {"shards": shards, "time": now_utc().isoformat()}
    fset.fs.write_bytes_atomic(f"{fset.rel}/{RETIRED}/{new_id()}.json", json.dumps(doc).encode())


def retired_records(fset: ShardedSet) -> dict[str, list[str]]:
    """Retirement record (relative path) -> the shards it names."""
    out = {}
    for name in fset.fs.ls(f"{fset.rel}/{RETIRED}"):
        if name.endswith(".json") and not name.startswith("."):
            rel = f"{fset.rel}/{RETIRED}/{name}"
            out[rel] = [str(s) for s in fset.fs.read_json(rel, "shard retirement record").get("shards", [])]
    return out
