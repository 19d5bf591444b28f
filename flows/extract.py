"""The extraction flow: clip table -> feature sets, one Prefect task per batch of clips.

The work is ``stages.extract``: the flow plans in its own process, maps ``extract-batch`` tasks
(``process_batch``: extract and commit one batch) on the task runner, retrying only store I/O
errors, then links shared clips and records the run. ``run_extract`` picks the task runner.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from logging import Logger, LoggerAdapter
from typing import Any, Callable

import torch
from prefect import flow, get_run_logger, task
from prefect.futures import as_completed
from threadpoolctl import threadpool_limits

from features.extractors.base import get_extractor_class
from flows.hooks import Hooks
from flows.runners import build_task_runner
from stages.config import PipelineConfig
from stages.extract import (
    Batch,
    BatchResult,
    ExtractSummary,
    ExtractTally,
    plan,
    process_batch,
    schedule,
)
from store import FeatureStore
from store.errors import StoreError
from store.ids import new_id


def _is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry store I/O problems; a deterministic error would only fail again."""
    try:
        state.result()
    except (StoreError, OSError, TimeoutError):
        return True
    except Exception:
        return False
    return False


@task(name="extract-batch", task_run_name="{batch.extractor}-{batch.feature_set}", retry_condition_fn=_is_transient)
def extract_batch_task(store_url: str, batch: Batch, run_id: str) -> BatchResult:
    return process_batch(store_url, batch, run_id)


ProgressHook = Callable[[BatchResult], None]
_progress: Hooks[BatchResult] = Hooks()


def _notify(res: BatchResult) -> None:
    """Call the progress hooks. Prefect ships ``extract_flow``'s function to Dask by value, globals
    included; this module-level function is pickled by reference, so the hooks (a rich progress bar
    holds locks) are never pickled (docs/performance.md, finding 9)."""
    _progress(res)


def _log_failures(log: Logger | LoggerAdapter, failures: Iterable[dict[str, Any]]) -> None:
    for f in failures:
        log.warning("%s failed on %s: %s", f["extractor"], f["clip_id"], f["message"])


@flow(name="emoflow-extract")
def extract_flow(config: PipelineConfig) -> ExtractSummary:
    """Plan, map one task per batch, commit; summary per extractor with the realtime factor."""
    log = get_run_logger()
    t0 = time.perf_counter()
    store = FeatureStore.open(config.store)
    plans = plan(store, config.extract)
    tally = ExtractTally.start(new_id(), plans)
    for p in plans:
        log.info("%s: %d clips to extract in %d batches, %d to share identical inputs' features, %d already committed",
                 p.feature_set, p.todo, len(p.batches), len(p.links), p.skipped)
    batch_task = extract_batch_task.with_options(retries=config.extract.retries)
    futures = [batch_task.submit(config.store, b, tally.run_id) for b in schedule(plans)]
    for fut in as_completed(futures):
        res: BatchResult = fut.result()
        tally.add(res)
        _log_failures(log, res.failures)
        _notify(res)
    _log_failures(log, tally.link(store, plans))
    wall = time.perf_counter() - t0
    tally.record(store)
    for c in tally.compact(store):
        log.info("%s: index compacted (%d parts into %d rows, %.1f s)", c.feature_set, c.parts, c.rows, c.seconds)
    for name, s in tally.sets.items():
        log.info("%s: done %d, linked %d, skipped %d, failed %d, %.1f media-s",
                 name, s["done"], s["linked"], s["skipped"], s["failed"], s["media_seconds"])
    return tally.summary(wall)


def run_extract(config: PipelineConfig, progress: ProgressHook | None = None) -> ExtractSummary:
    """Run the flow on the configured task runner (threads or Dask) with an optional progress hook.
    On threads, the in-flight tasks share the cores: torch and the BLAS/OpenMP pools (librosa's
    matrix products) get the cores' share of one task, or they oversubscribe the cores and OpenBLAS's
    idle threads spin (0.4-0.6 CPU-s of a 5 CPU-s run on 2 cores, docs/performance.md)."""
    runner = build_task_runner(config.executor)
    threads = torch.get_num_threads()
    limits: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if config.executor.dask is None:
        per_task = max(1, (os.cpu_count() or 1) // config.executor.workers)
        torch.set_num_threads(per_task)
        for name in config.extract.extractors:  # their modules load the pools (scipy's OpenBLAS) to limit
            get_extractor_class(name)
        limits = threadpool_limits(per_task)
    try:
        with limits, _progress.added(progress):
            return extract_flow.with_options(task_runner=runner)(config)
    finally:
        torch.set_num_threads(threads)
