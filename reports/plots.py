"""The report's figures, drawn with matplotlib's Agg canvas (no display) from the histograms in a
``compute_stats`` dict and embedded in the HTML as base64 PNGs."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from reports.tables import slug


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _bars(ax: Any, h: dict[str, Any], label: str, bottom: np.ndarray | None = None) -> np.ndarray:
    edges = np.asarray(h["edges"])
    counts = np.asarray(h["counts"], np.float64)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", bottom=bottom, label=label, edgecolor="white")
    return counts if bottom is None else bottom + counts


def report_figures(stats: dict[str, Any]) -> list[dict[str, str]]:
    """``[{key, title, png (base64)}]`` drawn with matplotlib's Agg canvas (no display needed)."""
    from matplotlib.figure import Figure

    splits = stats["splits"]
    figs: list[dict[str, str]] = []
    if stats["n_clips"]:
        fig = Figure(figsize=(9, 3.2))
        ax1, ax2 = fig.subplots(1, 2)
        bottom = bottom2 = None
        for s in splits:
            bottom = _bars(ax1, stats["clips"][s]["duration_histogram"], s, bottom)
            bottom2 = _bars(ax2, stats["clips"][s]["words_histogram"], s, bottom2)
        ax1.set(xlabel="clip duration (s)", ylabel="clips", title="Durations")
        ax2.set(xlabel="words per clip", ylabel="clips", title="Transcript length")
        ax1.legend()
        figs.append({"key": "durations", "title": "Clip durations and transcript lengths per split", "png": _png(fig)})

        fig = Figure(figsize=(3.2 * max(1, len(splits)), 3.0))
        axes = np.atleast_1d(fig.subplots(1, max(1, len(splits)), sharey=True))
        for ax, s in zip(axes, splits):
            _bars(ax, stats["labels"][s]["histogram"], s)
            ax.set(xlabel="label", title=f"{s} (n={stats['labels'][s]['n']})")
        axes[0].set_ylabel("clips")
        figs.append({"key": "labels", "title": "Label histogram per split", "png": _png(fig)})

    for col, per_split in stats.get("classes", {}).items():
        classes = list(per_split["all"]["counts"])
        fig = Figure(figsize=(max(5.0, 0.7 * len(classes) * max(1, len(splits))), 3.0))
        ax = fig.subplots()
        width = 0.8 / max(1, len(splits))
        x = np.arange(len(classes))
        for j, s in enumerate(splits):
            c = per_split[s]
            ax.bar(x + j * width, [c["counts"].get(k, 0) / max(1, c["n"]) for k in classes], width,
                   color=f"C{j}", label=f"{s} (n={c['n']})")
        ax.set_xticks(x + width * (len(splits) - 1) / 2, classes, rotation=20)
        ax.set(ylabel="fraction of the split's clips", title=col)
        ax.legend(fontsize=7)
        figs.append({"key": f"classes-{slug(col)}", "title": f"Class balance of {col} per split", "png": _png(fig)})

    sets = list(stats["feature_sets"].items())
    if sets:
        fig = Figure(figsize=(3.4 * len(sets), 3.0))
        axes = np.atleast_1d(fig.subplots(1, len(sets)))
        for ax, (name, fs) in zip(axes, sets):
            bottom = None
            for s in splits:
                bottom = _bars(ax, fs["splits"][s]["rows_histogram"], s, bottom)
            ax.set(xlabel="rows per clip", title=name)
        axes[0].set_ylabel("clips")
        axes[0].legend()
        figs.append({"key": "lengths", "title": "Sequence lengths (rows per clip) per feature set", "png": _png(fig)})

        fig = Figure(figsize=(max(5, 1.6 * len(sets) * max(1, len(splits))), 3.0))
        ax = fig.subplots()
        width = 0.8 / max(1, len(splits))
        x = np.arange(len(sets))
        for j, s in enumerate(splits):
            absent = [fs["splits"][s]["absent"] / max(1, fs["splits"][s]["clips"]) for _, fs in sets]
            missing = [(fs["splits"][s]["missing"] + fs["splits"][s]["stale"]) / max(1, fs["splits"][s]["clips"])
                       for _, fs in sets]
            ax.bar(x + j * width, absent, width, color=f"C{j}", label=f"{s} absent")
            ax.bar(x + j * width, missing, width, bottom=absent, color=f"C{j}", alpha=0.45, hatch="//",
                   label=f"{s} missing/stale")
        ax.set_xticks(x + width * (len(splits) - 1) / 2, [n for n, _ in sets], rotation=15)
        ax.set(ylabel="fraction of clips", ylim=(0, 1), title="Missing modalities")
        ax.legend(fontsize=7, ncol=2)
        figs.append({"key": "missing", "title": "Missing-modality rates per feature set and split", "png": _png(fig)})

    reasons = [(f"reject: {k}", v) for k, v in stats["rejects"]["by_reason"].items()]
    reasons += [(f"failure: {k}", v) for k, v in stats["failures"]["by_reason"].items()]
    if reasons:
        fig = Figure(figsize=(6, 0.5 + 0.4 * len(reasons)))
        ax = fig.subplots()
        ax.barh([r for r, _ in reasons], [n for _, n in reasons], color="#c0504d")
        ax.invert_yaxis()
        ax.set(xlabel="count", title="Rejects and failures by reason")
        figs.append({"key": "failures", "title": "Rejects and failures by reason", "png": _png(fig)})

    for vname, v in stats["views"].items():
        mods = list(v["modalities"].items())
        if not mods:
            continue
        fig = Figure(figsize=(3.4 * len(mods), 2.8))
        axes = np.atleast_1d(fig.subplots(1, len(mods)))
        for ax, (m, e) in zip(axes, mods):
            _bars(ax, e["lengths_histogram"], m)
            ax.axvline(e["L"], color="k", ls="--", lw=1)
            ax.set(xlabel=f"steps (L={e['L']})", title=f"{vname}: {m}")
        figs.append({"key": f"view-{slug(vname)}", "title": f"Aligned view {vname}: sequence lengths (dashed: L)",
                     "png": _png(fig)})
    return figs



