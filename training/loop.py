"""Training loop (model-spec.md §5-§6): multi-task L1 loss with SLGM labels, Adam param groups,
gradient accumulation, clipping, early stopping on validation L_m; plus prediction and seeding."""

from __future__ import annotations

import functools
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from store.errors import TrainingError
from store.runtime import resolve_device
from training.config import TrainConfig
from training.data import PaddedBatch
from training.model import MCMF, ModelOutput
from training.slgm import SLGM
from training.targets import SCORE, Target

#: called after every epoch with (record, model, improved); runs.py saves checkpoints from it
EpochCallback = Callable[[dict[str, float], nn.Module, bool], None]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (all devices); deterministic cuDNN for reported runs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def _no_decay_ids(model: nn.Module) -> set[int]:
    """Parameters that conventionally get no weight decay: biases (LSTM's too) and LayerNorm weights."""
    ids = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("bias") or "LayerNorm" in name or "layer_norm" in name:  # LSTMs: bias_ih_l0
            ids.add(id(p))
    return ids


def param_groups(model: MCMF, config: TrainConfig) -> list[dict[str, Any]]:
    """Three lr groups (§6): fine-tuned text encoder, audio/vision BiLSTM encoders, everything else.

    Each group carries its ``weight_decay`` (``weight_decay_text`` for the text encoder); with
    ``no_decay_bias_norm`` a group's biases and LayerNorm weights go to a ``<name>_no_decay`` twin
    with decay 0 (same lr and schedule). ``kind`` names the group's role for the lr schedule.
    """
    text = list(model.text_encoder.parameters()) if model.text_encoder is not None else []
    av = [p for u in ("a", "v") if u in model.encoders for p in model.encoders[u].parameters()]
    taken = {id(p) for p in text + av}
    other = [p for p in model.parameters() if id(p) not in taken]
    text_decay = config.weight_decay if config.weight_decay_text is None else config.weight_decay_text
    groups: list[dict[str, Any]] = [
        {"name": "text", "kind": "text", "params": text, "lr": config.lr_text, "weight_decay": text_decay},
        {"name": "av", "kind": "av", "params": av, "lr": config.lr_av, "weight_decay": config.weight_decay},
        {"name": "other", "kind": "other", "params": other, "lr": config.lr_other, "weight_decay": config.weight_decay},
    ]
    if config.no_decay_bias_norm:
        skip = _no_decay_ids(model)
        split = []
        for g in groups:
            split.append({**g, "params": [p for p in g["params"] if id(p) not in skip]})
            split.append({**g, "name": f"{g['name']}_no_decay", "weight_decay": 0.0,
                          "params": [p for p in g["params"] if id(p) in skip]})
        groups = split
    return [g for g in groups if g["params"]]


def build_optimizer(model: MCMF, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over ``param_groups``; on CUDA the fused kernel (one launch per step instead
    of several per parameter group), on the CPU torch's default implementation."""
    groups = param_groups(model, config)
    fused = all(p.is_cuda for g in groups for p in g["params"])
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, betas=config.adam_betas, weight_decay=config.weight_decay, fused=fused or None)
    return torch.optim.Adam(groups, betas=config.adam_betas, weight_decay=config.weight_decay, fused=fused or None)


