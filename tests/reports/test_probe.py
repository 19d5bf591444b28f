"""The linear probe of the stats report: R² / Acc-2 of a ridge on clip means, video-grouped folds,
the minimum clip count, determinism, and its table (with too few clips: a note, no numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from reports.compute import clip_mean, compute_stats, linear_probe
from reports.render import render_markdown
from reports.tables import probe_table, report_tables


def _data(n: int = 60, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    y = rng.uniform(-3, 3, n)
    x = rng.standard_normal((n, dim))
    x[:, 0] = y + 0.1 * rng.standard_normal(n)  # one informative dimension among noise
    return x, y, [f"v{i // 3}" for i in range(n)]


def test_a_linear_signal_is_found_and_noise_is_not() -> None:
    x, y, groups = _data()
    p = linear_probe(x, y, groups)
    assert p["clips"] == 60 and p["folds"] == 5 and p["dim"] == 8 and p["grouped"]
    assert p["r2"] > 0.95 and p["acc2"] > 0.95 and p["corr"] > 0.97
    noise = linear_probe(x[:, 1:], y, groups)
    assert noise["r2"] < 0.1 and noise["acc2"] < 0.75


def test_zero_labels_are_left_out_of_acc2_and_nan_labels_out_of_everything() -> None:
    x, y, groups = _data()
    y[:6] = 0.0
    y[6:8] = np.nan
    p = linear_probe(x, y, groups)
    assert p["clips"] == 58 and p["acc2_clips"] == 52


def test_folds_keep_a_videos_clips_together() -> None:
    """Each video has its own label and its clips share one random feature vector: unseen videos
    cannot be predicted (grouped folds), a leaky split would memorise them."""
    rng = np.random.default_rng(1)
    videos = rng.standard_normal((20, 30))
    labels = rng.uniform(-3, 3, 20)
    x = np.tile(videos, (3, 1)) + 0.01 * rng.standard_normal((60, 30))  # v0..v19, v0..v19, v0..v19
    y = np.tile(labels, 3)
    groups = [f"v{i % 20}" for i in range(60)]
    assert linear_probe(x, y, groups)["r2"] < 0.2
    assert linear_probe(x, y, None)["r2"] > 0.5  # clips as their own groups: the leak the grouping prevents


def test_too_few_clips_or_videos_are_skipped_with_a_reason() -> None:
    x, y, groups = _data(n=9)
    assert "skipped" in linear_probe(x, y, groups) and "need 10" in linear_probe(x, y, groups)["skipped"]
    x, y, _ = _data(n=30)
    assert "skipped" in linear_probe(x, y, ["one"] * 30)


def test_probe_is_deterministic() -> None:
    x, y, groups = _data(seed=3)
    assert linear_probe(x, y, groups) == linear_probe(x.copy(), y.copy(), list(groups))


def test_clip_mean_skips_non_finite_entries() -> None:
    v = np.array([[1.0, np.nan, np.inf], [3.0, 2.0, np.nan]], np.float32)
    np.testing.assert_allclose(clip_mean(v), [2.0, 2.0, 0.0])


def test_report_notes_sets_with_too_few_clips(built) -> None:
    _, st = built
    stats = compute_stats(st)
    for fs in stats["feature_sets"].values():
        assert fs["probe"]["clips"] < 10 and "skipped" in fs["probe"]
    table = probe_table(stats)
    assert table.rows == [] and "not probed" in table.note
    assert "probe" in [t.key for t in report_tables(stats)]
    assert "Linear probe" in render_markdown(stats)


def test_probe_table_rows_per_modality() -> None:
    probe = {"clips": 40, "dim": 25, "folds": 5, "grouped": True, "r2": 0.3, "acc2": 0.7, "acc2_clips": 40,
             "corr": 0.55, "alpha_median": 10.0}
    stats = {"feature_sets": {
        "vision.cnn-1": {"modality": "vision", "extractor": "vision.cnn", "probe": {**probe, "dim": 1280}},
        "audio.mfcc-1": {"modality": "audio", "extractor": "audio.mfcc", "probe": {**probe, "dim": 40}},
        "audio.egemaps-1": {"modality": "audio", "extractor": "audio.egemaps", "probe": probe},
        "text.bert-1": {"modality": "text", "extractor": "text.bert", "probe": {"clips": 3, "skipped": "few"}},
    }}
    table = probe_table(stats)
    assert [r[:2] for r in table.rows] == [["audio", "audio.egemaps-1"], ["audio", "audio.mfcc-1"],
                                           ["vision", "vision.cnn-1"]]
    assert table.rows[0][6] == "0.3" and table.rows[0][7] == "70.0%"
    assert "text.bert-1 (few)" in table.note


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_constant_labels_give_no_r2(bad: float) -> None:
    x, _, groups = _data()
    p = linear_probe(x, np.full(60, 1.0), groups)
    assert p["r2"] is None and p["corr"] is None
    assert linear_probe(x, np.where(np.arange(60) == 0, bad, 1.0), groups)["clips"] == 59
