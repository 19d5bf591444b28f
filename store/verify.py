"""``store verify``, ``vacuum``, ``compact`` and ``migrate``: check every committed row (streamed
shard by shard), remove crash leftovers, consolidate indexes; ``account``: where each clip of the
clip table stands in each feature set."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zarr
from zarr.errors import ZarrUserWarning

from store.errors import StoreError
from store.featureset import ClipFeatures, FeatureSet, IndexRow, checksum
from store.featurestore import FeatureStore
from store.index import CompactResult
from store.shards import retired_records
from store.views import VIEW_SHARD, open_view

T = TypeVar("T")

VERIFY_BLOCK_ROWS = 4096  # index rows turned into IndexRows at a time: verify's memory is one block + one shard


@dataclass(frozen=True)
class Problem:
    feature_set: str
    clip_id: str
    problem: str


STORE = "(store)"  # the ``feature_set`` of a problem with the store's own files


def verify(
    store: FeatureStore, sets: Iterable[str] | None = None, sample: int | None = None, seed: int = 0
) -> list[Problem]:
    """Check the latest index rows of ``sets`` (None: all) against their shards: shape, dim, dtype,
    finite values, checksum. Streamed: rows sorted by shard, one read per shard range (not five array
    opens per clip), a block of rows in memory at a time. ``sample``: that many random rows per set.
    Without ``sets``, also the store's own tables, its aligned views and what no command would see:
    a set folder without its group document, rows only a consolidated file no manifest names."""
    problems = _store_files(store) if sets is None else []
    for name in sets or ():  # a name with no folder at all is a typo, not a damaged set: the user's error
        if not store.fs.exists(f"features/{name}"):
            store.feature_set(name)  # raises the store's one "no feature set" error, naming the known ones
    for name in store.feature_set_names() if sets is None else sets:
        try:
            fset = store.feature_set(name)
            index = fset.index()
            stranded = fset.index_files.stranded()
        except StoreError as exc:
            problems.append(Problem(name, "", f"index unreadable: {exc}"))
            continue
        problems += [Problem(name, "", stranded_message(file, rows)) for file, rows in stranded.items()]
        if sample is not None and sample < index.num_rows:
            pick = np.random.default_rng(seed).choice(index.num_rows, size=sample, replace=False)
            index = index.take(pa.array(np.sort(pick)))
        dim = fset.attrs.get("dim")
        for rows in _shard_blocks(index):
            for row, feat in _read_shard_rows(fset, rows, problems):
                problems.extend(_check(name, row, feat, dim))
    return problems


def stranded_message(file: str, rows: int) -> str:
    return (f"index manifest lost: consolidated/{file} holds {rows} committed rows no reader sees; "
            "`emoflow store compact` restores the manifest")


def _store_files(store: FeatureStore) -> list[Problem]:
    """The clip, reject and failure tables, each aligned view, and feature-set folders that every
    command skips because their group document (``zarr.json``) is gone."""
    problems = []

    def readable(read: Callable[[], T]) -> T | None:
        try:
            return read()
        except StoreError as exc:
            problems.append(Problem(STORE, "", str(exc)))
            return None

    clips = readable(store.clips_with_digest)
    rejects = readable(store.rejects)
    readable(lambda: store.failures(active_only=False))
    if clips is not None and rejects is not None and not store.rejects_belong(rejects, clips[1]):
        problems.append(Problem(STORE, "", f"{store.fs.path('rejects.parquet')} belongs to another clip table "
                                "than clips.parquet (an ingest was stopped between the two): run it again"))
    for name in store.fs.ls("features"):
        if not name.startswith(".") and not store.fs.exists(f"features/{name}/zarr.json"):
            problems.append(Problem(name, "", f"{store.fs.path('features', name, 'zarr.json')} is missing: every "
                                    "command skips this feature set (its index and shards are kept)"))
    for name in store.view_names():
        problems += [Problem(f"view {name}", "", p) for p in _view_problems(store, name)]
    return problems


def _view_problems(store: FeatureStore, name: str) -> list[str]:
    """Problems reading aligned view ``name``: its description, clip table, group documents and
    every array, read a zarr shard of clips at a time."""
    try:
        view = open_view(store, name)
    except StoreError as exc:
        return [str(exc)]
    try:
        with warnings.catch_warnings():  # the view folder also holds view.json and clips.parquet
            warnings.simplefilter("ignore", ZarrUserWarning)
            members = view.group().members(max_depth=None)
    except Exception as exc:  # a damaged group document: a finding, not a crash
        return [f"groups unreadable: {type(exc).__name__}: {exc}"]
    arrays = [(path, node) for path, node in members if isinstance(node, zarr.Array)]
    problems = []
    for path, arr in arrays:
        try:
            if arr.ndim < 2:  # a vector (mean, std): one chunk
                arr[...]
            for start in range(0, arr.shape[0] if arr.ndim >= 2 else 0, VIEW_SHARD):
                arr[start:start + VIEW_SHARD]
        except Exception as exc:  # any decode error is a finding, not a crash
            problems.append(f"array {path!r} unreadable: {type(exc).__name__}: {exc}")
    return problems


def _shard_blocks(index: pa.Table) -> Iterator[list[IndexRow]]:
    """The rows of ``index`` sorted by (shard, offset), as lists of one shard's rows."""
    index = index.take(pc.sort_indices(index, [("shard", "ascending"), ("offset", "ascending")]))
    for start in range(0, index.num_rows, VERIFY_BLOCK_ROWS):
        block = [IndexRow.from_record(r) for r in index.slice(start, VERIFY_BLOCK_ROWS).to_pylist()]
        group: list[IndexRow] = []
        for row in block:
            if group and row.shard != group[0].shard:
                yield group
                group = []
            group.append(row)
        if group:
            yield group  # a shard cut by a block boundary is read twice: still one read per range


