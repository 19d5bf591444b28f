"""The report's figures, drawn with matplotlib's Agg canvas (no display) from the histograms in a
``compute_stats`` dict and embedded in the HTML as base64 PNGs."""

from __future__ import annotations

import base64
import io
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

