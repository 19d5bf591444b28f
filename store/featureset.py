"""One feature set: Zarr shards plus its index (Parquet parts, consolidated by ``compact``:
``store.index``), written by ``commit``/``link`` (the commit protocol of ``store.featurestore``)
and read through typed ``IndexRow``s."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import zarr
from zarr.codecs import BloscCodec

from store import schema
from store.errors import StoreError
from store.fs import StoreFS
from store.ids import new_id, now_utc
from store.index import COMPACT_AFTER_PARTS, CompactResult, SetIndex, latest_per_clip, newest_per_fingerprint
from store.shards import merge_small_shards, write_retired

ROWS_PER_CHUNK = 2048
COMPRESSORS = (BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),)  # every Zarr array of the store
EXTRA_PREFIX = "extra_"  # shard array name prefix of a per-row extra
LIGHT = ["clip_id", "fingerprint", "committed_at", "shard"]  # the index columns planning reads


class FeatureLike(Protocol):
    """What a committed clip needs (``features.base.FeatureResult`` satisfies it)."""

    values: np.ndarray
    times: np.ndarray
    extras: dict[str, np.ndarray]
    meta: dict[str, Any]
    absent: str | None


@dataclass
class ClipFeatures:
    """One clip read back from a feature set."""

    clip_id: str
    values: np.ndarray
    times: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    absent: str | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class IndexRow:
    """One committed index row: where a clip's features lie (``shard``, ``offset``, ``length``) and
    what they were computed from. The typed form of ``schema.INDEX``, so readers never index dicts."""

    clip_id: str
    shard: str
    offset: int
    length: int
    fingerprint: str
    checksum: str
    absent: str | None
    meta: dict[str, Any]
    duration: float | None
    committed_at: datetime

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> IndexRow:
        """A row as ``pa.Table.to_pylist`` gives it (``meta`` as JSON text)."""
        return cls(**{**record, "meta": json.loads(record["meta"] or "{}")})

    def record(self) -> dict[str, Any]:
        """The row as ``schema.INDEX`` stores it (``meta`` as sorted JSON text)."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "meta": json.dumps(self.meta, sort_keys=True, default=str)
        }


def _index_table(rows: list[IndexRow]) -> pa.Table:
    return pa.Table.from_pylist([r.record() for r in rows], schema=schema.INDEX)


def checksum(values: np.ndarray, times: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(values).data)  # the buffers themselves: no copy
    h.update(np.ascontiguousarray(times).data)
    return h.hexdigest()


def _rows(group: zarr.Group, name: str, sl: slice) -> np.ndarray:
    """``group[name][sl]`` for a shard's array (a shard holds arrays only)."""
    arr = group[name]
    assert isinstance(arr, zarr.Array), f"{name!r} is a group, not an array"
    return np.asarray(arr[sl])


class SetOwner(Protocol):
    """What a feature set needs of its store (``store.featurestore.FeatureStore``): where it lives,
    and the format upgrade a compaction publishes with."""

    @property
    def fs(self) -> StoreFS: ...

    def upgrade_format(self) -> None: ...