def _read_shard_rows(
    fset: FeatureSet, rows: list[IndexRow], problems: list[Problem]
) -> Iterator[tuple[IndexRow, ClipFeatures]]:
    """One shard's rows with their features, one range read; when that fails, clip by clip, so
    a bad chunk names only the clips it holds. An unreadable clip is a finding, not a crash."""
    try:
        read = list(fset.iter_features(rows, extras=(), check=False))  # _check compares the checksum
    except Exception:  # narrowed below, clip by clip
        read = []
    if len(read) == len(rows):
        yield from read
        return
    for row in rows:
        try:
            yield row, fset.read_row(row)
        except Exception as exc:  # any read error is a finding, not a crash
            problem = f"unreadable shard {row.shard}: {type(exc).__name__}: {exc}"
            problems.append(Problem(fset.name, row.clip_id, problem))


def _check(name: str, row: IndexRow, feat: ClipFeatures, dim: int | None) -> list[Problem]:
    clip = row.clip_id
    if feat.values.shape[0] != row.length or feat.times.shape != (row.length, 2):
        return [Problem(name, clip, f"shape {feat.values.shape} != ({row.length}, ...)")]
    found = []
    if dim is not None and feat.values.shape[1] != dim:
        found.append(Problem(name, clip, f"dim {feat.values.shape[1]} != {dim}"))
    if feat.values.dtype != np.float32:
        found.append(Problem(name, clip, f"dtype {feat.values.dtype} != float32"))
    if not np.isfinite(feat.values).all() or not np.isfinite(feat.times).all():
        found.append(Problem(name, clip, "non-finite values"))
    if checksum(feat.values, feat.times) != row.checksum:
        found.append(Problem(name, clip, "checksum mismatch (shard corrupted or overwritten)"))
    return found


@dataclass(frozen=True)
class Accounting:
    """Each clip of the clip table in one feature set: committed for its current inputs, failed
    (an active failure row), or pending (neither: not extracted yet, or lost). After a complete
    extract ``pending`` is empty: every input ends as a feature row, an absence or a failure."""

    feature_set: str
    committed: tuple[str, ...]
    failed: tuple[str, ...]
    pending: tuple[str, ...]


def account(
    store: FeatureStore, clips: tuple[pa.Table, str] | None = None, sets: Mapping[str, FeatureSet] | None = None
) -> dict[str, Accounting]:
    """Classify every clip of the clip table for each feature set (by name), fingerprinting it with
    the set's identity (from the planning cache when extraction already did: read, never written
    here). Column-wise, so 10^6 clips take seconds. ``clips`` (the table and its digest) and
    ``sets`` (name -> FeatureSet) reuse what the caller already read."""
    table, digest = clips or store.clips_with_digest()
    ids = table.column("clip_id")
    failures = store.failures().select(["clip_id", "feature_set"])
    out = {}
    for name in store.feature_set_names():
        fset = (sets or {}).get(name) or store.feature_set(name)
        attrs = fset.attrs
        fps = store.clip_fingerprints(name, attrs["modality"], attrs["identity"], table, digest, cache=False)
        index = fset.index()
        at = pc.index_in(ids, value_set=index.column("clip_id"))
        committed = pc.fill_null(pc.equal(index.column("fingerprint").take(at), pa.array(fps, pa.string())), False)
        mine = pc.filter(failures.column("clip_id"), pc.equal(failures.column("feature_set"), name))
        failed = pc.and_(pc.invert(committed), pc.is_in(ids, value_set=mine))
        pending = pc.invert(pc.or_(committed, failed))
        out[name] = Accounting(name, *(tuple(ids.filter(m).to_pylist()) for m in (committed, failed, pending)))
    return out


