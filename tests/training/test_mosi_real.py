"""The training stage on real language: CMU-MOSI transcripts → text.bert → text-only view → MCMF.

A fast end-to-end check (well under a minute on 2 cores) on a fixed subset of
``../shared/data/mosi/mosi_text_trainval.csv`` (160 train + 80 valid clips, seeded draw): ingest, extract
``text.bert`` with the local MiniLM-L6, build the raw-token text view (``flows.align`` with
``grid=none``, as benchmarks/mosi_text.py does), then train the text-only ablation in ``frozen``
mode for 4 epochs with uniformly shuffled batches and in ``finetune`` mode for 1 epoch with the
default length-bucketed batches, both through ``training.train.train_on_view``, seed 1111, batch 16
without accumulation (10 optimizer steps per epoch). Both must learn the sentiment:
valid Pearson r > 0.2 and a valid MAE below that of always predicting the train mean.
Skipped when the shared data is absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.training import one_torch_thread

pytestmark = pytest.mark.shared_data

N_TRAIN, N_VALID = 160, 80


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def mosi(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from benchmarks.mosi_text import prepare, subset_csv

    src = shared_data / "mosi" / "mosi_text_trainval.csv"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    work = tmp_path_factory.mktemp("mosi-real")
    csv = subset_csv(src, work / "mosi_subset.csv", {"train": N_TRAIN, "valid": N_VALID}, seed=0)
    info = prepare(work, csv)
    return info


def _config(mode: str, text_model_path: str, **extra: Any):  # -> TrainConfig
    from training.config import TrainConfig

    settings: dict[str, Any] = dict(
        modalities=["text"], use_slgm=False, text_mode=mode, seed=1111, device="cpu",
        text_model_path=text_model_path, accumulate=1, patience=10,  # 10 optimizer steps per epoch
    )
    settings.update(extra)
    return TrainConfig(**settings)


def _mean_baseline_mae(store: str) -> float:
    from store.views import open_view

    clips = open_view(store, "mosi_text").clips.to_pydict()
    labels = np.asarray(clips["label"])
    split = np.asarray(clips["split"])
    return float(np.abs(labels[split == "valid"] - labels[split == "train"].mean()).mean())


def test_the_real_text_view_holds_the_subset_with_tokens(mosi: dict[str, Any]) -> None:
    from store.views import open_view

    assert mosi["ingest"]["clips"] == N_TRAIN + N_VALID and mosi["extract"]["failed"] == 0
    view = open_view(mosi["store"], "mosi_text")
    assert mosi["view"]["clips"] == {"train": N_TRAIN, "valid": N_VALID}
    assert view.modalities == ["text"] and view.fingerprint
    g = view.group()
    n, length, dim = g["text/values"].shape
    assert (n, dim) == (N_TRAIN + N_VALID, 384)
    ids = np.asarray(g["text_tokens/input_ids"][...])
    lengths = np.asarray(g["text/lengths"][...])
    assert (lengths >= 3).all() and lengths.max() == length  # nothing truncated
    assert (ids[:, 0] == 101).all() and (ids[np.arange(n), lengths - 1] == 102).all()  # [CLS] … [SEP]
    assert Path(mosi["text_model_path"], "config.json").is_file()


def test_frozen_text_learns_sentiment_through_train_on_view(mosi: dict[str, Any], tmp_path: Path) -> None:
    from training.train import train_on_view

    config = _config("frozen", mosi["text_model_path"], max_epochs=4, batching="shuffle")
    _, result = train_on_view(mosi["store"], "mosi_text", config, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["valid"]
    assert len(result.history) == 4 and metrics["MAE"] == pytest.approx(result.best_valid_loss)
    assert metrics["Corr"] > 0.2, metrics
    assert metrics["MAE"] < _mean_baseline_mae(mosi["store"]), metrics


def test_finetuned_text_learns_sentiment_with_length_buckets(mosi: dict[str, Any], tmp_path: Path) -> None:
    from training.train import train_on_view

    config = _config("finetune", mosi["text_model_path"], max_epochs=1)
    assert config.batching == "bucket"
    train_on_view(mosi["store"], "mosi_text", config, tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["text_model_path"] == mosi["text_model_path"] and info["epochs_run"] == 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["valid"]
    assert metrics["Corr"] > 0.2, metrics
    assert metrics["MAE"] < _mean_baseline_mae(mosi["store"]), metrics


def test_ridge_probes_on_frozen_states_learn_sentiment_under_both_protocols(mosi: dict[str, Any]) -> None:
    """benchmarks/mosi_probe.py on the subset: the dev protocol's view keeps MOSI valid as an
    untouched test, the penalty comes from the grid, and a linear model on the mean-pooled states
    already tracks the sentiment (the reference point for what fine-tuning adds)."""
    from benchmarks.mosi_probe import ALPHAS, run
    from benchmarks.mosi_text import make_dev_view

    dev = make_dev_view(mosi["store"])
    assert dev["splits"]["test"] == N_VALID and dev["splits"]["train"] + dev["splits"]["valid"] == N_TRAIN
    results = run(mosi["store"], dev["view"])
    assert set(results) == {"valid/cls", "valid/mean", "dev/cls", "dev/mean"}
    assert all(r["alpha"] in ALPHAS for r in results.values())
    for protocol in ("valid", "dev"):
        metrics = results[f"{protocol}/mean"]["metrics"]
        assert metrics["Corr"] > 0.2, (protocol, metrics)
        assert metrics["MAE"] < _mean_baseline_mae(mosi["store"]), (protocol, metrics)
