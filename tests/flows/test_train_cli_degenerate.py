"""``emoflow train`` and ``evaluate`` on degenerate data: what the run cannot use is one ``error:``
line (exit 2) before any work, dry runs included, and that line says what to do. No flow runs here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
from typer.testing import CliRunner

from store.views import open_view
from tests.helpers.cli import one_error_line
from tests.helpers.training import one_torch_thread, rewrite_view, tiny_config, write_tiny_view
from training.train import train_on_view

runner = CliRunner()


def test_train_dry_run_on_one_signed_train_scores_is_one_line_that_names_no_slgm(tmp_path: Path) -> None:
    from flows.cli import app

    arrays = write_tiny_view(tmp_path / "store")
    clips = open_view(tmp_path / "store", "tiny").clips
    same = pa.array([2.0] * clips.num_rows, pa.float64())
    rewrite_view(tmp_path / "store", arrays, clips=clips.set_column(clips.column_names.index("label"), "label", same))
    args = ["train", "--store", str(tmp_path / "store"), "--view", "tiny", "--text-mode", "frozen", "--dry-run",
            "--set", f"runs={tmp_path / 'runs'}"]
    line = one_error_line(runner.invoke(app, args, env={"COLUMNS": "400"}))
    assert "SLGM needs positive and negative training scores" in line and "--ablation no_slgm" in line
    ok = runner.invoke(app, [*args, "--ablation", "no_slgm"])
    assert ok.exit_code == 0, ok.output
    assert sorted(os.listdir(tmp_path)) == ["store"]  # the dry runs wrote nothing


def test_evaluate_of_a_run_whose_store_moved_is_one_line_that_names_store(tmp_path: Path) -> None:
    from flows.cli import app

    write_tiny_view(tmp_path / "store", splits={"train": 12, "valid": 6})
    with one_torch_thread():
        train_on_view(tmp_path / "store", "tiny", tiny_config(max_epochs=1), tmp_path / "run")
    shutil.move(tmp_path / "store", tmp_path / "moved")
    line = one_error_line(runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--split", "valid"],
                                        env={"COLUMNS": "400"}))
    assert "no aligned view 'tiny'" in line and "give its new location (evaluate --store)" in line
    ok = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--split", "valid", "--store",
                             str(tmp_path / "moved")])
    assert ok.exit_code == 0, ok.output
