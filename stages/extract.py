"""Extraction without Prefect: plan clips into batches, extract and commit one batch, link clips
that share another clip's inputs, and account a run per feature set.

Planning fingerprints every clip per extractor and skips what is committed; ``process_batch``
extracts one batch with a model loaded once per process and commits it through the store's
protocol (per-clip failures become failure rows). A clip whose inputs equal another clip's (same
fingerprint) is not extracted again: after the batches, ``link_shared`` links it to the committed
features under its own id. ``flows.extract`` maps ``process_batch`` over the batches as tasks.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from features.clips import ClipInput, Word
from features.extractors.base import (
    ClipFailure,
    Extractor,
    FeatureResult,
    create_extractor,
    get_extractor_class,
    model_cache,
)
from stages.config import ExtractConfig
from store import FeatureStore
from store.featureset import FeatureSet
from store.ids import now_utc
from store.index import COMPACT_AFTER_PARTS, CompactResult


@dataclass
class Batch:
    feature_set: str
    extractor: str
    config: dict[str, Any]
    clips: list[dict[str, Any]]  # clip-table rows + "fingerprint"

    @property
    def seconds(self) -> float:
        return sum(c["duration"] for c in self.clips)


@dataclass
class BatchResult:
    feature_set: str
    extractor: str
    done: int = 0
    failed: int = 0
    absent: int = 0
    media_seconds: float = 0.0
    wall_seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SetPlan:
    feature_set: str
    extractor: str
    modality: str
    todo: int
    skipped: int
    batches: list[Batch]
    links: list[dict[str, Any]] = field(default_factory=list)  # clip rows + "fingerprint" + "shares" (clip id)


# -- per-process model cache ----------------------------------------------------------------
def cached_extractor(name: str, config: dict[str, Any]) -> Extractor:
    """One extractor (and so one loaded model) per process and config, never per clip."""
    return _cached_extractor(name, json.dumps(config, sort_keys=True))


@model_cache
def _cached_extractor(name: str, config_json: str) -> Extractor:
    _limit_threads_on_dask_worker()
    return create_extractor(name, json.loads(config_json))


def _limit_threads_on_dask_worker() -> None:
    """On a Dask worker, torch and the BLAS/OpenMP pools use as many threads as the worker has (1 by
    default), so that n worker processes x 1 thread do not oversubscribe the cores (measured faster
    than 1 x n).
    A process that has not imported ``distributed`` is no Dask worker: it is not imported here for
    nothing (0.2 s of the first batch of every threads-runner run)."""
    if "distributed" not in sys.modules:
        return
    try:
        from distributed import get_worker

        nthreads = get_worker().state.nthreads
    except (ImportError, ValueError):
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(max(1, nthreads))
    threadpool_limits(max(1, nthreads))  # for the worker process's life, not a block


def clip_input(row: dict[str, Any]) -> ClipInput:
    words = tuple(Word(w["word"], w["start"], w["end"]) for w in row["words"]) if row.get("words") else None
    return ClipInput(
        clip_id=row["clip_id"],
        media_uri=row.get("media_uri"),
        start=row.get("start"),
        end=row.get("end"),
        text=row.get("text") or "",
        duration=float(row["duration"]),
        words=words,
    )


# -- planning -------------------------------------------------------------------------------
def set_attrs(ext: Extractor) -> dict[str, Any]:
    return {
        "extractor": ext.name,
        "version": ext.version,
        "modality": ext.modality,
        "config": ext.config.model_dump(mode="json"),
        "identity": ext.identity(),
        "dim": ext.dim,
        "row_mask": ext.row_mask,
        "created": now_utc().isoformat(),
    }


def set_name(ext: Extractor) -> str:
    return f"{ext.name}-{ext.identity_hash()[:8]}"


def plan(store: FeatureStore, cfg: ExtractConfig, create: bool = True) -> list[SetPlan]:
    """Fingerprint every clip per extractor and decide per clip: skip it when it is committed under its
    own id for these inputs; link it when the same inputs are committed under any clip id or extracted
    earlier in this run; else extract it. ``force`` ignores the store, not the sharing within the run.
    ``create=False`` (dry runs) writes nothing: no feature set, no fingerprint cache."""
    clips, digest = store.clips_with_digest()
    failed: dict[str, set[str]] = {}
    if cfg.only_failed:
        fails = store.failures()
        for c, s in zip(fails.column("clip_id").to_pylist(), fails.column("feature_set").to_pylist()):
            failed.setdefault(s, set()).add(c)
    plans = []
    for name, ext_cfg in cfg.extractors.items():
        ext = create_extractor(name, ext_cfg)  # cheap: models load lazily on first extract
        sname = set_name(ext)
        if create:
            fset: FeatureSet | None = store.ensure_feature_set(sname, set_attrs(ext))
        else:
            fset = store.feature_set(sname) if sname in store.feature_set_names() else None
        fps = store.clip_fingerprints(sname, ext.modality, ext.identity(), clips, digest, cache=create)
        todo, links = plan_set(fset if not cfg.force else None, clips, fps,
                               failed.get(sname, set()) if cfg.only_failed else None)
        batches = partition(todo, sname, name, ext.config.model_dump(mode="json"), cfg)
        skipped = len(clips) - len(todo) - len(links)
        plans.append(SetPlan(sname, name, ext.modality, len(todo), skipped, batches, links))
    return plans


def plan_set(
    fset: FeatureSet | None, clips: pa.Table, fps: list[str], only: set[str] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(clips to extract, clips to link) of one feature set: ``fps`` are the clips' fingerprints in
    table order, ``fset`` the set as committed (None: ignore the store), ``only`` the clip ids to
    consider (retrying failures). Rows are materialised only for clips that need work, so an
    unchanged run costs two dictionary lookups per clip."""
    committed = fset.committed() if fset is not None else {}
    ids = clips.column("clip_id").to_pylist()
    candidates = [i for i, (c, fp) in enumerate(zip(ids, fps))
                  if committed.get(c) != fp and (only is None or c in only)]
    todo: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    if not candidates:
        return todo, links
    # fingerprint -> the clip whose features a clip with these inputs shares
    shared = fset.fingerprint_clips() if fset is not None else {}
    for i, row in zip(candidates, clips.take(candidates).to_pylist()):
        fp = fps[i]
        if fp in shared:
            links.append({**row, "fingerprint": fp, "shares": shared[fp]})
        else:
            shared[fp] = row["clip_id"]
            todo.append({**row, "fingerprint": fp})
    return todo, links


