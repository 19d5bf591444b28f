"""SLGM: self-supervised unimodal label generation (model-spec.md §4, = Self-MM's ULGM).

Non-parametric and gradient-free: it keeps per-task feature banks over the training clips, the
positive/negative class centres of each bank, and the generated unimodal labels y_l, y_a, y_v.
A unimodal label moves away from y_m by as much as that modality's representation sits closer to
the positive or negative centre than the multimodal one does.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

EPS = 1e-8


def distance(f: Tensor, centre: Tensor, kind: Literal["l2", "bhattacharyya"]) -> Tensor:
    """Distance of each row of ``f`` [B, d] to ``centre`` [d] (§4.3).

    ``l2``: plain Euclidean norm (Self-MM code). ``bhattacharyya``: Hellinger distance
    sqrt(1 - BC) of the sum-normalised non-negative vectors, so larger still means farther; an
    all-zero vector gets distance 1.
    """
    if kind == "l2":
        return torch.linalg.vector_norm(f - centre, dim=-1)
    p = f / (f.sum(-1, keepdim=True) + EPS)
    q = centre / (centre.sum() + EPS)
    bc = torch.sqrt((p * q).clamp_min(0.0)).sum(-1)
    return torch.sqrt((1.0 - bc).clamp_min(0.0))


def relative_offset(f: Tensor, pos: Tensor, neg: Tensor, kind: Literal["l2", "bhattacharyya"]) -> Tensor:
    """α = (D⁻ − D⁺) / (D⁺ + ε): > 0 when a sample is nearer the positive centre (Eq. 14)."""
    d_pos = distance(f, pos, kind)
    d_neg = distance(f, neg, kind)
    return (d_neg - d_pos) / (d_pos + EPS)


def new_unimodal_label(y_m: Tensor, alpha_m: Tensor, alpha_u: Tensor, clip: float) -> Tensor:
    """Corrected Eq. 15: mean of the ratio and the difference hypotheses, clipped to [-H, H]."""
    y = 0.5 * (alpha_u / (alpha_m + EPS)) * y_m + 0.5 * (y_m + alpha_u - alpha_m)
    return y.clamp(-clip, clip)


class SLGM:
    """Banks, centres and generated labels over the N training clips (indexed by train position).

    ``dims`` maps each task (``m`` plus the unimodal ones) to its head's hidden size d_x. Call
    ``start_epoch(n)`` at the start of every epoch (n = 1, 2, ...), read ``targets(index)`` for the
    loss, then ``step(features, index)`` after the optimizer step (§4.6).
    """

    def __init__(
        self,
        train_labels: Tensor,
        dims: dict[str, int],
        *,
        distance: Literal["l2", "bhattacharyya"] = "l2",
        momentum: Literal["selfmm", "paper3"] = "selfmm",
        exclude_zero: bool = True,
        label_clip: float = 3.0,
    ) -> None:
        if "m" not in dims or len(dims) < 2:
            raise ValueError(f"SLGM needs the multimodal task m and at least one unimodal task, got {sorted(dims)}")
        y = train_labels.detach().to(torch.float32).flatten()
        self.unimodal = tuple(x for x in dims if x != "m")
        self.distance = distance
        self.momentum = momentum
        self.exclude_zero = exclude_zero
        self.label_clip = label_clip
        self.banks = {x: torch.zeros(len(y), d, device=y.device) for x, d in dims.items()}
        self.labels = {x: y.clone() for x in dims}  # y_m is never changed; y_u start as y_m
        self.centres = {x: (torch.zeros(d, device=y.device), torch.zeros(d, device=y.device)) for x, d in dims.items()}
        self.epoch = 0
        self._end_prev: dict[str, Tensor] | None = None  # labels at the end of epoch n-1 (paper3)
        self._end_prev2: dict[str, Tensor] | None = None  # ... and of epoch n-2

    def to(self, device: torch.device) -> SLGM:
        """Move all state to ``device`` (it lives beside the model)."""
        self.banks = {x: b.to(device) for x, b in self.banks.items()}
        self.labels = {x: y.to(device) for x, y in self.labels.items()}
        self.centres = {x: (p.to(device), n.to(device)) for x, (p, n) in self.centres.items()}
        return self

    def start_epoch(self, epoch: int) -> None:
        """Record the epoch index n (from 1) and snapshot the labels the paper3 momentum needs."""
        if epoch != self.epoch + 1:
            raise ValueError(f"epochs must be consecutive: got {epoch} after {self.epoch}")
        self.epoch = epoch
        if self.momentum == "paper3":
            self._end_prev2 = self._end_prev
            self._end_prev = {u: self.labels[u].clone() for u in self.unimodal}

    def targets(self, index: Tensor) -> dict[str, Tensor]:
        """Current labels y_x[I] of a batch (read before this step's update)."""
        return {x: y[index] for x, y in self.labels.items()}

    @torch.no_grad()
    def step(self, features: dict[str, Tensor], index: Tensor) -> None:
        """Steps 3-5 of §4.6: update y_u[I] (epoch >= 2), write the banks, recompute the centres."""
        if self.epoch < 1:
            raise RuntimeError("call start_epoch(1) before the first step")
        index = index.to(self.labels["m"].device)
        if self.epoch >= 2:
            self._update_labels({x: f.detach() for x, f in features.items()}, index)
        for x, f in features.items():
            self.banks[x][index] = f.detach().to(self.banks[x].dtype)
        self._update_centres()

    def _update_labels(self, features: dict[str, Tensor], index: Tensor) -> None:
        y_m = self.labels["m"][index]
        alpha_m = relative_offset(features["m"], *self.centres["m"], self.distance)
        n = self.epoch
        for u in self.unimodal:
            alpha_u = relative_offset(features[u], *self.centres[u], self.distance)
            y_new = new_unimodal_label(y_m, alpha_m, alpha_u, self.label_clip)
            if self.momentum == "paper3" and n >= 3:
                assert self._end_prev is not None and self._end_prev2 is not None
                w = 0.5 * (n - 1) / (n + 1)
                updated = w * self._end_prev2[u][index] + w * self._end_prev[u][index] + 2 / (n + 1) * y_new
            else:
                updated = (n - 1) / (n + 1) * self.labels[u][index] + 2 / (n + 1) * y_new
            self.labels[u][index] = updated

    def _update_centres(self) -> None:
        """Eq. 13 over the whole bank, each task with its own labels; an empty class keeps its centre."""
        for x, bank in self.banks.items():
            pos, neg = class_members(self.labels[x], self.exclude_zero)
            old_pos, old_neg = self.centres[x]
            self.centres[x] = (class_mean(bank, pos, old_pos), class_mean(bank, neg, old_neg))

    def label_gap(self) -> dict[str, float]:
        """Mean |y_u − y_m| per unimodal task: how far the generated labels have moved (for logs)."""
        return {u: float((self.labels[u] - self.labels["m"]).abs().mean()) for u in self.unimodal}


def class_members(y: Tensor, exclude_zero: bool) -> tuple[Tensor, Tensor]:
    """Which labels belong to the positive and to the negative class (§4.2): y > 0 and y < 0; a zero
    label is in neither when ``exclude_zero`` (§11.12), else positive. A run whose training labels
    leave one class empty is refused before it starts (``training.checks``): that centre would stay the
    zero vector it starts as, and every generated label would be measured against it."""
    return (y > 0 if exclude_zero else y >= 0), y < 0


def class_mean(bank: Tensor, member: Tensor, old: Tensor) -> Tensor:
    """Mean of the ``bank`` rows whose ``member`` flag is set; ``old`` when there are none.

    On the CPU by boolean indexing. On a GPU indexing by a mask, and asking whether it selects
    anything, each wait for the device (the host must know the count): 16 waits per training
    step. There the mean is a masked sum over the whole bank instead, which never waits; it
    equals the indexed mean up to float rounding (the sum runs in another order)."""
    if bank.device.type == "cpu":
        return bank[member].mean(0) if bool(member.any()) else old
    return masked_class_mean(bank, member, old)


def masked_class_mean(bank: Tensor, member: Tensor, old: Tensor) -> Tensor:
    """``class_mean`` with device ops only (no host read)."""
    count = member.sum()
    total = torch.where(member[:, None], bank, torch.zeros((), dtype=bank.dtype, device=bank.device)).sum(0)
    return torch.where(count > 0, total / count.clamp_min(1).to(bank.dtype), old)

