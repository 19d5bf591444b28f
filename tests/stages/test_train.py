"""``stages.train``: mean ± std over seeds, and which directories are a run's seed runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from features.align.config import VIEW_NAME_LIMIT
from stages.train import aggregate, run_dir_name, seed_runs, summary_table
from store.errors import ConfigError
from store.featurestore import quote_name
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
