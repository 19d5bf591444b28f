"""``stats_flow``: the report written by ``reports.run_stats`` plus Prefect markdown and table
artifacts under stable keys."""

from __future__ import annotations

import json
from pathlib import Path

from flows.stats import artifact_key, stats_flow
from stages.config import PipelineConfig
from stages.ingest import run_ingest


def test_stats_flow_publishes_markdown_and_table_artifacts(demo_data, tmp_path: Path, prefect_harness) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    cfg = PipelineConfig.model_validate({"store": str(tmp_path / "store"), "dataset": {"path": str(demo_data.root)}})
    run_ingest(cfg)
    summary = stats_flow(cfg, name="Flow_Test")
    assert summary.name == "Flow_Test"
    assert summary.artifacts[0] == artifact_key("Flow_Test") == "emoflow-stats-flow-test"
    assert "emoflow-stats-flow-test-splits" in summary.artifacts
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=summary.artifacts)))
    by_key = {a.key: a for a in arts}
    assert set(by_key) == set(summary.artifacts)
    assert by_key["emoflow-stats-flow-test"].type == "markdown"
    assert "Clips and durations" in by_key["emoflow-stats-flow-test"].data
    splits = by_key["emoflow-stats-flow-test-splits"]
    assert splits.type == "table"
    rows = json.loads(splits.data) if isinstance(splits.data, str) else splits.data
    assert {r["split"]: r["clips"] for r in rows}["train"] == summary.splits["train"]
    assert (tmp_path / "store" / "reports" / "Flow_Test" / "report.html").is_file()
