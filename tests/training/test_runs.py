"""train_on_view end to end on a tiny view: the run directory and re-evaluation."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from store.errors import ConfigError, StoreConflictError, StoreError, TrainingError
from tests.helpers.training import (
    one_torch_thread,
    rewrite_view,
    save_tiny_bert,
    tiny_config,
    write_tiny_view,
)
from training.config import TrainConfig
from training.runs import CHECKPOINT, VIEW_STATS, RunDir
from training.train import evaluate_run, load_run_model, train_on_view


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


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run (``run``) and an audio-only one (``audio``: another architecture's weights)."""
    root = tmp_path_factory.mktemp("finished")
    write_tiny_view(root / "store")
    train_on_view(root / "store", "tiny", tiny_config(max_epochs=1), root / "run")
    train_on_view(root / "store", "tiny", tiny_config(max_epochs=1, modalities=["audio"], use_slgm=False),
                  root / "audio")
    return root


def _halve(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_dims(path: Path) -> None:
    info = json.loads(path.read_text())
    del info["dims"]
    path.write_text(json.dumps(info))


#: damage -> (file, what the error calls it, a fragment of the problem it names, how to damage it, reader)
DAMAGE: dict[str, tuple[str, str, str, Callable[[Path], object], Callable[[Path], object]]] = {
    "checkpoint missing": (CHECKPOINT, "checkpoint", "(no such file)", Path.unlink, load_run_model),
    "checkpoint truncated": (CHECKPOINT, "checkpoint", "SafetensorError", _halve, load_run_model),
    "checkpoint empty": (CHECKPOINT, "checkpoint", "SafetensorError", lambda p: p.write_bytes(b""), load_run_model),
    "checkpoint of another architecture": (
        CHECKPOINT, "checkpoint", "weights of another model: ",
        lambda p: shutil.copy(p.parents[1] / "audio" / CHECKPOINT, p), load_run_model),
    "config missing": ("config.yaml", "run config", "(no such file)", Path.unlink, load_run_model),
    "config not YAML": ("config.yaml", "run config", "ParserError", lambda p: p.write_text("k: [1, 2"),
                        load_run_model),
    "config invalid": ("config.yaml", "run config", "k: Input should be greater than 0",
                       lambda p: p.write_text(p.read_text().replace("k: 8", "k: -3")), load_run_model),
    "run info not JSON": ("run.json", "run info", "JSONDecodeError", lambda p: p.write_text("{not json"),
                          load_run_model),
    "run info a list": ("run.json", "run info", "valid dictionary", lambda p: p.write_text("[1, 2]"),
                        load_run_model),
    "run info without dims": ("run.json", "run info", "dims: Field required", _drop_dims, load_run_model),
    "view statistics not safetensors": (VIEW_STATS, "view statistics", "SafetensorError",
                                        lambda p: p.write_bytes(b"\x93garbage" * 30), lambda r: RunDir(r).view_stats()),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_run_file_is_one_store_error_naming_the_file_and_its_problem(
    finished: Path, tmp_path: Path, damage: str
) -> None:
    name, what, problem, harm, read = DAMAGE[damage]
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    shutil.copytree(finished / "audio", tmp_path / "audio")
    harm(run / name)
    with pytest.raises(StoreError, match=rf"^{re.escape(str(run / name))}: unreadable {what} \(.*\)$") as caught:
        read(run)
    assert problem in str(caught.value)


def test_a_text_model_folder_to_finetune_that_is_not_one_is_refused_before_the_run_directory_exists(
    tmp_path: Path,
) -> None:
    (tmp_path / "notamodel").mkdir()
    write_tiny_view(tmp_path / "store", text_model_path=str(tmp_path / "gone"))
    config = tiny_config(text_mode="finetune", max_epochs=1)
    with pytest.raises(ConfigError, match=r"text_model_path of aligned view 'tiny' .*gone: no such folder"):
        train_on_view(tmp_path / "store", "tiny", config, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"train.text_model_path .*notamodel: has no config.json"):
        train_on_view(tmp_path / "store", "tiny", tiny_config(text_mode="finetune", text_model_path=str(tmp_path /
                      "notamodel")), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_stops_with_an_error_and_writes_no_metrics(tmp_path: Path) -> None:
    write_tiny_view(tmp_path / "store")
    config = tiny_config(lr_other=1e308, lr_av=1e308)  # finite, so valid: the weights overflow in epoch 1
    with pytest.raises(TrainingError, match=r"training diverged in epoch 1: the loss is (nan|inf) at batch"):
        train_on_view(tmp_path / "store", "tiny", config, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "run" / CHECKPOINT).exists()
    assert "finished" not in RunDir(tmp_path / "run").info()


@pytest.mark.parametrize(("absent", "ablation", "message"), [
    (("vision",), {"modalities": ["vision"], "use_slgm": False}, "modality 'vision' is"),
    (("text", "audio", "vision"), {}, "modalities 'text', 'audio', 'vision' are"),
])
def test_a_modality_no_train_clip_has_is_refused_before_writing_anything(
    tmp_path: Path, absent: tuple[str, ...], ablation: dict[str, object], message: str,
) -> None:
    arrays = write_tiny_view(tmp_path / "store")  # vision is absent for one clip: that is trained on (above)
    for m in absent:
        arrays[f"{m}/present"][:] = False
        arrays[f"{m}/lengths"][:] = 0
    rewrite_view(tmp_path / "store", arrays)
    with pytest.raises(ConfigError, match=f"view 'tiny': {message} present for no train clip"):
        train_on_view(tmp_path / "store", "tiny", tiny_config(**ablation), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_view_with_a_non_finite_statistic_is_refused_before_writing_anything(tmp_path: Path) -> None:
    arrays = write_tiny_view(tmp_path / "store")
    arrays["vision/std"][0] = float("nan")
    rewrite_view(tmp_path / "store", arrays)
    with pytest.raises(StoreError, match=r"vision/std holds 1 NaN/inf value\(s\)"):
        train_on_view(tmp_path / "store", "tiny", tiny_config(), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_on_preloaded_batches_follows_the_data_loader_run_exactly(tmp_path: Path) -> None:
    write_tiny_view(tmp_path / "store")
    results = {}
    for preload in (False, True):
        run, _ = train_on_view(tmp_path / "store", "tiny", tiny_config(max_epochs=2, preload=preload),
                               tmp_path / str(preload))
        epochs = [{k: v for k, v in r.items() if k != "seconds"} for r in run.epochs()]
        results[preload] = (epochs, (run.path / "metrics.json").read_text(), (run.path / "predictions.csv").read_text())
    assert results[True] == results[False]
