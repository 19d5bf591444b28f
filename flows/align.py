"""The align flow: feature sets -> ``aligned/<view>/``, a thin Prefect wrapper over ``features.align``.

Alignment is one pass over the store (each feature set's shards read once, clip by clip into
preallocated arrays), so the flow runs it as a single task. An unchanged alignment — same clips,
labels, splits, committed feature fingerprints and align config — is a no-op.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from features.align import (
    AlignConfig,
    AlignPlan,
    AlignSummary,
    align_view,
    plan_alignment,
)
from flows.config import PipelineConfig
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
    """Plain function (no Prefect): align ``config.store`` with ``align`` (or ``config.align``)."""
    return align_view(FeatureStore.open(config.store), align_config_of(config, align), force=force)


@task(name="align-view", task_run_name="align-{align.view}")
def align_task(store_url: str, align: AlignConfig, force: bool = False) -> AlignSummary:
    return align_view(FeatureStore.open(store_url), align, force=force)


@flow(name="emoflow-align")
def align_flow(config: PipelineConfig, align: AlignConfig | None = None, force: bool = False) -> AlignSummary:
    """Align the store's newest (or named) feature sets into ``aligned/<view>/``; a no-op when the
    view's fingerprint is unchanged (``force`` rebuilds anyway)."""
    log = get_run_logger()
    cfg = align_config_of(config, align)
    summary = align_task(config.store, cfg, force)
    for note in summary.notes:
        log.info("%s", note)
    log.info("%s", summary.message)
    return summary
