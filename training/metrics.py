"""The MMSA regression metric set for MOSI/MOSEI (model-spec.md §8, thuiar/MMSA metricsTop.py),
and the formatting every metric table shares (a classifier's metrics: ``training.targets``).

Values are fractions (MAE and Corr raw); ``format_value`` prints accuracies and F1 ×100 with 2
decimals and MAE/Corr with 3, as MMSA's tables and docs/results.md do.
Both Acc-2 variants are reported because papers differ: has0 = negative vs non-negative over all
clips, non0 = negative vs positive with zero-labelled clips dropped.

A metric can be undefined for a split: Corr when the labels or the predictions do not vary,
Non0_acc_2/Non0_F1_score when every label is 0. It is NaN in memory (so a mean over seeds with an
undefined seed is undefined too), ``null`` in JSON (``metrics_json``: strict JSON has no NaN), "—"
in tables, and every table and summary says why (``undefined_notes``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

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


def require_finite(values: np.ndarray, what: str) -> None:
    """Refuse NaN/inf among ``values``: a metric of them is silently wrong, not undefined (a NaN
    label and a negative prediction both count as "negative", a hit in Acc-2)."""
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise ValueError(f"{what}: {bad} of {np.size(values)} values are NaN or infinite")


def regression_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MMSA metrics of predictions ``pred`` against human labels ``truth`` (1-d, same length, finite);
    an undefined metric is NaN (module docstring)."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(truth, dtype=np.float64).reshape(-1)
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"need equal, non-empty prediction/label arrays, got {p.shape} and {t.shape}")
    require_finite(p, "predictions")
    require_finite(t, "labels")
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

#: how a table shows an undefined metric (NaN in memory, null in JSON)
UNDEFINED = "—"

#: why a metric can be undefined, for the note under a table
UNDEFINED_WHY = {
    "Corr": "Pearson's r needs labels and predictions that both vary (every label equal, or a constant prediction)",
    "Non0_acc_2": "non0 leaves zero labels out and every label is 0",
    "Non0_F1_score": "non0 leaves zero labels out and every label is 0",
}


def _undefined(value: float | None) -> bool:
    """NaN as computed, None as read back from JSON."""
    return value is None or not math.isfinite(value)


def format_value(value: float | None, metric: str) -> str:
    """One metric as MMSA tables print it: MAE, Corr (and a classifier's cross-entropy CE) with 3
    decimals, accuracies and F1 ×100 with 2; ``UNDEFINED`` for an undefined one."""
    if value is None or not math.isfinite(value):
        return UNDEFINED
    return f"{value:.3f}" if metric in RAW_METRICS else f"{100 * value:.2f}"


def format_cell(value: float | None | Mapping[str, float | None], metric: str) -> str:
    """A plain value, or ``mean ± std`` for a metric given as ``{"mean", "std"}`` over seeds
    (``UNDEFINED`` alone when the mean is)."""
    if isinstance(value, Mapping):
        if _undefined(value["mean"]):
            return UNDEFINED
        return f"{format_value(value['mean'], metric)} ± {format_value(value['std'], metric)}"
    return format_value(value, metric)


def undefined_notes(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per metric that is undefined in some row of a table (a split, an ablation): where,
    and why. A mean over seeds is undefined when one seed's value is, so it says so."""
    where: dict[str, list[str]] = {}
    of_seeds = False
    for row, metrics in rows.items():
        for name, value in metrics.items():
            mean = isinstance(value, Mapping)
            if _undefined(value["mean"] if mean else value):
                where.setdefault(name, []).append(row)
                of_seeds |= mean
    seeds = " (in at least one seed, for a mean over seeds)" if of_seeds else ""
    return [f"{name} is undefined for {', '.join(found)}{seeds}: {undefined_why(name)}"
            for name, found in where.items()]


def undefined_why(name: str) -> str:
    """Why metric ``name`` can be undefined: ``UNDEFINED_WHY``, or for a classifier's per-class
    ``F1_<class>`` (``training.targets``) that the split has no clip of the class."""
    if name in UNDEFINED_WHY:
        return UNDEFINED_WHY[name]
    if name.startswith("F1_") and name not in ("F1_weighted", "F1_macro"):
        return (f"the split has no clip of class {name[3:]!r}, so no recall and no F1 (F1_macro averages the "
                "classes the split has)")
    return "not a finite number"


def metric_columns(rows: Mapping[str, Mapping[str, object]]) -> list[str]:
    """The metrics of a table, in the order the first row has them (MMSA's set for a score,
    a classifier's set for a categorical target)."""
    return list(next(iter(rows.values()), {})) or list(METRIC_NAMES)


def format_table(rows: Mapping[str, Mapping[str, Any]], label: str = "split") -> str:
    """Markdown table, one row per label (a split, an ablation), cells by ``format_cell``, then a
    note per undefined metric (``undefined_notes``)."""
    names = metric_columns(rows)
    head = f"| {label} | " if label else "| | "
    lines = [head + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(format_cell(metrics[k], k) for k in names) + " |")
    notes = undefined_notes(rows)
    if notes:
        lines += ["", *(f"Note: {note}." for note in notes)]
    return "\n".join(lines) + "\n"


def null_undefined(obj: Any) -> Any:
    """``obj`` with every NaN/inf float (an undefined metric) replaced by None, through dicts,
    lists and tuples: what ``metrics_json`` writes."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: null_undefined(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [null_undefined(v) for v in obj]
    return obj


def metrics_json(obj: Any) -> str:
    """Strict JSON text of a run's records and metrics: an undefined value is ``null`` (Python's
    bare ``NaN`` is not JSON, and strict readers refuse the whole file); ``allow_nan=False`` keeps it
    that way. Values JSON has no type for (paths, times) are written as strings."""
    return json.dumps(null_undefined(obj), indent=2, allow_nan=False, default=str) + "\n"