#: tick steps (seconds) for a clock axis: the first that gives at most ~10 ticks is used
_CLOCK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
_POSITIVE, _NEGATIVE, _NEUTRAL, _FAILED, _SPREAD = "#2e7d32", "#c62828", "#9e9e9e", "#e65100", "#3949ab"


def timeline_png(spans: Sequence[tuple[float, float]], scores: Sequence[float | None], stds: Sequence[float],
                 smoothed: Sequence[float | None], turns: Sequence[tuple[float, str, str]], neutral: float,
                 clock: Callable[[float], str] | None, title: str) -> str:
    """One media's sentiment over time as a base64 PNG (``reports.timeline``), so a reader sees at a
    glance where it turns: per segment a bar from 0 to its score over its span (green / red / grey
    for positive / negative / neutral), a light ±std box (seed spread), a hatched column where the
    segment failed (no score: a gap), the smoothed score as a line broken at failures, the neutral
    band around the zero line and a dotted line per turning point ``(x, "positive"|"negative",
    label)``. ``clock`` formats x ticks (None: x is the segment number, for untimed text)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

    lo = min((s for s, _ in spans), default=0.0)
    hi = max((e for _, e in spans), default=1.0)
    extent = max(hi - lo, 1e-9)
    starts = np.array([s for s, _ in spans], np.float64)
    widths = np.maximum(np.array([e - s for s, e in spans], np.float64), extent / 500)  # zero-length: still visible
    ok = np.array([v is not None for v in scores], bool)
    val = np.array([np.nan if v is None else v for v in scores], np.float64)
    std = np.asarray(stds, np.float64)
    ymax = max(3.3, (float(np.nanmax(np.abs(val) + std)) + 0.3) if ok.any() else 0.0)  # scores beyond ±3 still show
    colors = np.where(val >= neutral, _POSITIVE, np.where(val <= -neutral, _NEGATIVE, _NEUTRAL))

    fig = Figure(figsize=(10, 3.0))
    ax = fig.subplots()
    ax.axhspan(-neutral, neutral, color="#f2f2f2", zorder=0)
    ax.axhline(0, color="k", lw=0.8, zorder=1)
    if ok.any():
        ax.bar(starts[ok], val[ok], width=widths[ok], align="edge", color=colors[ok], alpha=0.55, lw=0, zorder=2)
        ax.hlines(val[ok], starts[ok], starts[ok] + widths[ok], colors=colors[ok], lw=2, zorder=3)
        band = ok & (std > 0)
        if band.any():
            ax.bar(starts[band], 2 * std[band], bottom=val[band] - std[band], width=widths[band], align="edge",
                   color=_SPREAD, alpha=0.3, lw=0, zorder=2)
    if (~ok).any():
        ax.bar(starts[~ok], 2 * ymax, bottom=-ymax, width=widths[~ok], align="edge", facecolor="none",
               edgecolor=_FAILED, hatch="///", lw=0, alpha=0.6, zorder=1)
    line = np.array([np.nan if v is None else v for v in smoothed], np.float64)  # NaN at failures breaks the line
    ax.plot(starts + widths / 2, line, color="k", lw=1.1, zorder=4)
    for x, direction, label in turns:
        c = _POSITIVE if direction == "positive" else _NEGATIVE
        ax.axvline(x, color=c, ls=":", lw=1.4, zorder=5)
        if len(turns) <= 12:
            ax.annotate(label, (x, ymax * 0.97), xytext=(3, 0), textcoords="offset points", fontsize=7, color=c,
                        ha="left", va="top", zorder=6)
    ax.set_ylim(-ymax, ymax)
    ax.set_xlim(lo - extent * 0.01, hi + extent * 0.01)
    if clock is not None:
        step = next((s for s in _CLOCK_STEPS if extent / s <= 10), _CLOCK_STEPS[-1])
        ax.xaxis.set_major_locator(MultipleLocator(step))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: clock(x)))
        ax.set_xlabel("media time")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("segment (no times)")
    ax.set(ylabel="sentiment", title=title)
    handles = [Patch(color=_POSITIVE, alpha=0.55, label="positive"), Patch(color=_NEGATIVE, alpha=0.55,
               label="negative"), Patch(color=_NEUTRAL, alpha=0.55, label=f"neutral (|score| < {neutral:g})"),
               Line2D([], [], color="k", lw=1.1, label="smoothed")]
    if ok.any() and (std[ok] > 0).any():
        handles.append(Patch(color=_SPREAD, alpha=0.3, label="±std over seeds"))
    if (~ok).any():
        handles.append(Patch(facecolor="none", edgecolor=_FAILED, hatch="///", label="failed"))
    ax.legend(handles=handles, fontsize=7, ncol=len(handles), loc="lower center", bbox_to_anchor=(0.5, -0.36),
              frameon=False)
    return _png(fig)
