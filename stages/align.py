"""Alignment from a ``PipelineConfig``: which align settings apply, the dry-run plan and its table,
and the run itself (a thin layer over ``features.align``, which does the work)."""

from __future__ import annotations

from typing import Any

from features.align import (
    AlignConfig,
    AlignPlan,
    AlignSummary,
    align_view,
    plan_alignment,
)
from stages.config import PipelineConfig
from store import FeatureStore


def align_config_of(config: PipelineConfig, align: AlignConfig | None = None) -> AlignConfig:
    """The align section: an explicit one, else ``config.align``, else the defaults."""
    if align is not None:
        return align
    section = getattr(config, "align", None)
    if section is None:
        return AlignConfig()
    return section if isinstance(section, AlignConfig) else AlignConfig.model_validate(section)


def plan_align(config: PipelineConfig, align: AlignConfig | None = None) -> AlignPlan:
    """What an align run would do (sets, L, clips kept masked, up to date?) without writing."""
    return plan_alignment(FeatureStore.open(config.store), align_config_of(config, align))


def plan_rows(plan: AlignPlan) -> list[dict[str, Any]]:
    """One row per modality for a ``--dry-run`` table."""
    rows = []
    for m, src in plan.sources.items():
        c = src.counts()
        rows.append({"modality": m, "feature_set": src.feature_set, "dim": src.dim, "L": src.L,
                     "present": c.get("ok", 0), "absent": c.get("absent", 0) + c.get("empty", 0),
                     "missing": c.get("missing", 0), "stale": c.get("stale", 0)})
    return rows


def run_align(config: PipelineConfig, align: AlignConfig | None = None, force: bool = False) -> AlignSummary:
    """Align ``config.store`` with ``align`` (or ``config.align``)."""
    return align_view(FeatureStore.open(config.store), align_config_of(config, align), force=force)
