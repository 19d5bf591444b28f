"""``stages.train``: mean ± std over seeds, and which directories are a run's seed runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from features.align.config import VIEW_NAME_LIMIT
from stages.train import aggregate, run_dir_name, seed_runs, summary_table
from store.errors import ConfigError
from store.featurestore import quote_name
from store.views import open_view
from training.metrics import METRIC_NAMES


def test_aggregate_is_mean_and_population_std_per_split_over_the_seeds_that_have_it() -> None:
    per_seed = {1: {"test": dict.fromkeys(METRIC_NAMES, 0.2), "valid": dict.fromkeys(METRIC_NAMES, 0.5)},
                2: {"test": dict.fromkeys(METRIC_NAMES, 0.4)}}
    agg = aggregate(per_seed)
    assert list(agg) == ["test", "valid"]
    assert agg["test"]["MAE"] == pytest.approx({"mean": 0.3, "std": 0.1})
    assert agg["valid"]["Corr"] == {"mean": 0.5, "std": 0.0}
    assert "| test | 30.00 ± 10.00 |" in summary_table(agg) and "0.300 ± 0.100" in summary_table(agg)


def test_seed_runs_of_a_run_directory_and_of_a_single_run(tmp_path: Path) -> None:
    for seed in (2, 1):
        (tmp_path / f"seed-{seed}").mkdir()
        (tmp_path / f"seed-{seed}" / "run.json").write_text("{}")
    (tmp_path / "seed-3").mkdir()  # no run.json: not a run
    assert seed_runs(tmp_path) == [tmp_path / "seed-1", tmp_path / "seed-2"]
    assert seed_runs(tmp_path / "seed-1") == [tmp_path / "seed-1"]
    with pytest.raises(ConfigError, match="not a run directory"):
        seed_runs(tmp_path / "seed-3")


def test_run_train_reports_every_epoch_of_every_seed_with_best_so_far_and_an_eta_that_reaches_zero(
    tmp_path: Path,
) -> None:
    from stages.train import EpochProgress, run_train
    from tests.helpers.training import one_torch_thread, tiny_config, write_tiny_view

    write_tiny_view(tmp_path / "store")
    config = tiny_config(max_epochs=3, patience=2, seeds=[11, 12], view={"fingerprint": "fp-tiny"})
    seen: list[EpochProgress] = []
    with one_torch_thread():
        root, summary = run_train(str(tmp_path / "store"), "tiny", config, tmp_path / "runs", seeds=2, name="r",
                                  progress=seen.append)
    assert summary["seeds"] == [11, 12]
    for k, seed in ((1, 11), (2, 12)):
        events = [p for p in seen if p.seed == seed]
        records = json.loads((root / f"seed-{seed}" / "epochs.json").read_text())
        assert [p.epoch for p in events] == [r["epoch"] for r in records]  # one event per logged epoch
        assert all(p.seed_index == k and p.n_seeds == 2 and p.max_epochs == 3 for p in events)
        assert [p.valid_loss for p in events] == [r["valid_MAE"] for r in records]
        for i, p in enumerate(events):  # best so far, and the epoch it came from
            best = min(r["valid_MAE"] for r in records[: i + 1])
            assert p.best_loss == best and records[p.best_epoch - 1]["valid_MAE"] == best
    assert all(p.eta_seconds >= 0 for p in seen) and seen[-1].eta_seconds == 0.0
    assert seen[0].eta_seconds > 0 and "seed 1/2 (11) epoch 1/3" in seen[0].line


def test_an_over_long_run_name_is_refused_before_any_training(tmp_path: Path) -> None:
    from stages.train import run_train
    from tests.helpers.training import tiny_config

    name = "实验" * 43  # 86 characters, 258 bytes of UTF-8
    with pytest.raises(ConfigError, match=r"is 258 bytes; a run is the folder <runs>/<name>, so at most 255 bytes"):
        run_train(str(tmp_path / "store"), "tiny", tiny_config(), tmp_path / "runs", name=name)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../outside", "a/b", "..", "back\\slash"])
def test_a_run_name_that_is_not_one_folder_name_is_refused_before_any_training(tmp_path: Path, name: str) -> None:
    from stages.train import run_train
    from tests.helpers.training import tiny_config

    with pytest.raises(ConfigError, match="is not one folder name"):
        run_train(str(tmp_path / "store"), "tiny", tiny_config(), tmp_path / "runs", name=name)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "outside").exists()


def test_a_run_named_after_a_view_of_the_longest_name_gets_a_folder_that_fits(tmp_path: Path) -> None:
    from stages.train import run_train
    from tests.helpers.training import one_torch_thread, tiny_config, write_tiny_view

    view = "v" * VIEW_NAME_LIMIT
    write_tiny_view(tmp_path / "store", view)
    config = tiny_config(max_epochs=1, view={"fingerprint": "fp-tiny"})
    with one_torch_thread():
        root, summary = run_train(str(tmp_path / "store"), view, config, tmp_path / "runs")
    assert root.parent == tmp_path / "runs" and len(root.name) <= 255 and root.name.startswith("v" * 150)
    assert (root / "summary.json").exists() and summary["seeds"]
    short = run_dir_name("tiny", "no_slgm", None)
    assert short.startswith("tiny-no_slgm-") and quote_name(short) == short  # a name that fits stays as it was


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run of seeds 11 and 12 (``<root>/runs/r``)."""
    from stages.train import run_train
    from tests.helpers.training import one_torch_thread, tiny_config, write_tiny_view

    root = tmp_path_factory.mktemp("two_seeds")
    write_tiny_view(root / "store")
    with one_torch_thread():
        run, _ = run_train(str(root / "store"), "tiny", tiny_config(max_epochs=1, seeds=[11, 12]), root / "runs",
                           seeds=2, name="r")
    return run


