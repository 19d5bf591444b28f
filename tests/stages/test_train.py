"""``stages.train``: mean ± std over seeds, and which directories are a run's seed runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.train import aggregate, seed_runs, summary_table
from store.errors import ConfigError
from training.metrics import METRIC_NAMES


def test_aggregate_is_mean_and_population_std_per_split_over_the_seeds_that_have_it() -> None:
    per_seed = {1: {"test": dict.fromkeys(METRIC_NAMES, 0.2), "valid": dict.fromkeys(METRIC_NAMES, 0.5)},
                2: {"test": dict.fromkeys(METRIC_NAMES, 0.4)}}
    agg = aggregate(per_seed)
    assert list(agg) == ["test", "valid"]
    assert agg["test"]["MAE"] == pytest.approx({"mean": 0.3, "std": 0.1})
    assert agg["valid"]["Corr"] == {"mean": 0.5, "std": 0.0}
    assert "| test | 30.00 ± 10.00 |" in summary_table(agg)


def test_seed_runs_of_a_run_directory_and_of_a_single_run(tmp_path: Path) -> None:
    for seed in (2, 1):
        (tmp_path / f"seed-{seed}").mkdir()
        (tmp_path / f"seed-{seed}" / "run.json").write_text("{}")
    (tmp_path / "seed-3").mkdir()  # no run.json: not a run
    assert seed_runs(tmp_path) == [tmp_path / "seed-1", tmp_path / "seed-2"]
    assert seed_runs(tmp_path / "seed-1") == [tmp_path / "seed-1"]
    with pytest.raises(ConfigError, match="not a run directory"):
        seed_runs(tmp_path / "seed-3")
