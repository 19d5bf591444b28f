"""``run_train(..., ensemble=True)`` / ``emoflow train --seeds N --ensemble``: the seed ensemble's
metrics are exactly the MMSA metrics of the seeds' predictions averaged per clip."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from stages.train import ensemble_metrics, ensemble_predictions, run_train
from tests.helpers.training import one_torch_thread, tiny_config, write_tiny_view
from training.metrics import METRIC_NAMES, regression_metrics
from training.runs import RunDir


def _predictions(path: Path) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    with open(path / "predictions.csv", newline="") as f:
        for r in csv.DictReader(f):
            out.setdefault(r["split"], {})[r["clip_id"]] = (float(r["pred"]), float(r["label"]))
    return out


def test_ensemble_metrics_are_the_metrics_of_the_per_clip_mean_prediction(tmp_path: Path) -> None:
    write_tiny_view(tmp_path / "store")
    config = tiny_config(max_epochs=2, patience=2, seeds=[11, 12, 13], lr_schedule="cosine", warmup_ratio=0.1)
    with one_torch_thread():
        root, summary = run_train(str(tmp_path / "store"), "tiny", config, tmp_path / "runs", seeds=3, name="r",
                                  ensemble=True)
    seeds = [root / f"seed-{s}" for s in (11, 12, 13)]
    preds = [_predictions(p) for p in seeds]
    assert set(summary["ensemble"]) == {"valid", "test"}
    for split, got in summary["ensemble"].items():
        ids = sorted(preds[0][split])
        mean = np.mean([[p[split][c][0] for c in ids] for p in preds], axis=0)
        want = regression_metrics(mean, np.array([preds[0][split][c][1] for c in ids]))
        assert got == pytest.approx(want, abs=1e-12)
        for p, path in zip(preds, seeds):  # each seed's metrics.json are its predictions' metrics
            own = regression_metrics(np.array([p[split][c][0] for c in ids]), np.array([p[split][c][1] for c in ids]))
            assert json.loads((path / "metrics.json").read_text())[split] == pytest.approx(own, abs=1e-12)
    on_disk = json.loads((root / "summary.json").read_text())
    assert on_disk["ensemble"] == summary["ensemble"]
    table = (root / "summary.md").read_text()
    assert "valid (ensemble of 3)" in table and "test (ensemble of 3)" in table
    assert set(summary["ensemble"]["test"]) == set(METRIC_NAMES)

    # an ensemble of one run is that run (up to summation order: clips are sorted by id)
    one, own = ensemble_metrics([seeds[0]]), json.loads((seeds[0] / "metrics.json").read_text())
    assert set(one) == set(own) and all(one[s] == pytest.approx(own[s], abs=1e-12) for s in own)
    ids, mean, labels = ensemble_predictions(seeds)["test"]
    assert len(ids) == len(mean) == len(labels) == 8
    assert RunDir(seeds[1]).predictions()["valid"].pred.shape == (8,)


def test_without_ensemble_the_summary_has_no_ensemble_and_seeds_are_reproducible(tmp_path: Path) -> None:
    write_tiny_view(tmp_path / "store")
    config = tiny_config(max_epochs=2, patience=2, seeds=[11], optimizer="adamw", no_decay_bias_norm=True,
                         lr_schedule="linear", warmup_ratio=0.2)
    with one_torch_thread():
        _, a = run_train(str(tmp_path / "store"), "tiny", config, tmp_path / "runs", seeds=1, name="a")
        _, b = run_train(str(tmp_path / "store"), "tiny", config, tmp_path / "runs", seeds=1, name="b",
                         ensemble=True)
    assert "ensemble" not in a
    assert a["per_seed"] == b["per_seed"]  # same seed, same recipe -> same metrics
    assert all(b["ensemble"][s] == pytest.approx(m, abs=1e-12) for s, m in a["per_seed"]["11"].items())