def lr_multiplier(step: int, total: int, warmup: int, kind: str, floor: float = 0.0) -> float:
    """The lr factor after ``step`` optimizer steps: linear warm-up from 0 over ``warmup`` steps
    (as ``transformers.get_linear_schedule_with_warmup``), then ``kind`` (constant | linear |
    cosine) from 1 down to ``floor`` at ``total`` steps, ``floor`` after that (constant stays 1)."""
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    if kind == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr schedule {kind!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """Per-group lr schedule over optimizer steps (None: the spec's constant lr, nothing to do).

    The horizon is ``config.schedule_horizon`` epochs of ``steps_per_epoch`` optimizer steps; the
    text encoder's group may have its own kind (``lr_schedule_text``) and horizon
    (``text_schedule_epochs``), e.g. decay to 0 after 3 epochs = freeze it early.
    """
    text_kind = config.lr_schedule_text or config.lr_schedule
    if config.lr_schedule == "constant" and text_kind == "constant" and config.warmup_ratio == 0:
        return None
    horizon = config.schedule_horizon
    assert horizon is not None  # TrainConfig._check
    lambdas: list[Callable[[int], float]] = []
    for g in optimizer.param_groups:
        text = g.get("kind") == "text"
        epochs = (config.text_schedule_epochs or horizon) if text else horizon
        total = epochs * steps_per_epoch
        warmup = int(config.warmup_ratio * total)
        kind = text_kind if text else config.lr_schedule
        lambdas.append(functools.partial(lr_multiplier, total=total, warmup=warmup, kind=kind, floor=config.lr_floor))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def text_freeze_epoch(config: TrainConfig) -> int | None:
    """The epoch after which the text encoder's lr is 0 for good (its own decaying schedule reached
    ``lr_floor`` 0 at its horizon), else None. ``fit`` stops computing its gradients from then on."""
    kind = config.lr_schedule_text or config.lr_schedule
    if kind == "constant" or config.lr_floor > 0:
        return None
    return config.text_schedule_epochs or config.schedule_horizon


def multitask_loss(
    out: ModelOutput, y_m: Tensor, targets: dict[str, Tensor] | None, target: Target | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """L = L_m + Σ_u mean(w_u |ŷ_u − y_u|), w_u = tanh|y_u − y_m| (§5).

    ``targets`` are SLGM's current labels of the batch; ``None`` (SLGM off) trains every head on
    y_m with weight 1. A categorical ``target``: L = Σ_x CE(ŷ_x, y_m), every head on the clip's
    class. Returns the loss and its per-task parts (detached 0-d tensors on the loss's device, for
    logging: reading them as floats every step would stall a GPU on each batch).
    """
    if target is not None and target.categorical:
        ce = {x: target.loss(pred, y_m) for x, pred in out.preds.items()}
        return torch.stack(list(ce.values())).sum(), {x: v.detach() for x, v in ce.items()}
    parts = {"m": (out.preds["m"] - y_m).abs().mean()}
    for x, pred in out.preds.items():
        if x == "m":
            continue
        if targets is None:
            parts[x] = (pred - y_m).abs().mean()
        else:
            weight = torch.tanh((targets[x] - targets["m"]).abs()).detach()
            parts[x] = (weight * (pred - targets[x]).abs()).mean()
    total = torch.stack(list(parts.values())).sum()
    return total, {x: v.detach() for x, v in parts.items()}


def train_epoch(
    model: MCMF,
    loader: Iterable[PaddedBatch],
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: torch.device,
    slgm: SLGM | None,
    epoch: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    target: Target | None = None,
) -> dict[str, float]:
    """One pass over the training data in the exact order of §4.6; returns sample-weighted mean losses.
    ``target``: what the heads predict (None: the score).

    Nothing in the loop reads a value back to the host: on a GPU each read would wait for the
    queued kernels, and the per-step losses are read once, after the epoch. That read is also where
    a NaN/inf loss is caught (``TrainingError``, naming the epoch, the first such batch and its
    clips): a NaN gradient makes every weight NaN at the next step, and nothing after it means anything.
    """
    model.train()
    if slgm is not None:
        slgm.start_epoch(epoch)
    n_batches = len(loader)  # type: ignore[arg-type]
    acc = config.accumulate
    params = [p for g in optimizer.param_groups for p in g["params"]]
    logged: list[tuple[int, Tensor]] = []  # (batch size, [loss, parts...]) per step
    clip_ids: list[list[str]] = []  # per step, to name the batch whose loss is not finite
    names: list[str] = []
    optimizer.zero_grad(set_to_none=True)
    for b, batch in enumerate(loader):
        batch = batch.to(device)
        group_size = min(acc, n_batches - (b // acc) * acc)  # the last group may be short
        out = model(batch.inputs)
        targets = slgm.targets(batch.index) if slgm is not None else None
        loss, parts = multitask_loss(out, batch.label, targets, target)
        (loss / group_size).backward()  # accumulated gradient = that of one batch of acc×B clips
        if (b + 1) % acc == 0 or b + 1 == n_batches:
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if scheduler is not None:
                scheduler.step()
        if slgm is not None:
            slgm.step(out.features, batch.index)
        names = ["train_loss", *(f"train_loss_{x}" for x in parts)]
        logged.append((len(batch), torch.stack([loss.detach(), *parts.values()])))
        clip_ids.append(batch.clip_ids)
    means = _weighted_means(names, logged)
    if logged and not math.isfinite(means["train_loss"]):
        raise TrainingError(_diverged(epoch, logged, clip_ids))
    return means


def _diverged(epoch: int, logged: list[tuple[int, Tensor]], clip_ids: list[list[str]]) -> str:
    """Where an epoch's loss stopped being finite: its first batch with a NaN/inf loss (each loss
    is a float32 and the mean sums them as float64, so a non-finite mean has one) and its clips."""
    losses = torch.stack([v[0] for _, v in logged]).cpu()
    step = int(torch.nonzero(~torch.isfinite(losses))[0])
    ids = clip_ids[step]
    clips = ", ".join(map(repr, ids[:3])) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
    return (f"training diverged in epoch {epoch}: the loss is {float(losses[step])} at batch {step + 1} of "
            f"{len(logged)} (clips {clips}); lower the learning rates (lr_text, lr_av, lr_other) or check "
            "those clips' features")


def _weighted_means(names: list[str], logged: list[tuple[int, Tensor]]) -> dict[str, float]:
    """Sample-weighted means of the per-step values (one device-to-host copy for the epoch)."""
    if not logged:
        return {}
    values = torch.stack([v for _, v in logged]).cpu().tolist()
    sums: dict[str, float] = defaultdict(float)
    for (n, _), row in zip(logged, values):
        for name, v in zip(names, row):
            sums[name] += v * n
    seen = sum(n for n, _ in logged)
    return {k: v / seen for k, v in sums.items()}


@dataclass
class Predictions:
    """ŷ_m (or class probabilities [N, C]) and y_m (or class indices) of every clip of a loader,
    in loader order."""

    clip_ids: list[str]
    pred: np.ndarray
    label: np.ndarray


@torch.no_grad()
def predict(
    model: MCMF, loader: Iterable[PaddedBatch], device: torch.device | None = None, target: Target | None = None
) -> Predictions:
    """Multimodal predictions in eval mode (only ŷ_m is the model's output at inference)."""
    device = device or next(model.parameters()).device
    model.eval()
    ids: list[str] = []
    preds: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for batch in loader:
        y = model(batch.to(device).inputs).preds["m"]
        ids += batch.clip_ids
        preds.append((target or SCORE).to_prediction(y).float().cpu().numpy())
        labels.append(batch.label.cpu().numpy())
    return Predictions(ids, np.concatenate(preds), np.concatenate(labels))


def evaluate(
    model: MCMF, loader: Iterable[PaddedBatch], device: torch.device | None = None, target: Target | None = None,
    when: str = "",
) -> dict[str, float]:
    """The target's metrics of a split (MMSA's for the score); ``target.selection`` (``MAE``,
    ``CE``) is also that split's L_m. A NaN/inf prediction (weights that diverged, e.g. at the last
    step of an epoch) is a ``TrainingError`` naming the first such clip (``when`` prefixes it, e.g.
    the epoch), not metrics of NaN."""
    p = predict(model, loader, device, target)
    bad = ~np.isfinite(p.pred.reshape(len(p.clip_ids), -1)).all(axis=1)
    if bad.any():
        raise TrainingError(f"{when}the model predicts NaN/inf for {int(bad.sum())} of {len(bad)} clips (first "
                            f"{p.clip_ids[int(np.argmax(bad))]!r}): its weights are no longer finite numbers")
    return (target or SCORE).metrics(p.pred, p.label)


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_valid_loss: float
    stopped_early: bool
    device: str


def fit(
    model: MCMF,
    train_loader: Iterable[PaddedBatch],
    valid_loader: Iterable[PaddedBatch],
    config: TrainConfig,
    *,
    train_labels: Tensor | np.ndarray | None = None,
    on_epoch_end: EpochCallback | None = None,
    target: Target | None = None,
) -> FitResult:
    """Train until validation L_m has not improved by ``min_delta`` for ``patience`` epochs (or the
    cap), then load the best-validation weights into ``model``.

    ``train_labels`` [N] are y_m of the training clips by train index (needed by SLGM); batches
    must carry those indices. ``target``: what the heads predict (None: the score); its
    ``selection`` metric is the validation L_m.
    """
    target = target or SCORE
    device = resolve_device(config.device)
    model.to(device)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, math.ceil(len(train_loader) / config.accumulate))  # type: ignore[arg-type]
    slgm = None
    if config.use_slgm and len(model.tasks) > 1:
        if train_labels is None:
            raise ValueError("use_slgm needs train_labels (y_m of every training clip by train index)")
        slgm = SLGM(
            torch.as_tensor(np.asarray(train_labels), dtype=torch.float32),
            {x: config.head_dim(x) for x in model.tasks},
            distance=config.distance,
            momentum=config.label_momentum,
            exclude_zero=config.exclude_zero,
            label_clip=config.label_clip,
        ).to(device)

    history: list[dict[str, float]] = []
    best_loss, best_epoch = math.inf, 0
    best_state: dict[str, Tensor] | None = None
    stopped_early = False
    epoch = 0
    freeze_after = text_freeze_epoch(config)
    while config.max_epochs is None or epoch < config.max_epochs:
        epoch += 1
        start = time.perf_counter()
        if model.text_encoder is not None and freeze_after is not None and epoch > freeze_after:
            model.text_encoder.requires_grad_(False)  # lr 0 from here on: skip its backward pass
        record: dict[str, float] = {"epoch": epoch}
        record.update(train_epoch(model, train_loader, optimizer, config, device, slgm, epoch, scheduler, target))
        for g in optimizer.param_groups:
            if not g["name"].endswith("_no_decay"):
                record[f"lr_{g['name']}"] = float(g["lr"])
        valid = evaluate(model, valid_loader, device, target, when=f"after epoch {epoch}, ")
        record["valid_loss_m"] = valid[target.selection]
        record.update({f"valid_{k}": v for k, v in valid.items()})
        if slgm is not None:
            record.update({f"label_gap_{u}": g for u, g in slgm.label_gap().items()})
        improved = record["valid_loss_m"] <= best_loss - config.min_delta
        if improved:
            best_loss, best_epoch = record["valid_loss_m"], epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(record, model, improved)
        if epoch - best_epoch >= config.patience:
            stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(history, best_epoch, best_loss, stopped_early, str(device))
