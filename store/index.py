"""A feature set's index on disk: one Parquet part per commit (the commit protocol's publish step)
plus, once compacted, one consolidated Parquet file that a small manifest names.

Layout under ``features/<set>/``::

    index/<id>.parquet          a part: the rows of one ``commit`` or ``link``, written by that writer
    index/manifest.json         {"consolidated": "<id>.parquet", "parts": [names it covers], "rows": n, ...}
    index/compact.lock          held while a compaction runs (committing writers never look at it)
    consolidated/<id>.parquet   every row of the covered parts, sorted by clip id; immutable, fresh name

Why it is safe without locks for writers: a part is never rewritten, a consolidated file is never
rewritten, and the manifest (one atomic write) is the only thing that says which parts a
consolidated file replaces. A reader lists the parts *first*, then reads the manifest, then reads
the consolidated file and the listed parts the manifest does not cover. Compaction writes the
consolidated file, then the manifest, and deletes covered parts and the previous consolidated
file only after that. So a reader sees each committed row exactly once:

- a part listed and covered by the manifest read is skipped (its rows are in the consolidated file);
- a part listed and not covered is read as a part; a part committed after the listing is simply
  not in this snapshot;
- when a file vanishes between listing and reading (a later compaction removed it once its rows
  were in a newer consolidated file), the reader starts over (``READ_ATTEMPTS``).

Two compactions at once could each delete parts the other's manifest does not cover, so a
compaction holds ``compact.lock`` (an exclusive create); a second one skips. A crash at any step
leaves a readable store: before the manifest, an unreferenced consolidated file (vacuum removes
it); after it, covered parts that readers skip (the next compaction or vacuum removes them).

The manifest is the one file whose loss hides rows: once a compaction deleted the parts it covered,
their rows are only in the consolidated file it named. ``stranded`` finds such rows (verify reports
them, vacuum refuses to run), and a compaction restores the manifest before anything else.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from store import schema
from store.errors import StoreError
from store.fs import StoreFS, damaged_as_store_error
from store.ids import new_id, now_utc

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK = "compact.lock"
READ_ATTEMPTS = 8  # re-reads after a concurrent compaction removed a file between listing and reading
ROW_GROUP_ROWS = 65_536  # consolidated row groups: min/max statistics let a filtered read skip the rest
COMPACT_AFTER_PARTS = 256  # ``maybe_compact``'s default: ≈ 0.3 s of part opens before a compaction pays
ROW_KEY = ("clip_id", "committed_at", "fingerprint")  # a committed row's identity (shard merging keeps it)


def checkpoint(step: str) -> None:
    """Called between the steps of a compaction; tests replace it to simulate a crash at ``step``."""


@dataclass(frozen=True)
class Manifest:
    """Which consolidated file is live and which parts its rows came from."""

    consolidated: str
    parts: frozenset[str]
    rows: int
    created: str

    def to_json(self) -> bytes:
        return json.dumps({"format": "emoflow-index", "version": 1, "consolidated": self.consolidated,
                           "parts": sorted(self.parts), "rows": self.rows, "created": self.created}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        doc = json.loads(data)
        return cls(doc["consolidated"], frozenset(doc["parts"]), int(doc["rows"]), doc.get("created", ""))


@dataclass(frozen=True)
class CompactResult:
    """What one compaction did."""

    feature_set: str
    parts: int  # parts newly folded into the consolidated file
    rows: int  # rows of the new consolidated file
    consolidated: str
    removed: int  # files deleted after the manifest was in place (covered parts, the old consolidated file)
    seconds: float
    shards_retired: int = 0  # small shards whose rows now point at merged shards (store.shards)


def _conform(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """``table`` with exactly ``columns`` of ``schema.INDEX`` (a missing one as nulls)."""
    target = pa.schema([schema.INDEX.field(c) for c in columns])
    for f in target:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    return table.select(list(columns)).cast(target)


class SetIndex:
    """The index files of one feature set (``rel`` = ``features/<set>``)."""

    def __init__(self, fs: StoreFS, rel: str) -> None:
        self.fs = fs
        self.rel = rel
        self.name = rel.rsplit("/", 1)[-1]

    # -- listing ---------------------------------------------------------------------------
    def part_names(self) -> list[str]:
        """Index parts on disk (covered ones included until they are deleted)."""
        return [n for n in self.fs.ls(f"{self.rel}/index") if n.endswith(".parquet") and not n.startswith(".")]

    def manifest(self) -> Manifest | None:
        try:
            data = self.fs.read_bytes(f"{self.rel}/index/{MANIFEST}")
        except FileNotFoundError:
            return None
        with damaged_as_store_error(self.fs.path(self.rel, "index", MANIFEST), "index manifest"):
            return Manifest.from_json(data)

    def consolidated_names(self) -> list[str]:
        return [n for n in self.fs.ls(f"{self.rel}/consolidated") if n.endswith(".parquet") and not n.startswith(".")]

    def stranded(self) -> dict[str, int]:
        """Consolidated files the manifest does not name that hold rows no reader sees (in no part and
        not in the live consolidated file), by name, with how many: what a lost ``manifest.json``
        leaves after a compaction deleted the parts it covered. A crashed compaction's file, or the
        one a later compaction replaced, holds none (its rows are all still readable); an unreadable
        one holds nothing to restore."""
        manifest = self.manifest()
        others = [n for n in self.consolidated_names() if manifest is None or n != manifest.consolidated]
        if not others:
            return {}
        seen = _row_keys(self.read(ROW_KEY))
        found = {}
        for name in others:
            try:
                found[name] = len(_row_keys(self._read_consolidated(name, ROW_KEY, None)) - seen)
            except StoreError:
                continue
        return {n: rows for n, rows in found.items() if rows}

    def _restore_manifest(self) -> Manifest | None:
        """Under the compaction lock, with no manifest: name the newest stranded consolidated file
        again, covering the parts whose rows it holds (those a crash kept from being deleted)."""
        stranded = self.stranded()
        if not stranded:
            return None
        name = max(stranded)  # ids sort by creation time; a newer compaction holds an older one's rows
        table = self._read_consolidated(name, ROW_KEY, None)
        keys = _row_keys(table)
        covered = frozenset(p for p in self.part_names() if _row_keys(self._read_part(p, ROW_KEY, None)) <= keys)
        restored = Manifest(name, covered, table.num_rows, now_utc().isoformat())
        self.fs.write_bytes_atomic(f"{self.rel}/index/{MANIFEST}", restored.to_json())
        log.warning("%s: index manifest was missing; restored it naming consolidated/%s (%d rows, %d parts)",
                    self.fs.path(self.rel), name, table.num_rows, len(covered))
        return restored

    def uncovered_parts(self) -> list[str]:
        """Parts a reader opens one by one: those the manifest does not cover."""
        names = self.part_names()
        manifest = self.manifest()
        covered = manifest.parts if manifest else frozenset()
        return [n for n in names if n not in covered]

    # -- reading ---------------------------------------------------------------------------
    def _read_consolidated(self, name: str, columns: Sequence[str], clip_ids: Sequence[str] | None) -> pa.Table:
        """Projected (only ``columns``' chunks) and, with ``clip_ids``, filtered: the file is sorted by
        clip id, so row-group statistics skip every row group but the one holding a clip."""
        path = self.fs.path(self.rel, "consolidated", name)
        filters = [("clip_id", "in", list(clip_ids))] if clip_ids is not None else None
        with damaged_as_store_error(path, "consolidated index file"):
            if self.fs.is_local:
                return pq.read_table(path, columns=list(columns), filters=filters)
            with self.fs.fs.open(path, "rb") as f:
                return pq.read_table(f, columns=list(columns), filters=filters)

    def _read_part(self, name: str, columns: Sequence[str], clip_ids: Sequence[str] | None) -> pa.Table:
        # ParquetFile on an in-memory buffer, one thread: half the cost of pq.read_table per small part
        data = self.fs.read_bytes(f"{self.rel}/index/{name}")
        with damaged_as_store_error(self.fs.path(self.rel, "index", name), "index part"):
            table = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
        if clip_ids is not None:
            table = table.filter(pc.is_in(table.column("clip_id"), pa.array(list(clip_ids), pa.string())))
        return _conform(table, columns)

    def _snapshot(
        self, columns: Sequence[str], clip_ids: Sequence[str] | None = None
    ) -> tuple[Manifest | None, list[str], list[str], pa.Table]:
        """(manifest, parts listed, parts read, rows): one consistent state, or FileNotFoundError."""
        names = self.part_names()  # list first, then the manifest: see the module docstring
        manifest = self.manifest()
        covered = manifest.parts if manifest else frozenset()
        new = [n for n in names if n not in covered]
        tables = [_conform(self._read_consolidated(manifest.consolidated, columns, clip_ids), columns)
                  if manifest else None]
        tables += [self._read_part(n, columns, clip_ids) for n in new]
        tables = [t for t in tables if t is not None]
        if not tables:
            return manifest, names, new, _conform(schema.INDEX.empty_table(), columns)
        return manifest, names, new, pa.concat_tables(tables)

    def read(self, columns: Sequence[str] | None = None, clip_ids: Sequence[str] | None = None) -> pa.Table:
        """Every committed row, each exactly once (superseded rows included), with ``columns`` of
        ``schema.INDEX`` only (None: all): planning reads four columns of the consolidated file.
        ``clip_ids``: only their rows (a lookup reads one row group of the consolidated file)."""
        cols = list(columns) if columns is not None else list(schema.INDEX.names)
        last: FileNotFoundError | None = None
        for _ in range(READ_ATTEMPTS):
            try:
                return self._snapshot(cols, clip_ids)[3]
            except FileNotFoundError as exc:  # a compaction removed a file we listed: read the new state
                last = exc
        raise StoreError(f"{self.fs.path(self.rel, 'index')}: an index file is missing at each of "
                         f"{READ_ATTEMPTS} reads (deleted, or replaced by compactions while this read): {last}")

    # -- compaction ------------------------------------------------------------------------
    @contextmanager
    def _lease(self, stale_seconds: float) -> Iterator[bool]:
        """Yield whether this process holds the compaction lock; a lock older than ``stale_seconds``
        (its holder was killed) is broken."""
        rel = f"{self.rel}/index/{LOCK}"
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}).encode()
        held = self.fs.create_exclusive(rel, body)
        if not held:
            try:
                since = float(self.fs.read_json(rel, "compaction lock").get("time", 0.0))
            except (FileNotFoundError, StoreError, ValueError):
                since = 0.0  # gone, or damaged by its killed holder: as good as stale
            if time.time() - since >= stale_seconds:
                self.fs.rm(rel)
                held = self.fs.create_exclusive(rel, body)
        try:
            yield held
        finally:
            if held:
                self.fs.rm(rel)

    def compact(
        self, min_parts: int = 1, before_publish: Callable[[], None] | None = None, stale_lock_seconds: float = 3600.0,
        rewrite: Callable[[pa.Table], pa.Table] | None = None,
    ) -> CompactResult | None:
        """Fold every uncovered part into a new consolidated file, publish it with the manifest, then
        delete what it covers. None when another compaction holds the lock, fewer than ``min_parts``
        parts are uncovered, or there is nothing to do (no uncovered part, and ``rewrite`` changes
        nothing: ``min_parts=0`` runs ``rewrite`` on a fully compacted index). ``rewrite`` maps the
        snapshot's rows to the rows to publish, under the lock (the feature set merges small shards
        there); ``before_publish`` runs just before the manifest is written (the store marks its
        format version there)."""
        t0 = time.perf_counter()
        with self._lease(stale_lock_seconds) as held:
            if not held:
                return None
            # Under the lock nobody else deletes an uncovered part or the live consolidated file.
            if self.manifest() is None:
                self._restore_manifest()  # a lost manifest: compacting without it would strand its rows
            manifest, names, new, table = self._snapshot(schema.INDEX.names)
            if len(new) < min_parts or (not new and rewrite is None):
                return None
            checkpoint("read")
            if rewrite is not None:
                rewritten = rewrite(table)
                if rewritten is table and not new:
                    return None  # min_parts=0 and nothing to rewrite: the live file stays
                table = rewritten
                checkpoint("rewritten")
            order = pc.sort_indices(table, [("clip_id", "ascending"), ("committed_at", "ascending"),
                                            ("shard", "ascending")])
            table = table.take(order)
            name = f"{new_id()}.parquet"
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            self.fs.write_bytes_atomic(f"{self.rel}/consolidated/{name}", buf.getvalue())
            checkpoint("consolidated")
            if before_publish is not None:
                before_publish()
            covered = frozenset(names)  # the new parts and leftovers of an earlier manifest: all in ``table``
            published = Manifest(name, covered, table.num_rows, now_utc().isoformat())
            self.fs.write_bytes_atomic(f"{self.rel}/index/{MANIFEST}", published.to_json())
            checkpoint("manifest")  # the commit point: from here readers use the new file
            removed = 0
            for part in sorted(covered):
                self.fs.rm(f"{self.rel}/index/{part}")
                removed += 1
            checkpoint("parts")
            if manifest is not None and manifest.consolidated != name:
                self.fs.rm(f"{self.rel}/consolidated/{manifest.consolidated}")
                removed += 1
            return CompactResult(self.name, len(new), table.num_rows, name, removed, time.perf_counter() - t0)

    def covered_leftovers(self) -> list[str]:
        """Covered parts still on disk (a compaction stopped before deleting them): safe to delete."""
        manifest = self.manifest()
        return [n for n in self.part_names() if manifest and n in manifest.parts]


def _row_keys(table: pa.Table) -> set[tuple[object, ...]]:
    return set(zip(*(table.column(c).to_pylist() for c in ROW_KEY)))


def latest_per_clip(table: pa.Table) -> pa.Table:
    """The newest row per clip id (by ``committed_at``, then shard id), newest first: the readers' view.
    Vectorised (dictionary codes + ``np.unique``) and one take of the whole table: at 10^6 rows the
    other columns (meta, checksums) are copied once, not once for the order and again for the pick."""
    if table.num_rows == 0:
        return table
    order = pc.sort_indices(table, [("committed_at", "descending"), ("shard", "descending")]).to_numpy()
    return table.take(pa.array(order[np.sort(_first_of_each(table.column("clip_id").take(pa.array(order))))]))


def newest_per_fingerprint(table: pa.Table) -> pa.Table:
    """The newest row per fingerprint (by ``committed_at``, then shard id; among rows of one part the
    last written), under any clip id, superseded rows included."""
    if table.num_rows == 0:
        return table
    order = pc.sort_indices(table, [("committed_at", "ascending"), ("shard", "ascending")]).to_numpy()[::-1]
    return table.take(pa.array(order[np.sort(_first_of_each(table.column("fingerprint").take(pa.array(order))))]))


def _first_of_each(column: pa.ChunkedArray) -> np.ndarray:
    codes = column.combine_chunks().dictionary_encode().indices.to_numpy(zero_copy_only=False)
    return np.unique(codes, return_index=True)[1]