def test_evaluate_reads_every_seeds_checkpoint_before_scoring_any(
    two_seeds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import stages.train
    from store.errors import StoreError
    from training.runs import CHECKPOINT

    run = tmp_path / "r"
    shutil.copytree(two_seeds, run)
    (run / "seed-12" / CHECKPOINT).write_bytes(b"")  # the second seed's only
    scored: list[Path] = []
    monkeypatch.setattr(stages.train, "evaluate_run", lambda r, split, store, model: scored.append(r) or {})
    with pytest.raises(StoreError, match=r"seed-12/best\.safetensors: unreadable checkpoint \(SafetensorError"):
        stages.train.run_evaluate(run, "test")
    assert scored == [] and not (run / "eval-test.json").exists()


def test_evaluate_builds_each_seeds_model_once_and_scores_that_model(
    two_seeds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import stages.train
    import training.train

    run = tmp_path / "r"
    shutil.copytree(two_seeds, run)

    built: list[str] = []
    load = training.train.load_run_model

    def counted(run_dir, device=None):  # type: ignore[no-untyped-def]
        built.append(Path(run_dir).name)
        return load(run_dir, device)

    monkeypatch.setattr(stages.train, "load_run_model", counted)
    monkeypatch.setattr(training.train, "load_run_model", counted)
    summary = stages.train.run_evaluate(run, "test")
    assert sorted(built) == ["seed-11", "seed-12"]  # once each (it was twice: a check, then the scoring)
    assert summary["per_seed"]["11"]["test"] == json.loads((run / "seed-11" / "metrics.json").read_text())["test"]


def test_two_seed_directories_holding_one_seed_are_refused_naming_both(two_seeds: Path, tmp_path: Path) -> None:
    import shutil

    from stages.train import run_evaluate

    run = tmp_path / "r"
    shutil.copytree(two_seeds, run)
    shutil.copytree(run / "seed-11", run / "seed-13")  # copied in from elsewhere: its config says seed 11
    with pytest.raises(ConfigError, match=r"r/seed-11 and .*r/seed-13 both hold seed 11"):
        run_evaluate(run, "test")
    assert not (run / "eval-test.json").exists()


@pytest.mark.parametrize("seeds", [0, -1, -6])
def test_fewer_than_one_seed_is_refused_before_any_training(tmp_path: Path, seeds: int) -> None:
    from stages.train import run_train
    from tests.helpers.training import tiny_config

    with pytest.raises(ConfigError, match=rf"--seeds {seeds}: train at least 1 seed"):
        run_train(str(tmp_path / "store"), "tiny", tiny_config(), tmp_path / "runs", seeds=seeds, name="r")
    assert not (tmp_path / "runs").exists()


def test_what_the_config_needs_of_this_machine_is_checked_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from stages.train import train_plan
    from tests.helpers.training import tiny_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="train.device: device 'cuda' requested but torch sees no CUDA device"):
        train_plan(tiny_config(device="cuda"), "full", None)
    finetune = {"text_mode": "finetune", "text_model_path": str(tmp_path / "nowhere")}
    with pytest.raises(ConfigError, match=r"train.text_model_path .*nowhere: no such folder"):
        train_plan(tiny_config(**finetune), "full", 2)
    with pytest.raises(ConfigError, match=r"train.text_model_path .*: has no config.json"):
        train_plan(tiny_config(**finetune | {"text_model_path": str(tmp_path)}), "full", 2)
    assert train_plan(tiny_config(**finetune), "audio", 2)[1] == [1111, 1112]  # no text: no text model needed


def _strict(text: str) -> object:
    """JSON as a strict reader parses it: a bare NaN/Infinity is an error, not a number."""
    def refuse(name: str) -> object:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_an_undefined_metric_is_null_in_strict_json_a_dash_in_the_tables_and_said_why(tmp_path: Path) -> None:
    import pyarrow as pa

    from stages.train import run_train
    from tests.helpers.training import one_torch_thread, rewrite_view, tiny_config, write_tiny_view

    arrays = write_tiny_view(tmp_path / "store")
    clips = open_view(tmp_path / "store", "tiny").clips
    # every valid and test label equal: Pearson's r has no value (train labels of both signs, which SLGM needs)
    same = pa.array([y if s == "train" else 1.0 for y, s in zip(clips.column("label").to_pylist(),
                                                               clips.column("split").to_pylist())], pa.float64())
    rewrite_view(tmp_path / "store", arrays, clips=clips.set_column(clips.column_names.index("label"), "label", same))
    with one_torch_thread():
        root, summary = run_train(str(tmp_path / "store"), "tiny", tiny_config(max_epochs=1, seeds=[1, 2]),
                                  tmp_path / "runs", seeds=2, name="same", ensemble=True)
    on_disk = _strict((root / "summary.json").read_text())
    assert isinstance(on_disk, dict)
    assert on_disk["mean_std"]["test"]["Corr"] == {"mean": None, "std": None}
    assert on_disk["per_seed"]["1"]["valid"]["Corr"] is None and on_disk["ensemble"]["test"]["Corr"] is None
    assert on_disk["mean_std"]["test"]["MAE"]["mean"] == pytest.approx(summary["mean_std"]["test"]["MAE"]["mean"])
    assert on_disk["notes"] == summary["notes"] and len(summary["notes"]) == 1
    assert summary["notes"][0].startswith("Corr is undefined for test, valid, test (ensemble of 2), valid (ensemble")
    for seed in (1, 2):
        for name in ("metrics.json", "epochs.json", "run.json"):
            _strict((root / f"seed-{seed}" / name).read_text())
    table = (root / "summary.md").read_text()
    assert "| test |" in table and table.count("| — |") == 4 and "Note: Corr is undefined" in table
    # a seed's null read back counts as undefined: the mean over seeds is not the mean of the others
    assert math.isnan(aggregate({1: {"test": {"Corr": None}}, 2: {"test": {"Corr": 0.5}}})["test"]["Corr"]["mean"])
