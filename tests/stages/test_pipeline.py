"""``stages.pipeline``: stage selection, the path guard, and the JSON summary of each stage's result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.config import PipelineConfig
from stages.extract import ExtractSummary
from stages.ingest import IngestSummary
from stages.pipeline import (
    STAGES,
    check_paths,
    extract_summary,
    ingest_summary,
    jsonable,
    resolve_stages,
)
from store.errors import ConfigError


def test_stages_run_in_pipeline_order_and_unknown_or_none_is_an_error() -> None:
    assert resolve_stages(None) == list(STAGES)
    assert resolve_stages([" Stats", "extract"]) == ["extract", "stats"]
    with pytest.raises(ConfigError, match="unknown pipeline stage"):
        resolve_stages(["align", "trian"])
    with pytest.raises(ConfigError, match="no pipeline stage given"):
        resolve_stages([])


def test_check_paths_refuses_the_working_directory_as_store_and_ingest_without_a_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="is the working directory"):
        check_paths(PipelineConfig(store="."), ["stats"])
    cfg = PipelineConfig(store=str(tmp_path / "s"))
    with pytest.raises(ConfigError, match="dataset.path is not set"):
        check_paths(cfg, ["ingest", "extract"])
    check_paths(cfg, ["extract", "stats"])


def test_stage_summaries_are_json_and_keyed_by_extractor() -> None:
    ingest = ingest_summary(IngestSummary(4, 1, "manifest", True, 4, 0, 0, {"no media": 1}))
    assert ingest == {"clips": 4, "rejects": 1, "layout": "manifest", "changed": True, "added": 4, "removed": 0,
                      "modified": 0, "reject_reasons": {"no media": 1}, "first_rejects": []}
    sets = {"audio.mfcc-1234abcd": {"extractor": "audio.mfcc", "done": 3, "skipped": 1, "linked": 0, "failed": 1,
                                    "absent": 0, "media_seconds": 6.00049, "compute_seconds": 2.0}}
    extract = extract_summary(ExtractSummary("run-1", sets, wall_seconds=3.14159))
    assert extract == {"run_id": "run-1", "failed": 1, "wall_seconds": 3.142, "extractors": {"audio.mfcc": {
        "feature_set": "audio.mfcc-1234abcd", "done": 3, "skipped": 1, "linked": 0, "failed": 1, "absent": 0,
        "media_seconds": 6.0}}}
    assert json.loads(json.dumps(jsonable({"path": Path("/x"), "n": extract}))) == {"path": "/x", "n": extract}
