"""The pipeline's plain parts: which stages run (always in pipeline order), the guard against
writing somewhere unintended, and each stage's result as the JSON-able summary a run returns."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from store.errors import ConfigError

if TYPE_CHECKING:  # annotations only: checking stages needs no model, report or store code
    from features.align import AlignSummary
    from reports.run import StatsSummary
    from stages.config import PipelineConfig
    from stages.extract import ExtractSummary
    from stages.ingest import IngestSummary

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


def ingest_summary(s: IngestSummary) -> dict[str, Any]:
    return {
        "clips": s.clips, "rejects": s.rejects, "layout": s.layout, "changed": s.changed,
        "added": s.added, "removed": s.removed, "modified": s.modified, "reject_reasons": dict(s.reject_reasons),
        "first_rejects": list(s.first_rejects),
    }


def extract_summary(s: ExtractSummary) -> dict[str, Any]:
    """Per extractor (not per set name, which changes with its config): the run's counts."""
    per_extractor = {
        v["extractor"]: {"feature_set": name, "done": v["done"], "skipped": v["skipped"], "linked": v["linked"],
                         "failed": v["failed"], "absent": v["absent"], "media_seconds": round(v["media_seconds"], 3)}
        for name, v in s.sets.items()
    }
    return {"run_id": s.run_id, "extractors": per_extractor, "failed": s.failed,
            "wall_seconds": round(s.wall_seconds, 3)}


def align_summary(s: AlignSummary) -> dict[str, Any]:
    keep = ("view", "url", "fingerprint", "changed", "grid", "clips", "L", "present")
    d = jsonable(s)
    return {k: d[k] for k in keep if k in d} if isinstance(d, dict) else {"result": d}


def stats_summary(s: StatsSummary) -> dict[str, Any]:
    keep = ("name", "report_dir", "clips", "splits", "failures", "rejects")
    d = jsonable(s)
    return {k: d[k] for k in keep if k in d} if isinstance(d, dict) else {"result": d}
