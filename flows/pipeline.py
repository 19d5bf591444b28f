"""The whole pipeline as one Prefect flow: ingest -> extract -> align -> stats, each a subflow.

This is what the deployments in ``prefect.yaml`` run (``extract-nightly``: every stage,
``stats-weekly``: ``stages=["stats"]``). Every stage is incremental on its own, so a scheduled run
only does what changed since the last one:

* ingest rewrites ``clips.parquet`` only when the dataset changed and reports added / removed /
  modified clips;
* extract plans by feature fingerprint: new clips and clips whose inputs changed (a new media file
  re-extracts audio and vision, a new transcript text only) are extracted, the rest are skipped;
  an interrupted earlier run is resumed the same way;
* align is a no-op when the view's fingerprint is unchanged; stats always rewrites its report.

Stages always run in pipeline order, whatever order they are given in.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

import flows  # noqa: F401  (offline-safe Prefect defaults before Prefect is imported)
from flows.align import align_flow
from flows.extract import run_extract
from flows.ingest import ingest_flow
from flows.stats import stats_flow
from stages.config import PipelineConfig
from stages.pipeline import (
    STAGES,
    align_summary,
    check_paths,
    extract_summary,
    ingest_summary,
    jsonable,
    resolve_stages,
    stats_summary,
)


@flow(name="emoflow-pipeline")
def pipeline_flow(
    config: PipelineConfig,
    stages: list[str] = list(STAGES),  # noqa: B006 - never mutated; a list keeps the parameter schema simple
    extractors: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``stages`` of ingest -> extract -> align -> stats on ``config`` as subflows.

    ``extractors`` optionally restricts extraction to these extractor names (their settings from
    ``config.extract.extractors``, else the defaults). Returns a JSON-able summary: stages run,
    ingest counts (clips, rejects, added/removed/modified), per extractor done/skipped/linked/failed/absent,
    the align view and the stats report.
    """
    log = get_run_logger()
    t0 = time.perf_counter()
    run = resolve_stages(stages)
    config = config.with_extractors(extractors)
    check_paths(config, run)
    summary: dict[str, Any] = {"store": config.store, "stages": run}

    if "ingest" in run:
        s = ingest_flow(config)
        summary["ingest"] = ingest_summary(s)
        log.info("ingest: %d clips (+%d -%d ~%d), %d rejected", s.clips, s.added, s.removed, s.modified, s.rejects)
    if "extract" in run:
        ex = run_extract(config)  # on the configured task runner (threads or Dask)
        summary["extract"] = extract_summary(ex)
        for name, e in summary["extract"]["extractors"].items():
            log.info("extract %s: done %d, skipped %d, failed %d", name, e["done"], e["skipped"], e["failed"])
        if ex.failed:
            log.warning("%d clip failures recorded; `emoflow store ls` lists them, `--only-failed` retries", ex.failed)
    if "align" in run:
        summary["align"] = align_summary(align_flow(config))
    if "stats" in run:
        summary["stats"] = stats_summary(stats_flow(config))
    summary["wall_seconds"] = round(time.perf_counter() - t0, 3)
    return jsonable(summary)
