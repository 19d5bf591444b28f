"""What a run learns to predict: the sentiment score (regression, the spec) or a class column of the
clip table (categorical: MELD's 7 emotions or 3 sentiment classes, IEMOCAP's emotions).

One object carries every rule that depends on the target, so the loop, the runs and the summaries
never branch on it themselves: the clip-table column, the head width, the loss, the metrics and
the metric that selects the best epoch.

Categorical targets: cross-entropy (optionally class-weighted), predictions are class
probabilities (softmax), metrics are accuracy, weighted and macro F1, per-class F1 and the mean
cross-entropy ``CE`` (the validation L_m that early stopping watches); the confusion matrix goes to
the run directory. SLGM generates unimodal *scores* and has no meaning for classes: with a
categorical target every head learns the clip's class (the paper's "-SLGM" setting, see
``TrainConfig``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F  # noqa: N812 - PyTorch's own convention
from sklearn.metrics import confusion_matrix, f1_score
from torch import Tensor

from store.errors import ConfigError
from training.metrics import regression_metrics, require_finite

#: TrainConfig.target -> clip-table column (store.schema.CLASS_LABELS for the categorical ones)
TARGET_COLUMNS = {"score": "label", "emotion": "label_emotion", "sentiment": "label_sentiment"}

#: the score's scale: CMU-MOSI's [-3, 3], the range ingest accepts (``corpora.fields``), SLGM clips
#: generated labels to (``label_clip``) and MMSA's Acc-5/Acc-7 clip to
SCORE_BOUND = 3.0

#: metrics of a classifier named ``F1_<x>`` that are not a class's F1: no class may be called ``x``
_F1_AVERAGES = ("weighted", "macro")


class Target:
    """The prediction target of a run. ``classes`` is empty for the score (one regression output)."""

    def __init__(self, name: str, classes: Sequence[str] = (), weights: Sequence[float] | None = None) -> None:
        if name not in TARGET_COLUMNS:
            raise ConfigError(f"unknown target {name!r}; choose one of {', '.join(TARGET_COLUMNS)}")
        if name != "score" and len(classes) < 2:
            raise ConfigError(f"target {name!r} needs at least two classes, got {list(classes)}")
        clash = [c for c in classes if c in _F1_AVERAGES]
        if clash:  # its F1_<class> would overwrite F1_weighted / F1_macro
            raise ConfigError(f"target {name!r}: a class cannot be called {clash[0]!r} (its per-class F1 would be "
                              f"reported as F1_{clash[0]}, the name of the {clash[0]} average over classes)")
        self.name = name
        self.column = TARGET_COLUMNS[name]
        self.classes = tuple(classes)
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        self._weight_on: dict[torch.device, Tensor] = {}

    @property
    def categorical(self) -> bool:
        return bool(self.classes)

    @property
    def outputs(self) -> int:
        """Width of every head's last layer."""
        return len(self.classes) if self.categorical else 1

    @property
    def selection(self) -> str:
        return selection_metric(self.name)

    # --- labels -------------------------------------------------------------------------------
    def labels(self, clips: pa.Table) -> np.ndarray:
        """Per clip: the score (float, NaN when null) or the class index (int, -1 when null or not
        one of ``classes``)."""
        values = clips.column(self.column).to_pylist() if self.column in clips.column_names else [None] * len(clips)
        if not self.categorical:
            return np.asarray([np.nan if v is None else v for v in values], dtype=np.float32)
        index = {c: i for i, c in enumerate(self.classes)}
        return np.asarray([index.get(v, -1) if v is not None else -1 for v in values], dtype=np.int64)

    def labelled(self, labels: np.ndarray) -> np.ndarray:
        """Which of ``labels`` (as ``labels`` returns them) are labels at all: the clips a run trains
        on and scores. The rest (a class-only row has no score, a score-only row no class) are left out."""
        return labels >= 0 if self.categorical else ~np.isnan(labels)

    def check_labels(self, clips: pa.Table, view: str, splits: Collection[str] | None = None) -> None:
        """Refuse a score outside [-3, 3] (±inf included; NaN is no label) among the clips of ``splits``
        (None: every split), naming the first clips: ingest never lets one through, so it comes from a
        view written another way, and it would train and be scored on another scale than the one SLGM
        and MMSA's metrics assume (an inf one makes the loss NaN, as if training diverged)."""
        if self.categorical:
            return
        y = self.labels(clips)
        split = np.asarray(clips.column("split").to_pylist(), dtype=object)
        chosen = np.ones(len(y), dtype=bool) if splits is None else np.isin(split, list(splits))
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(chosen & ~np.isnan(y) & ~(np.abs(y) <= SCORE_BOUND))
        if not len(bad):
            return
        ids = clips.column("clip_id").to_pylist()
        named = ", ".join(f"{ids[i]!r} ({split[i]}): {float(y[i]):g}" for i in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ConfigError(f"aligned view {view!r}: {len(bad)} clip(s) have a score label outside "
                          f"[-{SCORE_BOUND:g}, {SCORE_BOUND:g}] ({named}{more}); the score is on CMU-MOSI's scale, "
                          "which ingest accepts, SLGM clips to and MMSA's metrics assume")

    # --- training -----------------------------------------------------------------------------
    def loss(self, pred: Tensor, y: Tensor) -> Tensor:
        """Mean loss of one head over a batch: cross-entropy (class-weighted when configured)."""
        if not self.categorical:
            raise RuntimeError("the score's loss is SLGM-weighted L1 (training.loop.multitask_loss)")
        weight = None
        if self.weights is not None:
            weight = self._weight_on.get(pred.device)
            if weight is None:
                weight = self._weight_on[pred.device] = torch.tensor(self.weights, dtype=pred.dtype, device=pred.device)
        return F.cross_entropy(pred, y, weight=weight)

    def to_prediction(self, head_output: Tensor) -> Tensor:
        """What a run reports per clip: ŷ_m (score) or the class probabilities [B, C]."""
        return torch.softmax(head_output, dim=-1) if self.categorical else head_output

    # --- evaluation ---------------------------------------------------------------------------
    def metrics(self, pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
        """MMSA's regression metrics, or accuracy, weighted/macro F1, per-class F1 and CE of class
        probabilities ``pred`` [N, C] against class indices ``label`` [N]."""
        if not self.categorical:
            return regression_metrics(pred, label)
        probs = np.asarray(pred, dtype=np.float64).reshape(len(label), -1)
        y = np.asarray(label, dtype=np.int64)
        if probs.size == 0 or probs.shape[1] != len(self.classes):
            raise ValueError(f"need [N, {len(self.classes)}] class probabilities, got {probs.shape}")
        require_finite(probs, "class probabilities")
        if not self.labelled(y).all() or y.max() >= len(self.classes):  # -1 would score the last class
            raise ValueError(f"labels must be class indices 0..{len(self.classes) - 1}, got {sorted(set(y.tolist()))}")
        hat = probs.argmax(1)
        everyone = list(range(len(self.classes)))
        support = np.bincount(y, minlength=len(self.classes))
        held = [c for c in everyone if support[c]]  # the classes this split has clips of
        per_class = f1_score(y, hat, labels=everyone, average=None, zero_division=0)
        out = {
            "Acc": float(np.mean(hat == y)),
            "F1_weighted": float(f1_score(y, hat, labels=everyone, average="weighted", zero_division=0)),
            "F1_macro": float(f1_score(y, hat, labels=held, average="macro", zero_division=0)),
            "CE": float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)))),
        }
        # a class without a clip in the split has no recall, so no F1: undefined (NaN, null in JSON), not 0
        out.update({f"F1_{c}": float(v) if support[i] else float("nan")
                    for i, (c, v) in enumerate(zip(self.classes, per_class))})
        return out

    def confusion(self, pred: np.ndarray, label: np.ndarray) -> dict[str, Any]:
        """Rows: true class, columns: predicted class, in ``classes`` order."""
        hat = np.asarray(pred).reshape(len(label), -1).argmax(1)
        matrix = confusion_matrix(label, hat, labels=list(range(len(self.classes))))
        return {"classes": list(self.classes), "matrix": matrix.tolist()}