def partition(
    rows: list[dict[str, Any]], sname: str, name: str, config: dict[str, Any], cfg: ExtractConfig
) -> list[Batch]:
    batches: list[Batch] = []
    current: list[dict[str, Any]] = []
    seconds = 0.0
    for row in rows:
        if current and (len(current) >= cfg.batch_clips or seconds + row["duration"] > cfg.batch_seconds):
            batches.append(Batch(sname, name, config, current))
            current, seconds = [], 0.0
        current.append(row)
        seconds += row["duration"]
    if current:
        batches.append(Batch(sname, name, config, current))
    return batches


def schedule(plans: list[SetPlan]) -> list[Batch]:
    """Every plan's batches, costliest first (media seconds × the extractor's ``cost_per_second``):
    a pool fed longest-first finishes with its workers busy, where plan order (text, then audio, then
    vision) leaves the longest vision batch to start last and run alone on one core."""
    batches = [b for p in plans for b in p.batches]
    return sorted(batches, key=lambda b: -b.seconds * get_extractor_class(b.extractor).cost_per_second)


def plan_summary(plans: list[SetPlan]) -> list[dict[str, Any]]:
    """One row per feature set for the CLI's plan table (batches and links as counts)."""
    return [{k: v for k, v in asdict(p).items() if k not in ("batches", "links")}
            | {"batches": len(p.batches), "linked": len(p.links)} for p in plans]


# -- one batch ------------------------------------------------------------------------------
def _failure_row(f: ClipFailure, feature_set: str, extractor: str, fp: str, run_id: str) -> dict[str, Any]:
    return {
        "clip_id": f.clip_id,
        "feature_set": feature_set,
        "extractor": extractor,
        "fingerprint": fp,
        "stage": f.stage,
        "error_type": f.error_type,
        "message": f.message,
        "transient": f.transient,
        "run_id": run_id,
        "time": now_utc(),
    }


def _extract_isolated(ext: Extractor, inputs: list[ClipInput]) -> list[FeatureResult | ClipFailure]:
    """Run the batch; if the extractor itself raises, retry clip by clip so one clip cannot sink it."""
    try:
        return ext.extract(inputs)
    except Exception:  # isolate below, each clip's own error is recorded
        out: list[FeatureResult | ClipFailure] = []
        for clip in inputs:
            try:
                out.extend(ext.extract([clip]))
            except Exception as exc:
                out.append(ClipFailure(clip.clip_id, "extract", type(exc).__name__, f"clip {clip.clip_id!r}: {exc}"))
        return out


def process_batch(store_url: str, batch: Batch, run_id: str) -> BatchResult:
    """Extract one batch and commit it (shard, then index part, then failures)."""
    t0 = time.perf_counter()
    ext = cached_extractor(batch.extractor, batch.config)
    results = _extract_isolated(ext, [clip_input(c) for c in batch.clips])
    store = FeatureStore.open(store_url)
    fset = store.feature_set(batch.feature_set)
    res = BatchResult(batch.feature_set, batch.extractor)
    items, failures = [], []
    for row, out in zip(batch.clips, results, strict=True):
        if isinstance(out, ClipFailure):
            failures.append(_failure_row(out, batch.feature_set, batch.extractor, row["fingerprint"], run_id))
            continue
        items.append((row["clip_id"], row["fingerprint"], out, row["duration"]))
        res.media_seconds += row["duration"]
        res.absent += out.absent is not None
    fset.commit(items)
    store.record_failures(failures)
    res.done, res.failed, res.failures = len(items), len(failures), failures
    res.wall_seconds = time.perf_counter() - t0
    return res