class FeatureSet:
    """One extractor identity's features: Zarr shards plus Parquet index parts."""

    def __init__(self, store: SetOwner, name: str) -> None:
        self.store = store
        self.name = name
        self.rel = f"features/{name}"
        self.index_files = SetIndex(store.fs, self.rel)
        self._parts: pa.Table | None = None  # every index row, read once for index() and fingerprint_rows()
        self._light: pa.Table | None = None  # the planning columns (LIGHT) when _parts is not loaded
        self._index: pa.Table | None = None
        self._rows: dict[str, IndexRow] | None = None
        self._shards: dict[str, zarr.Group] = {}

    @property
    def fs(self) -> StoreFS:
        return self.store.fs

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.fs.open_group(self.rel).attrs)

    # -- writing ---------------------------------------------------------------------------
    def commit(self, items: Iterable[tuple[str, str, FeatureLike, float]]) -> str | None:
        """Commit ``(clip_id, fingerprint, features, media_seconds)`` items as one shard + index part.

        Returns the shard id, or None when ``items`` is empty.
        """
        items = list(items)
        if not items:
            return None
        shard = new_id()
        rows: list[IndexRow] = []
        offset = 0
        values, times = [], []
        extras: dict[str, list[np.ndarray]] = {}
        for clip_id, fp, feat, seconds in items:
            v = np.asarray(feat.values, np.float32)
            t = np.asarray(feat.times, np.float64)
            if v.ndim != 2 or t.shape != (v.shape[0], 2):
                raise StoreError(f"clip {clip_id!r}: values {v.shape} and times {t.shape} do not match")
            values.append(v)
            times.append(t)
            for k, arr in feat.extras.items():
                extras.setdefault(k, []).append(np.asarray(arr))
            rows.append(IndexRow(clip_id=clip_id, shard=shard, offset=offset, length=v.shape[0], fingerprint=fp,
                                 checksum=checksum(v, t), absent=feat.absent, meta=feat.meta,
                                 duration=float(seconds), committed_at=now_utc()))
            offset += v.shape[0]
        dims = {v.shape[1] for v in values}
        if len(dims) != 1:
            raise StoreError(f"feature set {self.name}: clips of one batch have different dims {sorted(dims)}")
        table = _index_table(rows)  # before the shard: a row that cannot be stored leaves no orphan
        self.write_shard(shard, np.concatenate(values), np.concatenate(times), extras, offset)
        self._write_index(shard, table)
        return shard

    def link(self, items: Iterable[tuple[str, str, float]]) -> list[str]:
        """Commit ``(clip_id, fingerprint, media_seconds)`` items as rows pointing at the features already
        committed with that fingerprint (same shard range, checksum, meta, absent), as one index part.

        Identical inputs then cost one extraction, yet every clip stays readable by its own id. Returns
        the clip ids linked; an item whose fingerprint no committed row carries is left out.
        """
        sources = self.fingerprint_rows()
        committed_at = now_utc()
        rows = [
            replace(sources[fp], clip_id=clip_id, duration=float(seconds), committed_at=committed_at)
            for clip_id, fp, seconds in items
            if fp in sources
        ]
        if rows:
            self._write_index(new_id(), _index_table(rows))
        return [r.clip_id for r in rows]

    def write_shard(
        self, shard: str, values: np.ndarray, times: np.ndarray, extras: dict[str, list[np.ndarray]], n: int,
        sharded: bool = False,
    ) -> None:
        """Write shard ``shard`` (a fresh id: one writer per shard). ``sharded``: each array as one Zarr
        v3 sharded file of ``ROWS_PER_CHUNK``-row inner chunks (merged shards: few files, same reads)."""
        try:
            group = zarr.open_group(self.fs.zarr_store(f"{self.rel}/shards/{shard}"), mode="w", zarr_format=3)
            self._write_array(group, "values", values, ("row", "dim"), sharded)
            self._write_array(group, "times", times, ("row", "bound"), sharded)
            for name, parts in extras.items():
                arr = np.concatenate(parts) if parts else np.zeros((0,))
                if arr.shape[0] != n:
                    raise StoreError(f"feature set {self.name}: extra {name!r} has {arr.shape[0]} rows, not {n}")
                self._write_array(group, f"{EXTRA_PREFIX}{name}", arr, None, sharded)
        except OSError as exc:
            raise StoreError(f"cannot write shard {self.fs.path(self.rel, 'shards', shard)}: {exc}") from exc

    @staticmethod
    def _write_array(
        group: zarr.Group, name: str, data: np.ndarray, dims: tuple[str, ...] | None, sharded: bool
    ) -> None:
        rows = max(1, min(ROWS_PER_CHUNK, data.shape[0]))
        chunks = (rows, *data.shape[1:])
        # a Zarr shard must hold whole chunks: round the row count up to a multiple of the chunk rows
        shards = (-(-max(1, data.shape[0]) // rows) * rows, *data.shape[1:]) if sharded else None
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks, shards=shards,
                                 compressors=COMPRESSORS, dimension_names=dims)
        if data.size:
            arr[...] = data

    def _write_index(self, part: str, table: pa.Table) -> None:
        """Publish one index part atomically: the single point where rows become visible to readers."""
        self.fs.write_parquet(f"{self.rel}/index/{part}.parquet", table)
        self._forget()

    def _forget(self) -> None:
        """Drop what was read of the index (after this object changed it)."""
        self._parts = self._light = self._index = None
        self._rows = None

    # -- compaction (store.index) ----------------------------------------------------------
    def compact(self, min_parts: int = 1, merge_shards: bool = True) -> CompactResult | None:
        """Consolidate the index parts into one sorted Parquet file (see ``store.index``) and, with
        ``merge_shards``, copy small shards into large ones (``store.shards``); None when there is
        nothing to do (fewer than ``min_parts`` uncovered parts and no shards to merge) or another
        compaction is running."""
        retired: list[str] = []

        def merge(index: pa.Table) -> pa.Table:
            merged, gone = merge_small_shards(self, index)
            if gone:
                write_retired(self, gone)
                retired.extend(gone)
            return merged

        result = self.index_files.compact(min_parts, before_publish=self.store.upgrade_format,
                                          rewrite=merge if merge_shards else None)
        if result is not None:
            self._forget()
            result = replace(result, shards_retired=len(retired))
        return result

    def maybe_compact(self, threshold: int = COMPACT_AFTER_PARTS) -> CompactResult | None:
        """``compact`` once more than ``threshold`` parts would be opened one by one (one listing to check)."""
        if len(self.index_files.uncovered_parts()) <= threshold:
            return None
        return self.compact(min_parts=threshold + 1)

    # -- reading ---------------------------------------------------------------------------
    def index_parts(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every committed index row, including superseded ones, each once (consolidated file plus
        the parts it does not cover); ``columns`` of ``schema.INDEX`` only, when given."""
        return self.index_files.read(columns)

    def _planning_columns(self) -> pa.Table:
        """``LIGHT`` columns of every row: all that ``committed()`` and ``fingerprint_clips()`` need,
        read with column projection from the consolidated index (planning an unchanged run)."""
        if self._parts is not None:
            return self._parts.select(LIGHT)
        if self._light is None:
            self._light = self.index_parts(LIGHT)
        return self._light

    def _loaded_parts(self) -> pa.Table:
        """``index_parts()`` read once per FeatureSet object (until it writes an index part)."""
        if self._parts is None:
            self._parts = self.index_parts()
        return self._parts

    def index(self) -> pa.Table:
        """The latest committed row per clip (loaded once per FeatureSet object)."""
        if self._index is None:
            self._index = latest_per_clip(self._loaded_parts())
            self._rows = None
        return self._index

    def rows(self) -> dict[str, IndexRow]:
        """clip id -> its latest committed row, in index order (the typed form of ``index()``)."""
        index = self.index()
        if self._rows is None:
            self._rows = {r["clip_id"]: IndexRow.from_record(r) for r in index.to_pylist()}
        return self._rows

    def committed(self) -> dict[str, str]:
        """clip id -> fingerprint of its latest row: what "this clip is committed for these inputs" means."""
        index = self._index if self._index is not None else latest_per_clip(self._planning_columns())
        return dict(zip(index.column("clip_id").to_pylist(), index.column("fingerprint").to_pylist()))

    def fingerprint_rows(self) -> dict[str, IndexRow]:
        """fingerprint -> the newest index row computed from it, under any clip id, superseded rows
        included (their shards stay referenced): the features a clip with these inputs can share."""
        newest = newest_per_fingerprint(self._loaded_parts())
        return {r["fingerprint"]: IndexRow.from_record(r) for r in newest.to_pylist()}

    def fingerprint_clips(self) -> dict[str, str]:
        """fingerprint -> the clip id of ``fingerprint_rows()``'s row, from the planning columns only."""
        newest = newest_per_fingerprint(self._planning_columns())
        return dict(zip(newest.column("fingerprint").to_pylist(), newest.column("clip_id").to_pylist()))

    def shard_ids(self) -> list[str]:
        """Every shard on disk, referenced by an index part or not (what vacuum sifts)."""
        return self.fs.ls(f"{self.rel}/shards")

    def _shard(self, shard: str, cache: bool = True) -> zarr.Group:
        if shard in self._shards:
            return self._shards[shard]
        group = self.fs.open_group(f"{self.rel}/shards/{shard}")
        if cache:
            self._shards[shard] = group
        return group

    def extra_names(self, shard: str) -> list[str]:
        """The per-row extras one shard stores (every shard of a set stores the same ones)."""
        return self._extra_names(self._shard(shard, cache=False))

    @staticmethod
    def _extra_names(group: zarr.Group) -> list[str]:
        return [k[len(EXTRA_PREFIX):] for k in group.array_keys() if k.startswith(EXTRA_PREFIX)]

    def read_shard(self, shard: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Every row of one shard: values, times and all extras (what merging copies)."""
        return self._read_range(shard, 0, None, None, cache=False)

    def _read_range(
        self, shard: str, start: int, stop: int | None, extras: Collection[str] | None, cache: bool = True
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Rows ``[start, stop)`` of one shard: values, times and the ``extras`` present (None: all).
        ``cache`` keeps the opened group for later reads (bulk reads pass False: memory stays flat)."""
        group = self._shard(shard, cache)
        names: list[str] = []
        if extras is None or extras:  # no listing when no extra is wanted (verify)
            stored = self._extra_names(group)
            names = stored if extras is None else [k for k in extras if k in stored]
        sl = slice(start, stop)
        extra = {k: _rows(group, f"{EXTRA_PREFIX}{k}", sl) for k in names}
        return _rows(group, "values", sl), _rows(group, "times", sl), extra

    def read(self, clip_id: str) -> ClipFeatures:
        row = self.rows().get(clip_id)
        if row is None:
            raise StoreError(f"feature set {self.name}: clip {clip_id!r} is not committed")
        return self.read_row(row)

    def lookup(self, clip_id: str) -> ClipFeatures:
        """``read(clip_id)`` without loading the whole index: a filtered read of the consolidated file
        (one row group) plus the uncovered parts. For one-off reads; loops want ``read``/``iter_features``."""
        found = latest_per_clip(self.index_files.read(clip_ids=[clip_id]))
        if found.num_rows == 0:
            raise StoreError(f"feature set {self.name}: clip {clip_id!r} is not committed")
        return self.read_row(IndexRow.from_record(found.to_pylist()[0]))

    def read_many(self, clip_ids: Iterable[str]) -> list[ClipFeatures]:
        return [self.read(c) for c in clip_ids]

    def read_row(self, row: IndexRow) -> ClipFeatures:
        """The features ``row`` points at, every extra included, as stored (no dtype conversion, so
        verify sees what is there)."""
        values, times, ex = self._read_range(row.shard, row.offset, row.offset + row.length, None)
        return self._features(row, values, times, ex)

    def iter_features(
        self, rows: Iterable[IndexRow] | None = None, extras: Collection[str] | None = None, check: bool = True
    ) -> Iterator[tuple[IndexRow, ClipFeatures]]:
        """``rows`` (default: every latest row) with their features, shard by shard: one read per run of
        nearby rows instead of one per clip, for bulk readers (stats, align, verify, benchmarks).
        Rows less than ``ROWS_PER_CHUNK`` rows apart share a read; farther apart (a sample of a
        merged shard) they are read apart, so a sparse subset does not read the whole shard. Within
        a shard, rows come in offset order. ``extras``: the extras to read (None: all).

        ``check``: a clip whose values and times do not match the checksum committed with them (a
        damaged or deleted chunk, which Zarr reads back as zeros) raises ``StoreError`` instead of
        handing what a view or report is built from wrong numbers; ``verify`` checks on its own."""
        by_shard: dict[str, list[IndexRow]] = {}
        for row in self.rows().values() if rows is None else rows:
            by_shard.setdefault(row.shard, []).append(row)
        for shard, items in sorted(by_shard.items()):
            for run in _nearby_runs(items, ROWS_PER_CHUNK):
                lo = run[0].offset
                hi = max(r.offset + r.length for r in run)
                values, times, ex = self._read_range(shard, lo, hi, extras, cache=False)
                for r in run:
                    sl = slice(r.offset - lo, r.offset - lo + r.length)
                    if check and checksum(values[sl], times[sl]) != r.checksum:
                        raise StoreError(
                            f"feature set {self.name}: clip {r.clip_id!r}: stored features do not match their "
                            f"checksum (shard {shard} is damaged); `emoflow store verify` lists every damaged clip, "
                            "`emoflow extract --force` with this set's extractor computes them again")
                    yield r, self._features(r, values[sl], times[sl], {k: v[sl] for k, v in ex.items()})

    @staticmethod
    def _features(row: IndexRow, values: np.ndarray, times: np.ndarray, extras: dict[str, np.ndarray]) -> ClipFeatures:
        return ClipFeatures(clip_id=row.clip_id, values=values, times=times, extras=extras, meta=dict(row.meta),
                            absent=row.absent, fingerprint=row.fingerprint)


def _nearby_runs(rows: list[IndexRow], gap: int) -> Iterator[list[IndexRow]]:
    """``rows`` of one shard in offset order, cut where the rows between two of them would exceed
    ``gap`` (reading a smaller gap costs less than another read)."""
    run: list[IndexRow] = []
    end = 0
    for row in sorted(rows, key=lambda r: r.offset):
        if run and row.offset - end > gap:
            yield run
            run = []
        run.append(row)
        end = max(end, row.offset + row.length)
    if run:
        yield run
