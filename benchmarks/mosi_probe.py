#!/usr/bin/env python
"""CMU-MOSI text: ridge-regression probes on the frozen MiniLM-L6 states, next to the training stage.

    python benchmarks/mosi_probe.py [--workdir work/mosi_text] [--out docs/results.md]

Why: the issue quotes fine-tuning as worth ≈ 5 Acc-2 points and 0.15 MAE over *frozen features*,
while emoflow's ``frozen`` mode lands within 0.5 Acc-2 of ``finetune`` (docs/results.md). This
measures what a plain model on frozen features reaches, so the two figures can be set side by side:
a linear (ridge) regressor on one vector per clip, either the ``[CLS]`` state or the masked mean of
the word-piece states (the pooling all-MiniLM-L6-v2 was trained with).

It reuses the view ``benchmarks/mosi_text.py`` builds (same store, same cached ``text.bert`` states;
a committed store is a no-op) and its two protocols: ``valid`` picks the ridge penalty on MOSI
valid and reports MOSI valid (as the reference regressor does); ``dev`` picks it on the dev
videos carved from train and reports MOSI valid as an untouched test. Features are standardised
with train statistics; the intercept is not penalised; predictions are clipped to [-3, 3] as the
training stage's are. Deterministic: no seeds. Runs in seconds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as ``python benchmarks/mosi_probe.py`` from anywhere
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.mosi_text import (  # noqa: E402
    MOSI_CSV,
    VIEW,
    make_dev_view,
    prepare,
    write_section,
)
from training.metrics import format_value  # noqa: E402

ALPHAS = (0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
SHOWN = (("Has0_acc_2", "Acc-2 has0"), ("Non0_acc_2", "Acc-2 non0"), ("Non0_F1_score", "F1 non0"),
         ("Mult_acc_7", "Acc-7"), ("MAE", "MAE"), ("Corr", "Corr"))


def pooled_features(store: str, view_name: str) -> dict[str, Any]:
    """One vector per clip from the view's cached token states: ``cls`` and masked ``mean``."""
    from store.views import open_view

    view = open_view(store, view_name)
    g = view.group()
    clips = view.clips.sort_by("row")
    values = np.asarray(g["text/values"][...], np.float32)
    lengths = np.asarray(g["text/lengths"][...])
    mask = (np.arange(values.shape[1])[None, :] < lengths[:, None]).astype(np.float32)
    present = np.asarray(g["text/present"][...], bool)
    if not present.all():
        raise RuntimeError(f"view {view_name!r}: {int((~present).sum())} clips have no text states")
    return {
        "cls": values[:, 0].astype(np.float64),
        "mean": np.einsum("nld,nl->nd", values, mask, dtype=np.float64) / lengths[:, None],
        "label": np.asarray(clips.column("label").to_pylist(), np.float64),
        "split": np.asarray(clips.column("split").to_pylist()),
    }


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Closed-form ridge with an unpenalised intercept (last weight)."""
    xb = np.c_[x, np.ones(len(x))]
    penalty = alpha * np.eye(xb.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(xb.T @ xb + penalty, xb.T @ y)


def ridge_predict(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.clip(np.c_[x, np.ones(len(x))] @ w, -3.0, 3.0)


def probe(features: np.ndarray, label: np.ndarray, split: np.ndarray, select: str, report: str) -> dict[str, Any]:
    """Fit on train for every penalty, keep the one with the lowest MAE on ``select``, score ``report``."""
    from training.metrics import regression_metrics

    train = split == "train"
    mu, sd = features[train].mean(0), features[train].std(0) + 1e-6
    z = (features - mu) / sd
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in ALPHAS:
        w = ridge_fit(z[train], label[train], alpha)
        mae = float(np.abs(ridge_predict(z[split == select], w) - label[split == select]).mean())
        if best is None or mae < best[1]:
            best = (alpha, mae, w)
    assert best is not None
    alpha, _, w = best
    metrics = regression_metrics(ridge_predict(z[split == report], w), label[split == report])
    return {"alpha": alpha, "metrics": {k: float(v) for k, v in metrics.items()}}


def run(store: str, dev_view: str, view: str = VIEW) -> dict[str, dict[str, Any]]:
    """Both poolings under both protocols: ``{"valid/cls": {...}, "dev/mean": {...}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for protocol, name, select, report in (("valid", view, "valid", "valid"), ("dev", dev_view, "valid", "test")):
        f = pooled_features(store, name)
        for pooling in ("cls", "mean"):
            out[f"{protocol}/{pooling}"] = probe(f[pooling], f["label"], f["split"], select, report)
    return out


def markdown(results: dict[str, dict[str, Any]], date: str) -> str:
    lines = [f"Generated by `benchmarks/mosi_probe.py` on {date}: ridge regression on one frozen MiniLM-L6 "
             "vector per clip (penalty picked by MAE on the selection split). Acc/F1 ×100.", "",
             "| protocol | features | penalty | " + " | ".join(h for _, h in SHOWN) + " |",
             "|---|---|---|" + "---|" * len(SHOWN)]
    label = {"valid": "valid", "dev": "dev → valid as test"}
    pooled = {"cls": "`[CLS]` state", "mean": "mean of word-piece states"}
    for key, r in results.items():
        protocol, pooling = key.split("/")
        m = r["metrics"]
        cells = " | ".join(format_value(m[k], k) for k, _ in SHOWN)
        lines.append(f"| {label[protocol]} | {pooled[pooling]} | {r['alpha']:g} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="work/mosi_text")
    ap.add_argument("--csv", default=str(MOSI_CSV))
    ap.add_argument("--out", default="docs/results.md", help="markdown section written here ('' = none)")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir) if os.path.isabs(args.workdir) else REPO / args.workdir
    prep = prepare(workdir, Path(args.csv))
    dev = make_dev_view(prep["store"])
    results = run(prep["store"], dev["view"])
    date = _dt.datetime.now().isoformat(timespec="seconds")
    md = markdown(results, date)
    print(md)
    (workdir / "results-probe.json").write_text(json.dumps(
        {"date": date, "view": prep["view"], "dev_view": dev, "alphas": ALPHAS, "results": results}, indent=2) + "\n")
    if args.out:
        out = Path(args.out) if os.path.isabs(args.out) else REPO / args.out
        write_section(out, "mosi_text:probe", md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