def link_shared(
    store: FeatureStore, p: SetPlan, failed: dict[str, dict[str, Any]], run_id: str
) -> tuple[int, list[dict[str, Any]]]:
    """Commit the plan's links once its batches are done, so a clip can share what this run extracted.

    ``failed`` maps fingerprint -> this run's failure row for it: a clip whose shared extraction failed
    gets that failure under its own id, so it is never silently missing and ``--only-failed`` retries
    it. Returns (clips linked, failure rows recorded).
    """
    if not p.links:
        return 0, []
    fset = store.feature_set(p.feature_set)
    linked = set(fset.link((r["clip_id"], r["fingerprint"], r["duration"]) for r in p.links))
    failures = []
    for r in p.links:
        if r["clip_id"] in linked:
            continue
        cause = failed.get(r["fingerprint"], {"stage": "link", "error_type": "StoreError", "transient": True,
                                               "message": "no committed features for these inputs"})
        f = ClipFailure(r["clip_id"], cause["stage"], cause["error_type"],
                        f"shares its inputs with clip {r['shares']!r}: {cause['message']}", cause["transient"])
        failures.append(_failure_row(f, p.feature_set, p.extractor, r["fingerprint"], run_id))
    store.record_failures(failures)
    return len(linked), failures


def extract_here(store: FeatureStore, cfg: ExtractConfig, run_id: str) -> dict[str, dict[str, int]]:
    """Plan, extract every batch and commit the links in this process, one batch after another: the
    extract stage without Prefect or workers, for scripts and benchmarks (the flow runs the same
    steps as tasks). Returns per feature set the clips extracted, failed and linked."""
    out: dict[str, dict[str, int]] = {}
    for p in plan(store, cfg):
        counts = out.setdefault(p.feature_set, {"done": 0, "failed": 0, "linked": 0})
        failed: dict[str, dict[str, Any]] = {}
        for batch in p.batches:
            r = process_batch(store.url, batch, run_id)
            counts["done"] += r.done
            counts["failed"] += r.failed
            failed |= {f["fingerprint"]: f for f in r.failures}
        counts["linked"] += link_shared(store, p, failed, run_id)[0]
    return out


# -- accounting -----------------------------------------------------------------------------
@dataclass
class ExtractSummary:
    run_id: str
    sets: dict[str, dict[str, Any]]
    wall_seconds: float

    @property
    def failed(self) -> int:
        return sum(s["failed"] for s in self.sets.values())


@dataclass
class ExtractTally:
    """One run's counts per feature set, fed batch by batch as they complete (in any order), then
    the links, then recorded in the store's run table."""

    run_id: str
    sets: dict[str, dict[str, Any]]
    failed: dict[str, dict[str, dict[str, Any]]]  # set -> fingerprint -> this run's failure row

    @classmethod
    def start(cls, run_id: str, plans: list[SetPlan]) -> ExtractTally:
        sets = {
            p.feature_set: {"extractor": p.extractor, "done": 0, "skipped": p.skipped, "linked": 0, "failed": 0,
                            "absent": 0, "media_seconds": 0.0, "compute_seconds": 0.0}
            for p in plans
        }
        return cls(run_id, sets, {p.feature_set: {} for p in plans})

    def add(self, res: BatchResult) -> None:
        s = self.sets[res.feature_set]
        s["done"] += res.done
        s["failed"] += res.failed
        s["absent"] += res.absent
        s["media_seconds"] += res.media_seconds
        s["compute_seconds"] += res.wall_seconds
        for f in res.failures:
            self.failed[res.feature_set][f["fingerprint"]] = f

    def link(self, store: FeatureStore, plans: list[SetPlan]) -> list[dict[str, Any]]:
        """``link_shared`` for every plan once all batches are counted; returns the failure rows."""
        failures = []
        for p in plans:
            s = self.sets[p.feature_set]
            s["linked"], link_failures = link_shared(store, p, self.failed[p.feature_set], self.run_id)
            s["failed"] += len(link_failures)
            failures.extend(link_failures)
        return failures

    def record(self, store: FeatureStore) -> None:
        """One row per feature set in the store's run table."""
        for name, s in self.sets.items():
            store.record_run({"run_id": self.run_id, "feature_set": name, "extractor": s["extractor"],
                              "clips_done": s["done"], "clips_skipped": s["skipped"], "clips_linked": s["linked"],
                              "clips_failed": s["failed"], "media_seconds": s["media_seconds"],
                              "wall_seconds": s["compute_seconds"], "time": now_utc()})

    def compact(self, store: FeatureStore, threshold: int = COMPACT_AFTER_PARTS) -> list[CompactResult]:
        """Consolidate the index of each set this run wrote to once it has more than ``threshold``
        parts (one per committed batch), so the next run's planning reads one file, not thousands."""
        results = [store.feature_set(name).maybe_compact(threshold) for name in self.sets]
        return [r for r in results if r is not None]

    def summary(self, wall_seconds: float) -> ExtractSummary:
        return ExtractSummary(run_id=self.run_id, sets=self.sets, wall_seconds=wall_seconds)

