"""The training loop on tiny synthetic tensors: loss, accumulation, early stopping, checkpoints."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_model
from torch import nn
from torch.utils.data import DataLoader

from store.errors import StoreError, TrainingError
from tests.helpers.training import (
    SHORT_DIMS,
    ItemDataset,
    one_torch_thread,
    synthetic_items,
    tiny_config,
)
from training.config import SEARCH_SPACE, TrainConfig
from training.data import Collator
from training.loop import evaluate, fit, multitask_loss, predict, seed_everything, train_epoch
from training.model import MCMF, ModelOutput
from training.runs import load_checkpoint, save_checkpoint

STATS = {"a": (np.full(4, 5.0), np.ones(4)), "v": (np.full(5, -2.0), np.ones(5))}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def loaders(config: TrainConfig, n_train: int = 48, n_valid: int = 16) -> tuple[DataLoader, DataLoader, np.ndarray]:
    train = synthetic_items(n_train, seed=1)
    collate = Collator(STATS, finetune_text=False)
    gen = torch.Generator().manual_seed(0)
    train_loader = DataLoader(
        ItemDataset(train), batch_size=config.batch_size, shuffle=True, collate_fn=collate, generator=gen
    )
    valid_loader = DataLoader(
        ItemDataset(synthetic_items(n_valid, seed=2, train=False)), batch_size=16, collate_fn=collate
    )
    return train_loader, valid_loader, np.array([it.label for it in train], dtype=np.float32)


def test_defaults_follow_the_spec_and_lie_in_the_search_space() -> None:
    c = TrainConfig()
    assert (c.k, c.heads, c.lgt_layers, c.glimpses, c.d_f) == (64, 8, 2, 4, 16)
    assert (c.lr_text, c.lr_av, c.lr_other, c.weight_decay) == (5e-5, 5e-3, 1e-3, 1e-3)
    assert (c.batch_size, c.accumulate, c.grad_clip, c.patience, c.max_epochs) == (16, 4, 0.8, 8, 60)
    assert c.seeds == [1111, 1112, 1113, 1114, 1115]
    for name, values in SEARCH_SPACE.items():
        assert getattr(c, name) in values
    assert TrainConfig(fusion="concat").head_dropout_m == 0.0
    with pytest.raises(ValueError):
        TrainConfig(k=60, heads=8)
    with pytest.raises(ValueError):
        TrainConfig(learning_rate=1.0)  # extra="forbid"


def test_loss_weights_unimodal_tasks_by_tanh_of_label_gap() -> None:
    out = ModelOutput(
        preds={"m": torch.tensor([1.0, 2.0]), "l": torch.tensor([0.0, 0.0])}, features={}
    )
    y_m = torch.tensor([1.0, 1.0])
    total, parts = multitask_loss(out, y_m, {"m": y_m, "l": torch.tensor([1.0, 3.0])})
    assert float(parts["m"]) == pytest.approx(0.5)
    assert float(parts["l"]) == pytest.approx((0.0 + np.tanh(2.0) * 3.0) / 2)
    assert float(total) == pytest.approx(0.5 + np.tanh(2.0) * 1.5)
    _, plain = multitask_loss(out, y_m, None)  # SLGM off: y_m with weight 1
    assert float(plain["l"]) == pytest.approx(1.0)


def test_training_on_synthetic_data_decreases_loss_and_slgm_warms_up() -> None:
    config = tiny_config(max_epochs=6, patience=6)
    seed_everything(config.seed)
    model = MCMF(config, SHORT_DIMS)
    train_loader, valid_loader, labels = loaders(config)
    records: list[tuple[int, bool]] = []
    result = fit(
        model, train_loader, valid_loader, config, train_labels=labels,
        on_epoch_end=lambda r, m, improved: records.append((int(r["epoch"]), improved)),
    )
    h = result.history
    assert len(h) == 6 and [e for e, _ in records] == [1, 2, 3, 4, 5, 6]
    assert h[-1]["train_loss_m"] < 0.85 * h[0]["train_loss_m"]
    assert result.best_valid_loss < h[0]["valid_loss_m"]
    # epoch 1: y_u = y_m, so tanh weights are 0 and the unimodal losses vanish (§5 warm-up); epoch 2
    # updates each label only after its batch's loss, so unimodal losses start in epoch 3
    assert h[0]["train_loss_l"] == h[0]["train_loss_a"] == h[0]["train_loss_v"] == 0.0
    assert h[1]["train_loss_l"] == 0.0 and h[2]["train_loss_l"] > 0.0
    assert h[0]["label_gap_l"] == 0.0 and h[1]["label_gap_l"] > 0.0
    # the model holds the best-validation weights at the end
    p = predict(model, valid_loader)
    assert float(np.mean(np.abs(p.pred - p.label))) == pytest.approx(result.best_valid_loss, abs=1e-6)


def test_early_stopping_after_patience_epochs_without_improvement() -> None:
    config = tiny_config(lr_other=1e-12, lr_av=1e-12, max_epochs=20, patience=2)
    model = MCMF(config, SHORT_DIMS)
    train_loader, valid_loader, labels = loaders(config, n_train=16, n_valid=8)
    result = fit(model, train_loader, valid_loader, config, train_labels=labels)
    assert result.stopped_early and result.best_epoch == 1 and len(result.history) == 3


def test_epoch_cap() -> None:
    config = tiny_config(max_epochs=2, patience=50, use_slgm=False)
    train_loader, valid_loader, _ = loaders(config, n_train=16, n_valid=8)
    result = fit(MCMF(config, SHORT_DIMS), train_loader, valid_loader, config)
    assert len(result.history) == 2 and not result.stopped_early


def test_accumulated_small_batches_equal_one_large_batch() -> None:
    """4 × acc 2 and 8 × acc 1 give the same clipped gradient (padding-invariant model, no dropout).

    Plain SGD makes the update linear in the gradient; Adam's first step is ~sign(g), which
    amplifies float noise in gradients that are zero in theory (attention key biases)."""
    zero = dict(text_dropout=0.0, attn_dropout=0.0, res_dropout=0.0, relu_dropout=0.0, head_dropout_m=0.0,
                head_dropout_l=0.0, head_dropout_a=0.0, use_slgm=False, grad_clip=0.5)
    small, big = tiny_config(batch_size=4, accumulate=2, **zero), tiny_config(batch_size=8, accumulate=1, **zero)
    torch.manual_seed(0)
    m_small = MCMF(small, SHORT_DIMS)
    m_big = copy.deepcopy(m_small)
    items = ItemDataset(synthetic_items(8, seed=3))
    collate = Collator(STATS, finetune_text=False)
    for model, config in ((m_small, small), (m_big, big)):
        loader = DataLoader(items, batch_size=config.batch_size, collate_fn=collate)
        train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=1.0), config, torch.device("cpu"), None, 1)
    for (name, a), b in zip(m_small.named_parameters(), m_big.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    config = tiny_config(max_epochs=1)
    torch.manual_seed(0)
    model = MCMF(config, SHORT_DIMS)
    train_loader, valid_loader, labels = loaders(config, n_train=16, n_valid=8)
    fit(model, train_loader, valid_loader, config, train_labels=labels)
    save_checkpoint(model, tmp_path / "best.safetensors")
    torch.manual_seed(123)
    fresh = MCMF(config, SHORT_DIMS)
    assert not np.array_equal(predict(fresh, valid_loader).pred, predict(model, valid_loader).pred)
    load_checkpoint(fresh, tmp_path / "best.safetensors")
    assert np.array_equal(predict(fresh, valid_loader).pred, predict(model, valid_loader).pred)
    with pytest.raises(StoreError, match=r"best\.safetensors: unreadable checkpoint \(weights of another model: "
                       r"6 weights the model has no place for"):  # strict: another architecture does not load silently
        load_checkpoint(MCMF(tiny_config(fusion="concat"), SHORT_DIMS), tmp_path / "best.safetensors")


def _flatten_lstm_weights_like_cudnn(model: nn.Module) -> list[torch.Tensor]:
    """Make every LSTM's parameters views of one flat buffer, as cuDNN's ``flatten_parameters`` does
    on CUDA; returns the buffers."""
    buffers = []
    for lstm in (m for m in model.modules() if isinstance(m, nn.LSTM)):
        params = list(lstm.parameters())
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        offset = 0
        for p in params:
            p.data = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        buffers.append(flat)
    assert buffers, "the model has no LSTM"
    return buffers


def test_checkpoint_saves_and_loads_lstm_weights_that_share_one_flat_buffer(tmp_path: Path) -> None:
    config = tiny_config(max_epochs=1)
    torch.manual_seed(0)
    model = MCMF(config, SHORT_DIMS)
    _, valid_loader, _ = loaders(config, n_train=16, n_valid=8)
    _flatten_lstm_weights_like_cudnn(model)
    with pytest.raises(RuntimeError, match="covering the entire storage"):  # the condition the GPU hit
        save_model(model, str(tmp_path / "plain.safetensors"))
    save_checkpoint(model, tmp_path / "best.safetensors")
    torch.manual_seed(1)
    fresh = MCMF(config, SHORT_DIMS)
    flat = _flatten_lstm_weights_like_cudnn(fresh)[0]
    load_checkpoint(fresh, tmp_path / "best.safetensors")
    assert np.array_equal(predict(fresh, valid_loader).pred, predict(model, valid_loader).pred)
    lstm = next(m for m in fresh.modules() if isinstance(m, nn.LSTM))
    assert all(p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for p in lstm.parameters())


def test_a_non_finite_loss_stops_training_in_its_epoch_naming_the_batch_and_its_clip() -> None:
    config = tiny_config(batch_size=1, accumulate=1, use_slgm=False, max_epochs=3)
    seed_everything(0)
    train_loader, valid_loader, labels = loaders(config, n_train=12)
    train_loader.dataset.items[5].label = float("nan")
    epochs: list[dict[str, float]] = []
    with pytest.raises(TrainingError, match=r"training diverged in epoch 1: the loss is nan at batch \d+ of 12 "
                                            r"\(clips 'c1-5'\); lower the learning rates"):
        fit(MCMF(config, SHORT_DIMS), train_loader, valid_loader, config, train_labels=labels,
            on_epoch_end=lambda record, model, improved: epochs.append(record))
    assert epochs == []  # the diverged epoch is not reported as one


def test_weights_that_diverged_make_evaluation_an_error_not_metrics_of_nan() -> None:
    config = tiny_config()
    seed_everything(0)
    _, valid_loader, _ = loaders(config)
    model = MCMF(config, SHORT_DIMS)
    with torch.no_grad():
        model.heads["m"].fc1.weight.fill_(float("nan"))  # as after a last optimizer step of an epoch gone wrong
    with pytest.raises(TrainingError, match=r"^after epoch 4, the model predicts NaN/inf for 16 of 16 clips "
                                            r"\(first 'c2-\d+'\)"):
        evaluate(model, valid_loader, when="after epoch 4, ")
