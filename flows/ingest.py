"""The ingest flow: ``stages.ingest.run_ingest`` under Prefect, with its diff in the run log."""

from __future__ import annotations

from prefect import flow, get_run_logger

from stages.config import PipelineConfig
from stages.ingest import IngestSummary, run_ingest


@flow(name="emoflow-ingest", log_prints=False)
def ingest_flow(config: PipelineConfig) -> IngestSummary:
    log = get_run_logger()
    summary = run_ingest(config, on_wait=log.warning)  # another ingest or predict holds the store
    log.info(
        "ingested %d clips (%d rejected) from %s layout; changed=%s (+%d -%d ~%d)",
        summary.clips, summary.rejects, summary.layout, summary.changed,
        summary.added, summary.removed, summary.modified,
    )
    return summary
