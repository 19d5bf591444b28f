"""`emoflow demo` end to end on the generated dataset: every stage runs, and fusion wins."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from flows.demo import DEMO_ABLATIONS
from store import FeatureStore
from store.verify import verify


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


def _planted_label(planted, start: float, end: float) -> float:
    """The planted label a segment [start, end] covers, weighted by overlap."""
    weights = [(max(0.0, min(end, p.end) - max(start, p.start)), p.label) for p in planted]
    total = sum(w for w, _ in weights)
    return sum(w * label for w, label in weights) / total


def test_demo_predictions_on_a_new_long_video_follow_its_planted_labels(demo_run, tmp_path) -> None:
    from corpora.synth.long import generate_long_video

    workdir, outputs = demo_run
    planted = generate_long_video(tmp_path, seed=0).segments  # the demo's video, made again independently
    run = Path(outputs["run full"]).name
    table = FeatureStore.open(workdir / "predict").predictions(run)
    rows = [r for r in table.to_pylist() if r["error"] is None]
    assert len(rows) == table.num_rows >= 8
    assert planted[-1].end >= 60
    covered = sorted((r["start"], r["end"]) for r in rows)
    assert covered[0][0] <= planted[0].start + 1.0 and covered[-1][1] >= planted[-1].end - 1.0
    truth = np.array([_planted_label(planted, r["start"], r["end"]) for r in rows])
    scores = np.array([r["score"] for r in rows])
    assert np.corrcoef(truth, scores)[0, 1] > 0.6
    assert {"text", "audio", "vision"} <= {m for r in rows for m in r["modalities"]}
    assert Path(outputs["predictions"]).exists()
