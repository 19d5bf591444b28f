"""Recipe options beyond the spec: lr schedules, AdamW without decay on biases/LayerNorm, per-group
schedules for the text encoder; defaults keep the spec's constant-lr Adam."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.utils.data import DataLoader

from tests.helpers.training import (
    SHORT_DIMS,
    ItemDataset,
    one_torch_thread,
    save_tiny_bert,
    synthetic_items,
    tiny_config,
)
from training.config import TrainConfig
from training.data import Collator
from training.loop import build_optimizer, build_scheduler, fit, lr_multiplier, param_groups, seed_everything
from training.model import MCMF, build_model

STATS = {"a": (np.full(4, 5.0), np.ones(4)), "v": (np.full(5, -2.0), np.ones(5))}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_schedule_warms_up_linearly_then_decays_to_the_floor_at_the_horizon(kind: str, floor: float) -> None:
    total, warmup = 100, 10
    f = [lr_multiplier(s, total, warmup, kind, floor) for s in range(total + 20)]
    assert f[0] == 0.0 and f[5] == pytest.approx(0.5) and f[warmup] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:warmup], f[1:warmup + 1]))  # rising warm-up
    assert all(a >= b for a, b in zip(f[warmup:total], f[warmup + 1:total + 1]))  # then never rising
    assert f[total] == pytest.approx(floor) and all(x == pytest.approx(floor) for x in f[total:])
    if kind == "linear":
        assert f[55] == pytest.approx(floor + (1 - floor) * 0.5)
    else:
        assert f[55] == pytest.approx(floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert [lr_multiplier(s, total, 0, "constant") for s in (0, 50, 500)] == [1.0, 1.0, 1.0]


def test_linear_schedule_matches_transformers_get_linear_schedule_with_warmup() -> None:
    from transformers import get_linear_schedule_with_warmup

    p = nn.Parameter(torch.zeros(1))
    ref = torch.optim.SGD([p], lr=1.0)
    sched = get_linear_schedule_with_warmup(ref, 7, 50)
    for step in range(60):
        assert ref.param_groups[0]["lr"] == pytest.approx(lr_multiplier(step, 50, 7, "linear"))
        ref.step()
        sched.step()


def _model(config: TrainConfig) -> MCMF:
    seed_everything(0)
    return build_model(config, SHORT_DIMS)


def test_defaults_keep_the_spec_optimiser_adam_with_l2_on_every_weight_and_no_schedule() -> None:
    config = tiny_config()
    assert (config.optimizer, config.lr_schedule, config.warmup_ratio, config.no_decay_bias_norm) == (
        "adam", "constant", 0.0, False)
    model = _model(config)
    opt = build_optimizer(model, config)
    assert type(opt) is torch.optim.Adam
    assert all(g["weight_decay"] == config.weight_decay for g in opt.param_groups)
    assert build_scheduler(opt, config, steps_per_epoch=5) is None
    with pytest.raises(ValueError, match="schedule_epochs or max_epochs"):
        TrainConfig(lr_schedule="linear", max_epochs=None)
    assert TrainConfig(lr_schedule="linear", max_epochs=None, schedule_epochs=4).schedule_horizon == 4


def test_adamw_puts_every_bias_and_layernorm_weight_and_nothing_else_in_a_no_decay_group(tmp_path: Path) -> None:
    config = tiny_config(text_mode="finetune", optimizer="adamw", no_decay_bias_norm=True, weight_decay=0.01,
                         weight_decay_text=0.02)
    seed_everything(0)
    model = build_model(config, SHORT_DIMS, save_tiny_bert(tmp_path / "bert"))
    opt = build_optimizer(model, config)
    assert type(opt) is torch.optim.AdamW
    decay_of = {id(p): (g["name"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    assert len(decay_of) == sum(1 for _ in model.parameters())  # every parameter exactly once
    norms = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    text_ids = {id(p) for p in model.text_encoder.parameters()}  # type: ignore[union-attr]
    assert norms and any(i in text_ids for i in norms)  # the BERT's LayerNorms are covered too
    for name, p in model.named_parameters():
        group, decay = decay_of[id(p)]
        if name.rsplit(".", 1)[-1].startswith("bias") or id(p) in norms:
            assert decay == 0.0 and group.endswith("_no_decay"), name
        else:
            assert decay == (0.02 if id(p) in text_ids else 0.01), name
    names = {g["name"] for g in param_groups(model, config)}
    assert {"text", "text_no_decay", "av", "av_no_decay", "other", "other_no_decay"} == names


def loaders(config: TrainConfig) -> tuple[DataLoader, DataLoader, np.ndarray]:
    train = synthetic_items(48, seed=1)
    collate = Collator(STATS, finetune_text=False)
    gen = torch.Generator().manual_seed(0)
    return (DataLoader(ItemDataset(train), batch_size=config.batch_size, shuffle=True, collate_fn=collate,
                       generator=gen),
            DataLoader(ItemDataset(synthetic_items(16, seed=2, train=False)), batch_size=16, collate_fn=collate),
            np.array([it.label for it in train], dtype=np.float32))


def _fit(config: TrainConfig) -> list[dict[str, float]]:
    model = _model(config)
    train, valid, labels = loaders(config)
    return fit(model, train, valid, config, train_labels=labels).history


def test_fit_follows_the_schedule_per_epoch_and_is_deterministic() -> None:
    # 48 clips / batch 8 = 6 batches, accumulate 2 -> 3 optimizer steps per epoch; horizon 4 epochs
    config = tiny_config(lr_schedule="linear", warmup_ratio=0.25, max_epochs=5, patience=9, schedule_epochs=4,
                         optimizer="adamw", no_decay_bias_norm=True)
    history = _fit(config)
    total, warmup = 12, 3
    lrs = [r["lr_other"] for r in history]
    assert lrs == pytest.approx([config.lr_other * lr_multiplier(3 * e, total, warmup, "linear")
                                 for e in range(1, 6)])
    assert lrs[3] == 0.0 and lrs[4] == 0.0  # decayed to the floor (0) at the horizon and kept there
    again = _fit(config)
    assert [r["valid_MAE"] for r in again] == [r["valid_MAE"] for r in history]  # same seed, same metrics
    assert [r["train_loss"] for r in again] == [r["train_loss"] for r in history]


def test_the_text_encoder_can_decay_on_its_own_shorter_horizon(tmp_path: Path) -> None:
    config = tiny_config(text_mode="finetune", lr_schedule="constant", lr_schedule_text="linear",
                         text_schedule_epochs=2)
    seed_everything(0)
    model = build_model(config, SHORT_DIMS, save_tiny_bert(tmp_path / "bert"))
    opt = build_optimizer(model, config)
    sched = build_scheduler(opt, config, steps_per_epoch=5)
    assert sched is not None
    for _ in range(10):  # two epochs: the text encoder is frozen (lr 0), the rest keeps its lr
        opt.step()
        sched.step()
    lr = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lr["text"] == 0.0 and lr["other"] == config.lr_other and lr["av"] == config.lr_av


def test_the_text_encoder_freezes_after_its_horizon_while_the_rest_keeps_training(tmp_path: Path) -> None:
    from tests.helpers.training import write_tiny_view
    from training.loop import text_freeze_epoch
    from training.train import train_on_view

    bert = save_tiny_bert(tmp_path / "bert")
    write_tiny_view(tmp_path / "store", text_model_path=bert, splits={"train": 16, "valid": 8})
    config = tiny_config(text_mode="finetune", max_epochs=3, patience=3, lr_schedule_text="linear",
                         text_schedule_epochs=1, optimizer="adamw")
    assert text_freeze_epoch(config) == 1 and text_freeze_epoch(tiny_config()) is None
    assert text_freeze_epoch(config.model_copy(update={"lr_floor": 0.1})) is None
    snaps: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    def snap(record: dict[str, float], model: nn.Module, improved: bool) -> None:
        text = {k: v.clone() for k, v in model.text_encoder.state_dict().items()}  # type: ignore[union-attr]
        rest = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("text_encoder.")}
        snaps.append((text, rest))

    _, result = train_on_view(tmp_path / "store", "tiny", config, tmp_path / "run", on_epoch=snap)
    assert [r["lr_text"] for r in result.history] == [0.0, 0.0, 0.0] and result.history[0]["lr_other"] > 0
    (t1, r1), (t2, r2), (t3, r3) = snaps
    assert all(torch.equal(t1[k], t2[k]) and torch.equal(t2[k], t3[k]) for k in t1)  # frozen after epoch 1
    assert not all(torch.equal(r1[k], r3[k]) for k in r1)  # the rest still learns


@pytest.mark.parametrize(("field", "value"), [("weight_decay", math.inf), ("lr_other", math.nan),
                                              ("min_delta", math.inf), ("adam_betas", (0.9, math.nan))])
def test_a_non_finite_number_in_the_config_is_refused(field: str, value: object) -> None:
    # inf passes weight_decay >= 0 (and makes every loss NaN from the first step on)
    with pytest.raises(ValidationError, match="Input should be a finite number"):
        TrainConfig.model_validate({field: value})
    with pytest.raises(ValidationError, match="Input should be a finite number"):
        TrainConfig.model_validate({field: "inf" if field != "adam_betas" else ["0.9", "inf"]})  # as --set gives it
