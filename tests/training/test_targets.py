"""Categorical targets (issue 16 §3): classifier metrics, class weights, SLGM off, and whole runs
that classify ``label_sentiment`` of a view: metrics, confusion matrices, predictions, seeds,
ensembles, ablations and re-evaluation."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError
from sklearn.metrics import f1_score

from store.errors import ConfigError
from store.views import open_view
from tests.helpers.training import one_torch_thread, rewrite_view, tiny_config, write_tiny_view
from training.config import TrainConfig
from training.runs import RunDir
from training.targets import Target, class_weights
from training.train import evaluate_run, train_on_view

CLASSES = ("negative", "neutral", "positive")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def test_classifier_metrics_are_accuracy_f1s_per_class_f1_and_cross_entropy() -> None:
    target = Target("sentiment", CLASSES)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    truth = np.array([0, 1, 2, 2, 1])
    hat = probs.argmax(1)
    m = target.metrics(probs, truth)
    assert m["Acc"] == pytest.approx(3 / 5)
    assert m["F1_weighted"] == pytest.approx(f1_score(truth, hat, average="weighted"))
    assert m["F1_macro"] == pytest.approx(f1_score(truth, hat, average="macro"))
    assert [m[f"F1_{c}"] for c in CLASSES] == pytest.approx(list(f1_score(truth, hat, average=None)))
    assert m["CE"] == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.3, 0.8, 0.3])))
    assert target.confusion(probs, truth) == {"classes": list(CLASSES),
                                              "matrix": [[1, 0, 0], [1, 1, 0], [0, 1, 1]]}


def test_balanced_class_weights_follow_scikit_learns_rule_and_skip_absent_classes() -> None:
    labels = np.array([0, 0, 0, 1, -1])  # -1: unlabelled, ignored
    assert class_weights(labels, 3) == pytest.approx([4 / (3 * 3), 4 / (3 * 1), 0.0])


def test_a_categorical_target_turns_slgm_off_and_refuses_it_when_asked_for() -> None:
    assert TrainConfig(target="emotion").use_slgm is False
    assert TrainConfig().use_slgm is True
    with pytest.raises(ValidationError, match="SLGM generates unimodal scores"):
        TrainConfig(target="sentiment", use_slgm=True)


def test_a_run_that_classifies_sentiment_learns_it_and_writes_a_classifiers_run_dir(tmp_path: Path) -> None:
    write_tiny_view(tmp_path / "store", splits={"train": 96, "valid": 24, "test": 24})
    config = tiny_config(target="sentiment", class_weights="balanced", max_epochs=15, patience=15)
    run, result = train_on_view(tmp_path / "store", "tiny", config, tmp_path / "run")
    info = run.info()
    assert info["classes"] == list(CLASSES) and len(info["class_weights"]) == 3
    assert info["unlabelled"] == {"train": 0, "valid": 0, "test": 0}
    assert run.config().use_slgm is False
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert {"Acc", "F1_weighted", "F1_macro", "CE", "F1_negative", "F1_neutral", "F1_positive"} <= set(metrics["test"])
    assert metrics["valid"]["CE"] == pytest.approx(result.best_valid_loss, abs=1e-6)  # CE is the selected L_m
    assert metrics["test"]["Acc"] > 0.6, metrics  # the planted score's sign is learnable (chance: ~1/3)
    assert [r["valid_loss_m"] for r in run.epochs()] == [r["valid_CE"] for r in run.epochs()]
    confusion = json.loads((run.path / "confusion.json").read_text())
    assert confusion["test"]["classes"] == list(CLASSES)
    assert int(np.sum(confusion["test"]["matrix"])) == 24
    with open(run.path / "confusion_test.csv") as f:
        assert next(csv.reader(f))[1:] == list(CLASSES)
    with open(run.path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["label"] for r in rows} <= set(CLASSES) and {r["pred"] for r in rows} <= set(CLASSES)
    assert all(abs(sum(float(r[f"p_{c}"]) for c in CLASSES) - 1) < 1e-5 for r in rows)
    table = (run.path / "metrics.md").read_text()
    assert "| test |" in table and "F1_weighted" in table
    assert evaluate_run(run.path, "test") == metrics["test"]  # the checkpoint reproduces the metrics exactly
    again = RunDir(run.path).predictions()["test"]
    assert again.pred.shape == (24, 3) and again.label.dtype.kind == "i"


def test_seeds_ensemble_and_single_modality_ablation_work_for_classes(tmp_path: Path) -> None:
    from stages.train import run_train

    write_tiny_view(tmp_path / "store", splits={"train": 32, "valid": 12, "test": 12})
    config = tiny_config(target="sentiment", max_epochs=2, seeds=[1, 2])
    root, summary = run_train(str(tmp_path / "store"), "tiny", config, tmp_path / "runs", seeds=2, ensemble=True,
                              name="cls")
    assert set(summary["mean_std"]["test"]) >= {"Acc", "F1_weighted", "F1_macro", "CE"}
    assert set(summary["mean_std"]["test"]["Acc"]) == {"mean", "std"}
    assert 0 <= summary["ensemble"]["test"]["Acc"] <= 1 and "F1_macro" in summary["ensemble"]["test"]
    assert "(ensemble of 2)" in (root / "summary.md").read_text()
    _, text_only = run_train(str(tmp_path / "store"), "tiny", config, tmp_path / "runs", ablation="text",
                             name="cls-text")
    assert "Acc" in text_only["mean_std"]["valid"]


def test_clips_without_the_target_class_are_left_out_and_counted(tmp_path: Path) -> None:
    write_tiny_view(tmp_path / "store", splits={"train": 24, "valid": 8}, without_class=5)
    clips = open_view(tmp_path / "store", "tiny").clips.to_pylist()
    expected = {s: sum(1 for c in clips if c["split"] == s and c["label_sentiment"] is None)
                for s in ("train", "valid")}
    assert sum(expected.values()) == 5
    run, _ = train_on_view(tmp_path / "store", "tiny", tiny_config(target="sentiment", max_epochs=1),
                           tmp_path / "run")
    assert run.info()["unlabelled"] == expected
    with open(run.path / "predictions.csv") as f:
        assert len(list(csv.DictReader(f))) == 8 - expected["valid"]


def test_a_view_without_the_class_column_is_refused_before_any_run_is_written(tmp_path: Path) -> None:
    write_tiny_view(tmp_path / "store")
    with pytest.raises(ConfigError, match="label_emotion.*at least two"):
        train_on_view(tmp_path / "store", "tiny", tiny_config(target="emotion"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_classifier_metrics_refuse_clips_without_a_class_and_non_finite_probabilities() -> None:
    target = Target("sentiment", CLASSES)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    with pytest.raises(ValueError, match="class indices 0..2"):  # -1 would index (and score) the last class
        target.metrics(probs, np.array([0, -1]))
    with pytest.raises(ValueError, match="class probabilities: 1 of 6 values are NaN"):
        target.metrics(np.array([[np.nan, 0.2, 0.1], [0.1, 0.8, 0.1]]), np.array([0, 1]))



def _without_score(root: Path, rows: list[int], splits: dict[str, int] | None = None) -> dict[str, int]:
    """A tiny view whose clips ``rows`` have no score (their class is kept): a mixed dataset's
    class-only rows. Returns how many such clips each split has."""
    arrays = write_tiny_view(root, splits=splits)
    clips = open_view(root, "tiny").clips
    labels = [None if i in rows else v for i, v in enumerate(clips.column("label").to_pylist())]
    rewrite_view(root, arrays, clips=clips.set_column(clips.column_names.index("label"), "label",
                                                      pa.array(labels, pa.float64())))
    split = clips.column("split").to_pylist()
    return {s: sum(1 for i in rows if split[i] == s) for s in sorted(set(split))}


def test_clips_without_a_score_are_left_out_and_counted_like_clips_without_a_class(tmp_path: Path) -> None:
    expected = _without_score(tmp_path / "store", list(range(0, 40, 3)))  # every 3rd clip is class-only
    assert sum(expected.values()) == 14 and min(expected.values()) > 0
    run, result = train_on_view(tmp_path / "store", "tiny", tiny_config(max_epochs=1), tmp_path / "run")
    assert run.info()["unlabelled"] == expected and result.best_epoch == 1 and run.checkpoint.exists()
    with open(run.path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 - expected["valid"] - expected["test"] and all(r["label"] != "nan" for r in rows)
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert all(np.isfinite(metrics[s][k]) for s in metrics for k in ("Has0_acc_2", "MAE"))


def test_a_class_only_view_is_refused_for_the_score_before_any_run_is_written(tmp_path: Path) -> None:
    _without_score(tmp_path / "store", list(range(40)))
    with pytest.raises(ConfigError, match=r"none of the 24 train clips has a score label \(column 'label'\); "
                                          r"a view with class labels only trains with --target sentiment\|emotion"):
        train_on_view(tmp_path / "store", "tiny", tiny_config(), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    run, _ = train_on_view(tmp_path / "store", "tiny", tiny_config(target="sentiment", max_epochs=1), tmp_path / "cls")
    assert run.info()["unlabelled"] == {"train": 0, "valid": 0, "test": 0}
