"""`emoflow demo` end to end on the generated dataset: every stage runs, and fusion wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from flows.demo import DEMO_ABLATIONS, run_demo
from store import FeatureStore
from store.verify import verify


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> tuple[Path, dict[str, str]]:
    workdir = tmp_path_factory.mktemp("demo")
    return workdir, run_demo(workdir, n_clips=72, seed=0, console=Console(quiet=True))


def _valid(run: str) -> dict[str, float]:
    summary = json.loads((Path(run) / "summary.json").read_text())
    return {k: v["mean"] for k, v in summary["mean_std"]["valid"].items()}


def test_demo_runs_every_stage_and_reports_where_outputs_went(demo_run) -> None:
    workdir, outputs = demo_run
    for key in ("dataset", "clip table", "features text.bert", "features audio.mfcc", "features vision.cnn",
                "aligned view", "report", *(f"run {a}" for a in DEMO_ABLATIONS)):
        assert key in outputs and Path(outputs[key]).exists(), key
    store = FeatureStore.open(workdir / "store")
    assert store.clips().num_rows == 72
    assert verify(store) == []
    assert store.view_names() == ["demo"]


def test_full_model_beats_every_single_modality_on_valid_mae(demo_run) -> None:
    _, outputs = demo_run
    mae = {a: _valid(outputs[f"run {a}"])["MAE"] for a in DEMO_ABLATIONS}
    for single in ("text", "audio", "vision"):
        assert mae["full"] < mae[single], mae
    assert _valid(outputs["run full"])["Corr"] > 0.8