def orphan_shards(store: FeatureStore, grace_seconds: float = 3600.0) -> list[tuple[str, str]]:
    """(feature set, shard) pairs no index part references, older than ``grace_seconds``.

    The grace period keeps vacuum from deleting the shard of a batch that is still being written: a
    shard's age is that of its newest file, and a shard whose age the filesystem cannot tell is kept.
    A shard a compaction merged away (``store.shards``) is kept until its retirement is that old,
    for readers still holding the snapshot from before it.
    """
    orphans = []
    for name in store.feature_set_names():
        fset = store.feature_set(name)
        referenced = set(fset.index_parts(["shard"]).column("shard").to_pylist())
        referenced.update(s for rel, shards in retired_records(fset).items()
                          if not _older_than(store, rel, grace_seconds) for s in shards)
        for shard in fset.shard_ids():
            if shard not in referenced and _older_than(store, f"{fset.rel}/shards/{shard}", grace_seconds):
                orphans.append((name, shard))
    return orphans


def _older_than(store: FeatureStore, rel: str, seconds: float) -> bool:
    """Last written at least ``seconds`` ago; False when unknown (never delete what cannot be aged)."""
    modified = store.fs.modified(rel)
    return modified is not None and time.time() - modified >= seconds


def vacuum(store: FeatureStore, grace_seconds: float = 3600.0) -> list[tuple[str, str]]:
    """Remove orphan shards and stale temp files; return the orphan shards removed. Also removes
    index parts a consolidated file covers (a compaction stopped before deleting them) and
    consolidated files no manifest names, older than the grace period (a crashed compaction's), and
    shard retirement records past it."""
    stranded = [f"feature set {name}: {stranded_message(file, rows)}" for name in store.feature_set_names()
                for file, rows in store.feature_set(name).index_files.stranded().items()]
    if stranded:  # its shards look unreferenced: removing them would lose every row the lost manifest named
        raise StoreError("refusing to vacuum: " + "; ".join(stranded))
    removed = orphan_shards(store, grace_seconds)
    for name, shard in removed:
        store.fs.rm(f"features/{name}/shards/{shard}")
    for name in store.feature_set_names():
        for rel in retired_records(store.feature_set(name)):
            if _older_than(store, rel, grace_seconds):
                store.fs.rm(rel)
        for tmp in store.fs.ls(f"features/{name}/index"):
            if tmp.startswith(".tmp-"):
                store.fs.rm(f"features/{name}/index/{tmp}")
        files = store.feature_set(name).index_files
        for part in files.covered_leftovers():
            store.fs.rm(f"features/{name}/index/{part}")
        manifest = files.manifest()
        for f in store.fs.ls(f"features/{name}/consolidated"):
            rel = f"features/{name}/consolidated/{f}"
            if (manifest is None or f != manifest.consolidated) and _older_than(store, rel, grace_seconds):
                store.fs.rm(rel)
    return removed


def compact(store: FeatureStore, sets: Iterable[str] | None = None, min_parts: int = 1) -> list[CompactResult]:
    """Consolidate the index of ``sets`` (None: all) that have at least ``min_parts`` uncovered parts,
    merging small shards (``min_parts=0``: merge even where no part is uncovered)."""
    results = []
    for name in store.feature_set_names() if sets is None else sets:
        result = store.feature_set(name).compact(min_parts)
        if result is not None:
            results.append(result)
    return results


def migrate(store: FeatureStore) -> list[CompactResult]:
    """Bring a store to ``FORMAT_VERSION``: mark it, consolidate every feature set's index and merge its
    small shards. Nothing else changed between versions 1 and 2 (parts are read by both, merged
    shards are plain Zarr v3 that both read), so this is optional."""
    store.upgrade_format()
    return compact(store, min_parts=0)
