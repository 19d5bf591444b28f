"""``emoflow train``: with ``--seeds N --ensemble`` the CLI's table has the seed ensemble's rows next
to the mean ± std, and summary.json/.md hold the same ensemble metrics; a categorical target ends
with its own metrics; an undefined metric is a dash with a note saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from typer.testing import CliRunner

from flows.cli import app
from store.views import open_view
from tests.helpers.training import rewrite_view, write_tiny_view
from training.metrics import format_value


def test_train_with_seeds_and_ensemble_prints_and_writes_the_ensemble(tmp_path: Path, prefect_harness) -> None:
    write_tiny_view(tmp_path / "store")
    args = ["train", "--store", str(tmp_path / "store"), "--view", "tiny", "--ablation", "text",
            "--text-mode", "frozen", "--seeds", "2", "--ensemble", "--no-progress", "--name", "ens",
            "--set", f"runs={tmp_path / 'runs'}", "--set", "train.seeds=[3, 4]", "--set", "train.max_epochs=2",
            "--set", "train.k=8", "--set", "train.heads=2", "--set", "train.lgt_layers=1", "--set", "train.glimpses=2",
            "--set", "train.batch_size=8", "--set", "train.device=cpu", "--set", "train.lr_schedule=linear",
            "--set", "train.warmup_ratio=0.1"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "runs" / "ens" / "summary.json").read_text())
    assert set(summary["ensemble"]) == {"valid", "test"} and summary["seeds"] == [3, 4]
    assert "test (ensemble of 2)" in result.output and "valid (ensemble of 2)" in result.output
    assert format_value(summary["ensemble"]["test"]["MAE"], "MAE") in result.output
    assert "test (ensemble of 2)" in (tmp_path / "runs" / "ens" / "summary.md").read_text()



def test_train_with_a_categorical_target_finishes_and_reports_its_own_metrics(tmp_path: Path, prefect_harness) -> None:
    write_tiny_view(tmp_path / "store")
    args = ["train", "--store", str(tmp_path / "store"), "--view", "tiny", "--target", "sentiment",
            "--text-mode", "frozen", "--no-progress", "--name", "cls", "--set", f"runs={tmp_path / 'runs'}",
            "--set", "train.max_epochs=1", "--set", "train.k=8", "--set", "train.heads=2",
            "--set", "train.lgt_layers=1", "--set", "train.glimpses=2", "--set", "train.batch_size=8",
            "--set", "train.device=cpu"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output  # the flow logged MMSA's Non0_acc_2 for classes: a KeyError
    acc = json.loads((tmp_path / "runs" / "cls" / "summary.json").read_text())["mean_std"]["test"]["Acc"]
    assert f"{format_value(acc['mean'], 'Acc')} ± {format_value(acc['std'], 'Acc')}" in result.output
    assert "Non0_acc_2" not in result.output


def test_train_shows_an_undefined_metric_as_a_dash_and_says_why(tmp_path: Path, prefect_harness) -> None:
    arrays = write_tiny_view(tmp_path / "store")
    clips = open_view(tmp_path / "store", "tiny").clips
    # every valid and test label 0: non0 leaves no clip to score (train labels of both signs, which SLGM needs)
    zeros = pa.array([y if s == "train" else 0.0 for y, s in zip(clips.column("label").to_pylist(),
                                                                clips.column("split").to_pylist())], pa.float64())
    rewrite_view(tmp_path / "store", arrays, clips=clips.set_column(clips.column_names.index("label"), "label", zeros))
    args = ["train", "--store", str(tmp_path / "store"), "--view", "tiny", "--text-mode", "frozen", "--no-progress",
            "--name", "zeros", "--set", f"runs={tmp_path / 'runs'}", "--set", "train.max_epochs=1",
            "--set", "train.k=8", "--set", "train.heads=2", "--set", "train.lgt_layers=1",
            "--set", "train.glimpses=2", "--set", "train.batch_size=8", "--set", "train.device=cpu"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    assert "nan" not in result.output and "—" in result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]  # under the table
    assert notes[0] == "note: Non0_acc_2 is undefined for test, valid (in at least one seed, for a mean over " \
                       "seeds): non0 leaves zero labels out and every label is 0"
