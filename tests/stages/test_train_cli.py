"""``emoflow train --seeds N --ensemble``: the CLI's table has the seed ensemble's rows next to the
mean ± std, and summary.json/.md hold the same ensemble metrics."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from tests.helpers.training import write_tiny_view
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
