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

import json
import os
import time
from dataclasses import asdict, is_dataclass
from typing import Any

from prefect import flow, get_run_logger

import flows  # noqa: F401  (offline-safe Prefect defaults before Prefect is imported)
from flows.align import align_flow
from flows.config import PipelineConfig
from flows.extract import run_extract
from flows.ingest import ingest_flow
from flows.stats import stats_flow
from store.errors import ConfigError

STAGES: tuple[str, ...] = ("ingest", "extract", "align", "stats")


def resolve_stages(stages: list[str] | tuple[str, ...] | None) -> list[str]:
    """The stages to run, in pipeline order; an unknown or empty list raises ``ConfigError``."""
    wanted = list(STAGES) if stages is None else [str(s).strip().lower() for s in stages]
    unknown = sorted(set(wanted) - set(STAGES))
    if unknown:
        raise ConfigError(f"unknown pipeline stage(s) {unknown}; choose from {list(STAGES)}")
    if not wanted:
        raise ConfigError(f"no pipeline stage given; choose from {list(STAGES)}")
    return [s for s in STAGES if s in wanted]


def check_paths(config: PipelineConfig, stages: list[str]) -> None:
    """Refuse configurations that would write somewhere unintended.

    An unset ``{{ $EMOFLOW_STORE }}`` in ``prefect.yaml`` deploys as an empty string, which the
    config turns into the working directory (the project checkout): never a store.
    """
    if "://" not in config.store and os.path.realpath(config.store) == os.path.realpath(os.getcwd()):
        raise ConfigError(
            f"store {config.store!r} is the working directory; set config.store "
            "(for a deployment: export EMOFLOW_STORE before `prefect deploy`)"
        )
    if "ingest" in stages and not config.dataset.path:
        raise ConfigError(
            "dataset.path is not set (for a deployment: export EMOFLOW_DATASET before `prefect deploy`)"
        )


def jsonable(obj: Any) -> Any:
    """A JSON-safe copy of a stage summary (dataclasses, numpy scalars and paths included)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    return json.loads(json.dumps(obj, default=str))


def _ingest_summary(s: Any) -> dict[str, Any]:
    return {
        "clips": s.clips, "rejects": s.rejects, "layout": s.layout, "changed": s.changed,
        "added": s.added, "removed": s.removed, "modified": s.modified, "reject_reasons": dict(s.reject_reasons),
    }


def _extract_summary(s: Any) -> dict[str, Any]:
    per_extractor = {
        v["extractor"]: {"feature_set": name, "done": v["done"], "skipped": v["skipped"], "linked": v["linked"],
                         "failed": v["failed"], "absent": v["absent"], "media_seconds": round(v["media_seconds"], 3)}
        for name, v in s.sets.items()
    }
    return {"run_id": s.run_id, "extractors": per_extractor, "failed": s.failed,
            "wall_seconds": round(s.wall_seconds, 3)}


def _align_summary(s: Any) -> dict[str, Any]:
    keep = ("view", "url", "fingerprint", "changed", "grid", "clips", "L", "present")
    d = jsonable(s)
    return {k: d[k] for k in keep if k in d} if isinstance(d, dict) else {"result": d}


def _stats_summary(s: Any) -> dict[str, Any]:
    keep = ("name", "report_dir", "clips", "splits", "failures", "rejects")
    d = jsonable(s)
    return {k: d[k] for k in keep if k in d} if isinstance(d, dict) else {"result": d}


@flow(name="emoflow-pipeline")
def pipeline_flow(
    config: PipelineConfig,
    stages: list[str] = list(STAGES),  # noqa: B006 - never mutated; a list keeps the parameter schema simple
    extractors: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``stages`` of ingest -> extract -> align -> stats on ``config`` as subflows.

    ``extractors`` optionally restricts extraction to these extractor names (their settings from
    ``config.extract.extractors``, else the defaults). Returns a JSON-able summary: stages run, ingest counts (clips, rejects, added/removed/modified), per extractor
    done/skipped/linked/failed/absent, the align view and the stats report.
    """
    log = get_run_logger()
    t0 = time.perf_counter()
    run = resolve_stages(stages)
    config = config.with_extractors(extractors)
    check_paths(config, run)
    summary: dict[str, Any] = {"store": config.store, "stages": run}

    if "ingest" in run:
        s = ingest_flow(config)
        summary["ingest"] = _ingest_summary(s)
        log.info("ingest: %d clips (+%d -%d ~%d), %d rejected", s.clips, s.added, s.removed, s.modified, s.rejects)
    if "extract" in run:
        s = run_extract(config)  # on the configured task runner (threads or Dask)
        summary["extract"] = _extract_summary(s)
        for name, e in summary["extract"]["extractors"].items():
            log.info("extract %s: done %d, skipped %d, failed %d", name, e["done"], e["skipped"], e["failed"])
        if s.failed:
            log.warning("%d clip failures recorded; `emoflow store ls` lists them, `--only-failed` retries", s.failed)
    if "align" in run:
        summary["align"] = _align_summary(align_flow(config))
    if "stats" in run:
        summary["stats"] = _stats_summary(stats_flow(config))
    summary["wall_seconds"] = round(time.perf_counter() - t0, 3)
    return jsonable(summary)