def selection_metric(target: str) -> str:
    """The validation metric that is a run's L_m (lower is better), which early stopping and the best
    checkpoint follow: MAE for the score, the cross-entropy CE for classes."""
    return "MAE" if target == "score" else "CE"


def headline_metrics(target: str) -> tuple[str, ...]:
    """The few metrics a one-line report (the flow's log) shows: MMSA's Non0_acc_2, MAE and Corr for
    the score, accuracy, weighted F1 and CE for classes (each target has only its own)."""
    return ("Non0_acc_2", "MAE", "Corr") if target == "score" else ("Acc", "F1_weighted", "CE")


#: the spec's target, for callers that name none
SCORE = Target("score")


def class_weights(labels: np.ndarray, n_classes: int) -> list[float]:
    """``balanced`` weights n / (C · n_c) of the training labels (scikit-learn's rule); a class with
    no training clip gets weight 0 (nothing to balance)."""
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    total = counts.sum()
    return [float(total / (n_classes * c)) if c else 0.0 for c in counts]


def view_classes(clips: pa.Table, name: str, configured: Sequence[str] | None = None) -> list[str]:
    """The class list of a categorical target: the configured order, else the sorted distinct
    classes of the view's clips (every split, so valid/test classes have an output too). Configured
    classes must name every class the clips carry: a clip of another class would be left out of
    training and of every metric, as if it had no label."""
    column = TARGET_COLUMNS[name]
    found = sorted({v for v in clips.column(column).to_pylist() if v is not None})
    if configured:
        unlisted = [c for c in found if c not in configured]
        if unlisted:
            values = clips.column(column).to_pylist()
            n = sum(v in unlisted for v in values)
            raise ConfigError(f"train.classes {list(configured)} leaves out class(es) {unlisted} that {n} clip(s) "
                              f"of the view carry in {column!r}; list every class (train.classes fixes their "
                              "order, it does not choose clips)")
        return list(configured)
    if len(found) < 2:
        raise ConfigError(f"target {name!r}: the view's clips carry {len(found)} distinct {column!r} value(s) "
                          f"{found}; a classifier needs at least two (a view aligned before class labels were "
                          "kept has none: `emoflow align --force` rebuilds it)")
    return found
