"""The MMSA regression metric set for MOSI/MOSEI (model-spec.md §8, thuiar/MMSA metricsTop.py),
and the formatting every metric table shares (a classifier's metrics: ``training.targets``).

Values are fractions (MAE and Corr raw); ``format_value`` prints accuracies and F1 ×100 with 2
decimals and MAE/Corr with 3, as MMSA's tables and docs/results.md do.
Both Acc-2 variants are reported because papers differ: has0 = negative vs non-negative over all
clips, non0 = negative vs positive with zero-labelled clips dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.metrics import f1_score

METRIC_NAMES = (
    "Has0_acc_2",
    "Has0_F1_score",
    "Non0_acc_2",
    "Non0_F1_score",
    "Mult_acc_5",
    "Mult_acc_7",
    "MAE",
    "Corr",
)


def _multiclass_acc(pred: np.ndarray, truth: np.ndarray, bound: float) -> float:
    """Clip to [-bound, bound], round half to even (numpy.round), exact-match accuracy."""
    return float(np.mean(np.round(np.clip(pred, -bound, bound)) == np.round(np.clip(truth, -bound, bound))))


def regression_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MMSA metrics of predictions ``pred`` against human labels ``truth`` (1-d, same length)."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(truth, dtype=np.float64).reshape(-1)
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"need equal, non-empty prediction/label arrays, got {p.shape} and {t.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = float(np.corrcoef(p, t)[0, 1]) if p.size > 1 else float("nan")
    nz = t != 0
    out = {
        "Has0_acc_2": float(np.mean((p >= 0) == (t >= 0))),
        "Has0_F1_score": float(f1_score(t >= 0, p >= 0, average="weighted", zero_division=0)),
        "Non0_acc_2": float(np.mean((p[nz] > 0) == (t[nz] > 0))) if nz.any() else float("nan"),
        "Non0_F1_score": (
            float(f1_score(t[nz] > 0, p[nz] > 0, average="weighted", zero_division=0)) if nz.any() else float("nan")
        ),
        "Mult_acc_5": _multiclass_acc(p, t, 2.0),
        "Mult_acc_7": _multiclass_acc(p, t, 3.0),
        "MAE": float(np.mean(np.abs(p - t))),
        "Corr": corr,
    }
    return out


RAW_METRICS = ("MAE", "Corr", "CE")  # printed as they are; the accuracies and F1 scores are percentages


def format_value(value: float, metric: str) -> str:
    """One metric as MMSA tables print it: MAE, Corr (and a classifier's cross-entropy CE) with 3
    decimals, accuracies and F1 ×100 with 2."""
    return f"{value:.3f}" if metric in RAW_METRICS else f"{100 * value:.2f}"


def format_cell(value: float | Mapping[str, float], metric: str) -> str:
    """A plain value, or ``mean ± std`` for a metric given as ``{"mean", "std"}`` over seeds."""
    if isinstance(value, Mapping):
        return f"{format_value(value['mean'], metric)} ± {format_value(value['std'], metric)}"
    return format_value(value, metric)


def metric_columns(rows: Mapping[str, Mapping[str, object]]) -> list[str]:
    """The metrics of a table, in the order the first row has them (MMSA's set for a score,
    a classifier's set for a categorical target)."""
    return list(next(iter(rows.values()), {})) or list(METRIC_NAMES)


def format_table(rows: Mapping[str, Mapping[str, float | Mapping[str, float]]], label: str = "split") -> str:
    """Markdown table, one row per label (a split, an ablation), cells by ``format_cell``."""
    names = metric_columns(rows)
    head = f"| {label} | " if label else "| | "
    lines = [head + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(format_cell(metrics[k], k) for k in names) + " |")
    return "\n".join(lines) + "\n"
