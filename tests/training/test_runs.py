"""train_on_view end to end on a tiny view: the run directory and re-evaluation."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from store.errors import ConfigError, StoreConflictError
from tests.helpers.training import (
    one_torch_thread,
    save_tiny_bert,
    tiny_config,
    write_tiny_view,
)
from training.config import TrainConfig
from training.runs import RunDir, evaluate_run, train_on_view


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def test_train_on_view_writes_a_complete_run_and_evaluate_run_reproduces_it(tmp_path: Path) -> None:
    write_tiny_view(tmp_path / "store")
    config = tiny_config(max_epochs=2, view={"fingerprint": "fp-tiny"})
    run, result = train_on_view(tmp_path / "store", "tiny", config, tmp_path / "run")
    files = sorted(p.name for p in run.path.iterdir())
    assert files == [
        "best.safetensors", "config.yaml", "epochs.csv", "epochs.json", "metrics.json", "metrics.md",
        "predictions.csv", "run.json", "view_stats.safetensors",
    ]
    assert TrainConfig.model_validate(yaml.safe_load((run.path / "config.yaml").read_text())) == config
    info = run.info()
    assert info["view_fingerprint"] == "fp-tiny" and info["dims"] == {"text": 6, "audio": 4, "vision": 5}
    assert info["device"] == "cpu" and info["best_epoch"] == result.best_epoch and "finished" in info
    assert [r["epoch"] for r in run.epochs()] == [1, 2]
    with open(run.path / "epochs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and "valid_Non0_acc_2" in rows[0]
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert set(metrics) == {"valid", "test"}
    assert metrics["valid"]["MAE"] == pytest.approx(result.best_valid_loss, abs=1e-6)
    assert "| test |" in (run.path / "metrics.md").read_text()
    # the saved checkpoint reproduces the recorded metrics exactly
    assert evaluate_run(run.path, "test") == metrics["test"]
    with pytest.raises(ConfigError, match="already holds a finished run"):
        RunDir.create(run.path, config, {})
    write_tiny_view(tmp_path / "store", fingerprint="fp-changed")
    with pytest.raises(StoreConflictError, match="fp-changed"):
        evaluate_run(run.path, "test")


def test_train_on_view_finetunes_the_local_text_model(tmp_path: Path) -> None:
    bert = save_tiny_bert(tmp_path / "bert")
    write_tiny_view(tmp_path / "store", text_model_path=bert, splits={"train": 16, "valid": 8})
    config = tiny_config(text_mode="finetune", max_epochs=1)
    run, _ = train_on_view(tmp_path / "store", "tiny", config, tmp_path / "run")
    assert run.info()["text_model_path"] == bert
    assert set(json.loads((run.path / "metrics.json").read_text())) == {"valid"}
    assert evaluate_run(run.path, "valid") == json.loads((run.path / "metrics.json").read_text())["valid"]


def test_train_on_view_refuses_a_mismatched_view_before_writing_anything(tmp_path: Path) -> None:
    write_tiny_view(tmp_path / "store")
    with pytest.raises(ConfigError, match="does not match the training config: vision has dim 5"):
        train_on_view(tmp_path / "store", "tiny", tiny_config(view={"dims": {"vision": 7}}), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    write_tiny_view(tmp_path / "store", "novalid", splits={"train": 8, "test": 4})
    with pytest.raises(ConfigError, match="needs train and valid"):
        train_on_view(tmp_path / "store", "novalid", tiny_config(), tmp_path / "run")
