"""Ingest: dataset on disk -> validated ``clips.parquet`` + ``rejects.parquet``, rewritten only when
they changed, with the diff against the stored clip table (added / removed / modified clips)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from corpora.ingest import IngestResult, ingest
from stages.config import PipelineConfig
from store import FeatureStore
from store.errors import ConfigError
from store.lock import store_writer

REJECTS_SHOWN = 20  # rejects named in a summary; rejects.parquet holds them all


@dataclass
class IngestSummary:
    clips: int
    rejects: int
    layout: str
    changed: bool
    added: int
    removed: int
    modified: int
    reject_reasons: dict[str, int]
    notes: list[str] = field(default_factory=list)  # what else the layout wrote (mmsa-pkl: feature sets, view)
    first_rejects: list[str] = field(default_factory=list)  # up to REJECTS_SHOWN "source: message" lines


def dataset_path(config: PipelineConfig) -> str:
    """``dataset.path``, which every ingest and its dry run need (``ConfigError`` when it is not set)."""
    if not config.dataset.path:
        raise ConfigError("dataset.path is not set (use --set dataset.path=DIR or a config file)")
    return config.dataset.path


def run_ingest(config: PipelineConfig, on_wait: Callable[[str], None] | None = None) -> IngestSummary:
    """Read, validate, and write the tables only if they changed, holding the store's writer lock
    (``store.lock``: another ingest or predict on the store at once waits; ``on_wait`` hears whom for)."""
    path = dataset_path(config)
    writer = store_writer(config.store, f"emoflow ingest {path}", on_wait=on_wait)
    if config.dataset.layout == "mmsa-pkl":
        return ingest_mmsa_pickle(config, writer)
    result = ingest(path, config.dataset.layout, config.dataset.folds)  # reading needs no lock, and a
    with writer:  # dataset that cannot be read leaves no store behind
        return store_ingest(config.store, result)


def store_ingest(store_url: str, result: IngestResult) -> IngestSummary:
    """Write an ingest result's clip and rejects tables into the store, each only if it changed
    (or the rejects belong to another clip table: an ingest killed between the two), and count the
    clips added, removed and modified against the stored table. The caller holds the store's writer
    lock."""
    store = FeatureStore.open(store_url, create=True)
    old, digest = store.clips_with_digest()
    old_fp = dict(zip(old.column("clip_id").to_pylist(), old.column("clip_fingerprint").to_pylist()))
    new_fp = dict(zip(result.clips.column("clip_id").to_pylist(), result.clips.column("clip_fingerprint").to_pylist()))
    added = len(new_fp.keys() - old_fp.keys())
    removed = len(old_fp.keys() - new_fp.keys())
    modified = sum(1 for k in new_fp.keys() & old_fp.keys() if new_fp[k] != old_fp[k])
    changed = bool(added or removed or modified) or list(old_fp) != list(new_fp)
    if changed:
        store.write_clip_tables(result.clips, result.rejects)
    else:
        stored = store.rejects()
        if not result.rejects.equals(stored) or not store.rejects_belong(stored, digest):
            store.write_rejects(result.rejects, digest)
    reasons: dict[str, int] = {}
    for r in result.rejects.column("reason").to_pylist():
        reasons[r] = reasons.get(r, 0) + 1
    shown = result.rejects.slice(0, REJECTS_SHOWN)
    first = [m if m.startswith(src) else f"{src}: {m}"
             for src, m in zip(shown.column("source").to_pylist(), shown.column("message").to_pylist())]
    return IngestSummary(result.n_clips, result.n_rejects, result.layout, changed, added, removed, modified, reasons,
                         first_rejects=first)


def ingest_mmsa_pickle(config: PipelineConfig, writer: AbstractContextManager[float]) -> IngestSummary:
    """An MMSA feature pickle (``interop.mmsa_import``): the clip table as any ingest writes it,
    then the file's arrays as feature sets and the view ``align.view``, which need those clip rows,
    under ``writer`` (the store's writer lock). ``read_mmsa_pickle`` checks every split and key
    first: a malformed file stops before the store is touched."""
    from interop.mmsa_import import import_features, read_mmsa_pickle

    source = read_mmsa_pickle(dataset_path(config))
    with writer:
        summary = store_ingest(config.store, source.result)
        summary.notes = import_features(config.store, source, config.align.view).notes
    return summary
