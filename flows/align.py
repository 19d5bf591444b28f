"""The align flow: feature sets -> ``aligned/<view>/``, a thin Prefect wrapper over ``features.align``.

Alignment is one pass over the store (each feature set's shards read once, clip by clip into
preallocated arrays), so the flow runs it as a single task. An unchanged alignment — same clips,
labels, splits, committed feature fingerprints and align config — is a no-op.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from features.align import AlignConfig, AlignSummary, align_view
from stages.align import align_config_of
from stages.config import PipelineConfig
from store import FeatureStore


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
