"""Dataset statistics: ``compute_stats`` (numbers), ``render_report`` (Markdown, one-file HTML,
``stats.json``) and ``stats_flow`` (both, plus Prefect markdown/table artifacts).

Everything in the report is in ``stats.json``: figures are drawn from the histograms stored there,
so a report can be re-rendered from the JSON alone. Files are written through the store's fsspec
layer, so ``memory://`` and object-store stores work like directories.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task

from features.align import modality_source
from flows.config import PipelineConfig
from store import FeatureStore
from store.errors import ConfigError
from store.featurestore import now_utc
from store.fs import StoreFS
from store.views import open_view, view_names

SPLIT_ORDER = ("train", "valid", "test")
LABEL_EDGES = [round(-3.0 + 0.5 * i, 1) for i in range(13)]  # 12 bins of 0.5 over [-3, 3]
SEVEN = [str(k) for k in range(-3, 4)]
TEMPLATES = Path(__file__).parent / "templates"
PCTS = (5, 25, 50, 75, 95)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


# -- small helpers --------------------------------------------------------------------------
def dist(values: Any) -> dict[str, Any]:
    """n, total, mean, std, min, p5..p95, max of a 1-D sample (only ``n`` when it is empty)."""
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return {"n": 0}
    out: dict[str, Any] = {"n": int(len(x)), "total": float(x.sum()), "mean": float(x.mean()),
                           "std": float(x.std()), "min": float(x.min())}
    for q, v in zip(PCTS, np.percentile(x, PCTS)):
        out[f"p{q}"] = float(v)
    out["max"] = float(x.max())
    return out


def hist(values: Any, edges: list[float]) -> dict[str, Any]:
    x = np.asarray(values, np.float64)
    counts, _ = np.histogram(x[np.isfinite(x)], bins=np.asarray(edges, np.float64))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def shared_edges(values: Any, bins: int = 20, integer: bool = False) -> list[float]:
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return [0.0, 1.0]
    lo, hi = float(x.min()), float(x.max())
    if integer:
        width = max(1, int(math.ceil((hi - lo + 1) / bins)))
        return [float(e) for e in np.arange(math.floor(lo), hi + width + 1e-9, width)]
    if hi <= lo:
        hi = lo + 1.0
    return [float(e) for e in np.linspace(lo, hi, bins + 1)]


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in items:
        key = "none" if k is None else str(k)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def slug(name: str) -> str:
    """A Prefect artifact key part: lowercase letters, digits and dashes."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", name.lower())).strip("-") or "report"


class Moments:
    """Per-dimension count/mean/M2 (Chan's combination), min, max, NaN and inf counts."""

    def __init__(self, dim: int) -> None:
        self.n = np.zeros(dim, np.float64)
        self.mean = np.zeros(dim, np.float64)
        self.m2 = np.zeros(dim, np.float64)
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)
        self.rows = 0
        self.nan = 0
        self.inf = 0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(-1, len(self.n))
        if not len(x):
            return
        self.rows += len(x)
        self.nan += int(np.isnan(x).sum())
        self.inf += int(np.isinf(x).sum())
        ok = np.isfinite(x)
        nb = ok.sum(axis=0).astype(np.float64)
        safe = np.maximum(nb, 1)
        mb = np.where(ok, x, 0.0).sum(axis=0) / safe
        m2b = (np.where(ok, x - mb, 0.0) ** 2).sum(axis=0)
        tot = self.n + nb
        delta = mb - self.mean
        self.mean = np.where(tot > 0, self.mean + delta * nb / np.maximum(tot, 1), self.mean)
        self.m2 = self.m2 + m2b + delta**2 * self.n * nb / np.maximum(tot, 1)
        self.n = tot
        self.min = np.minimum(self.min, np.where(ok, x, np.inf).min(axis=0))
        self.max = np.maximum(self.max, np.where(ok, x, -np.inf).max(axis=0))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "nan": self.nan, "inf": self.inf}
        seen = self.n > 0
        if not seen.any():
            return out
        std = np.sqrt(self.m2[seen] / self.n[seen])
        out.update({
            "mean": float(self.mean[seen].mean()),  # mean over dimensions of the per-dim means
            "std": float(std.mean()),  # mean over dimensions of the per-dim stds
            "dim_mean_min": float(self.mean[seen].min()),
            "dim_mean_max": float(self.mean[seen].max()),
            "dim_std_min": float(std.min()),
            "dim_std_max": float(std.max()),
            "min": float(self.min[seen].min()),
            "max": float(self.max[seen].max()),
            "constant_dims": int((std < 1e-6).sum()),
        })
        return out


# -- compute --------------------------------------------------------------------------------
def _splits(clips: list[dict[str, Any]]) -> list[str]:
    present = {c["split"] for c in clips}
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))


def label_stats(labels: list[float]) -> dict[str, Any]:
    """Distribution and the MMSA class views: has0 (negative < 0 vs non-negative), non0 (negative
    vs positive, zeros left out) and 7 classes (``round(clip(label, -3, 3))``, numpy rounding)."""
    y = np.asarray(labels, np.float64)
    seven = np.round(np.clip(y, -3.0, 3.0)).astype(int) if len(y) else np.zeros(0, int)
    out: dict[str, Any] = dist(y)
    neg, pos, zero = int((y < 0).sum()), int((y > 0).sum()), int((y == 0).sum())
    out["histogram"] = hist(y, LABEL_EDGES)
    out["has0"] = {"negative": neg, "non_negative": pos + zero,
                   "majority_rate": max(neg, pos + zero) / len(y) if len(y) else None}
    out["non0"] = {"negative": neg, "positive": pos, "excluded_zero": zero,
                   "majority_rate": max(neg, pos) / (neg + pos) if neg + pos else None}
    out["seven"] = {k: int((seven == int(k)).sum()) for k in SEVEN}
    return out


def _clip_words(row: dict[str, Any]) -> int:
    return len(row["words"]) if row.get("words") else len((row.get("text") or "").split())


def _feature_set_stats(store: FeatureStore, name: str, clips: list[dict[str, Any]], splits: list[str],
                       failures: list[dict[str, Any]], read_values: bool) -> dict[str, Any]:
    fset = store.feature_set(name)
    attrs = fset.attrs
    modality = str(attrs.get("modality"))
    src = modality_source(store, modality, name, clips)
    index = {r["clip_id"]: r for r in fset.index().to_pylist()}
    failed_clips = {f["clip_id"] for f in failures if f["feature_set"] == name}
    per_split: dict[str, Any] = {}
    edges = shared_edges([int(r["length"]) for r in src.rows if r is not None], integer=True)
    for split in [*splits, "all"]:
        pos_ = [i for i, c in enumerate(clips) if split == "all" or c["split"] == split]
        status = [src.status[i] for i in pos_]
        rows = [int(src.rows[i]["length"]) for i in pos_ if src.rows[i] is not None]  # type: ignore[index]
        n = len(pos_)
        present = status.count("ok")
        entry = {
            "clips": n,
            "present": present,
            "absent": status.count("absent") + status.count("empty"),
            "missing": status.count("missing"),
            "stale": status.count("stale"),
            "failed": sum(1 for i in pos_ if clips[i]["clip_id"] in failed_clips),
            "present_rate": present / n if n else None,
            "missing_rate": (n - present) / n if n else None,
            "rows": dist(rows),
            "rows_histogram": hist(rows, edges),
            "media_seconds": float(sum(index[clips[i]["clip_id"]]["duration"] or 0.0 for i in pos_
                                       if src.rows[i] is not None)),
        }
        per_split[split] = entry
    absent_reasons = _count(index[c["clip_id"]]["absent"] for i, c in enumerate(clips) if src.status[i] == "absent")
    out: dict[str, Any] = {
        "extractor": attrs.get("extractor"), "modality": modality, "dim": attrs.get("dim"),
        "created": attrs.get("created"), "config": attrs.get("config"),
        "splits": per_split, "absent_reasons": absent_reasons, "committed_clips": len(index),
    }
    if modality == "text":
        metas = [json.loads(index[c["clip_id"]]["meta"] or "{}") for i, c in enumerate(clips) if src.status[i] == "ok"]
        out["tokens"] = {"truncated": sum(1 for m in metas if m.get("truncated")),
                         "word_times": _count(m.get("word_times") for m in metas)}
    if read_values:
        mom = Moments(int(attrs.get("dim") or 1))
        bad_clips = 0
        rel = f"features/{name}/shards"
        by_shard: dict[str, list[dict[str, Any]]] = {}
        for r in index.values():
            if r["length"]:
                by_shard.setdefault(r["shard"], []).append(r)
        for shard, rows in sorted(by_shard.items()):
            group = store.fs.open_group(f"{rel}/{shard}")
            lo = min(r["offset"] for r in rows)
            hi = max(r["offset"] + r["length"] for r in rows)
            values = np.asarray(group["values"][lo:hi], np.float32)
            for r in rows:
                v = values[r["offset"] - lo : r["offset"] - lo + r["length"]]
                bad_clips += int(not np.isfinite(v).all())
                mom.add(v)
        out["values"] = {**mom.summary(), "nonfinite_clips": bad_clips}
    return out


def _view_stats(store: FeatureStore, name: str, splits: list[str]) -> dict[str, Any]:
    view = open_view(store, name)
    group = view.group()
    clip_splits = view.clips.column("split").to_pylist()
    out: dict[str, Any] = {"grid": view.attrs.get("grid"), "fingerprint": view.fingerprint,
                           "created": view.attrs.get("created"), "clips": view.clips.num_rows,
                           "normalized": view.attrs.get("normalized"), "modalities": {}}
    for m, meta in sorted(view.attrs.get("modalities", {}).items()):
        values = np.asarray(group[f"{m}/values"][...])
        lengths = np.asarray(group[f"{m}/lengths"][...])
        present = np.asarray(group[f"{m}/present"][...]).astype(bool)
        mask = np.asarray(group[f"{m}/mask"][...]).astype(bool) if view.has_array(f"{m}/mask") else None
        real = np.arange(values.shape[1])[None, :] < lengths[:, None]
        mom = Moments(values.shape[2])
        mom.add(values[(mask if mask is not None else real) & present[:, None]])
        entry: dict[str, Any] = {
            "feature_set": meta.get("feature_set"), "dim": int(values.shape[2]), "L": int(values.shape[1]),
            "nan": int(np.isnan(values).sum()), "inf": int(np.isinf(values).sum()),
            "nonfinite_clips": int((~np.isfinite(values)).any(axis=(1, 2)).sum()),
            "lengths": dist(lengths[present]),
            "lengths_histogram": hist(lengths[present], shared_edges(lengths[present], integer=True)),
            "truncated": None,
            "coverage": (float((mask & real & present[:, None]).sum() / max(1, (real & present[:, None]).sum()))
                         if mask is not None else None),
            "values": mom.summary(),
            "present": {},
        }
        for split in [*splits, "all"]:
            sel = np.array([split == "all" or s == split for s in clip_splits], bool)
            entry["present"][split] = {"clips": int(sel.sum()), "present": int((present & sel).sum()),
                                       "rate": float((present & sel).sum() / sel.sum()) if sel.any() else None}
        out["modalities"][m] = entry
    return out


def compute_stats(store: FeatureStore | str, view: str | None = None, *, read_values: bool = True,
                  name: str | None = None) -> dict[str, Any]:
    """Every figure of the dataset report as a JSON-able dict.

    ``view``: the aligned view to summarise (None: every view in the store). ``read_values``:
    read every feature value for NaN/inf counts and mean/std (one pass over each set's shards).
    """
    store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    clips = store.clips().to_pylist()
    splits = _splits(clips)
    failures = store.failures().to_pylist()
    rejects = store.rejects().to_pylist()
    stats: dict[str, Any] = {
        "name": name or view or "dataset",
        "store": store.url,
        "created": now_utc().isoformat(),
        "view": view,
        "splits": splits,
        "n_clips": len(clips),
    }
    all_durations = [c["duration"] for c in clips]
    dur_edges = shared_edges(all_durations)
    word_counts = [_clip_words(c) for c in clips]
    word_edges = shared_edges(word_counts, integer=True)
    stats["clips"] = {}
    stats["labels"] = {}
    for split in [*splits, "all"]:
        sel = [c for c in clips if split == "all" or c["split"] == split]
        durations = [c["duration"] for c in sel]
        words = [_clip_words(c) for c in sel]
        stats["clips"][split] = {
            "clips": len(sel),
            "videos": len({c["video_id"] for c in sel}),
            "duration": dist(durations),
            "duration_histogram": hist(durations, dur_edges),
            "words": dist(words),
            "words_histogram": hist(words, word_edges),
            "with_word_timings": sum(1 for c in sel if c.get("words")),
            "has_video": sum(1 for c in sel if c.get("has_video")),
            "has_audio": sum(1 for c in sel if c.get("has_audio")),
            "text_only": sum(1 for c in sel if not c.get("media_uri")),
        }
        stats["labels"][split] = label_stats([c["label"] for c in sel])
    stats["rejects"] = {"total": len(rejects), "by_reason": _count(r["reason"] for r in rejects)}
    stats["failures"] = {
        "total": len(failures),
        "by_reason": _count(f["error_type"] for f in failures),
        "by_stage": _count(f["stage"] for f in failures),
        "by_feature_set": _count(f["feature_set"] for f in failures),
        "transient": sum(1 for f in failures if f["transient"]),
    }
    stats["feature_sets"] = {
        n: _feature_set_stats(store, n, clips, splits, failures, read_values) for n in store.feature_set_names()
    }
    text_sets = [n for n, s in stats["feature_sets"].items() if s["modality"] == "text"]
    text_set = max(text_sets, key=lambda n: stats["feature_sets"][n].get("created") or "") if text_sets else None
    stats["text"] = {"feature_set": text_set, "splits": {}}
    for split in [*splits, "all"]:
        entry = {"words": stats["clips"][split]["words"]}
        if text_set:
            entry["tokens"] = stats["feature_sets"][text_set]["splits"][split]["rows"]
        stats["text"]["splits"][split] = entry
    runs = store.runs().to_pylist()
    through: dict[str, Any] = {}
    for r in runs:
        t = through.setdefault(r["feature_set"], {"extractor": r["extractor"], "runs": 0, "clips_done": 0,
                                                  "media_seconds": 0.0, "wall_seconds": 0.0})
        t["runs"] += 1
        t["clips_done"] += int(r["clips_done"] or 0)
        t["media_seconds"] += float(r["media_seconds"] or 0.0)
        t["wall_seconds"] += float(r["wall_seconds"] or 0.0)
    for t in through.values():
        t["realtime_factor"] = t["media_seconds"] / t["wall_seconds"] if t["wall_seconds"] > 0 else None
    stats["throughput"] = dict(sorted(through.items()))
    names = [view] if view else view_names(store)
    stats["views"] = {v: _view_stats(store, v, splits) for v in names}
    return stats


# -- tables (shared by Markdown, HTML and the Prefect table artifacts) ------------------------
def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if "." in f"{value:.{digits}f}" else f"{value}"
    return str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


@dataclass
class ReportTable:
    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]


def report_tables(stats: dict[str, Any]) -> list[ReportTable]:
    splits = [*stats["splits"], "all"]
    tables: list[ReportTable] = []
    rows = []
    for s in splits:
        c, d = stats["clips"][s], stats["clips"][s]["duration"]
        rows.append([s, c["clips"], c["videos"], fmt(d.get("total")), fmt(d.get("mean")), fmt(d.get("min")),
                     fmt(d.get("p50")), fmt(d.get("max")), c["with_word_timings"], c["has_video"], c["has_audio"],
                     c["text_only"]])
    tables.append(ReportTable("splits", "Clips and durations (seconds) per split",
                              ["split", "clips", "videos", "total s", "mean s", "min s", "median s", "max s",
                               "word timings", "with video", "with audio", "text only"], rows))
    rows = []
    for s in splits:
        lab = stats["labels"][s]
        h0, n0 = lab["has0"], lab["non0"]
        rows.append([s, lab["n"], fmt(lab.get("mean")), fmt(lab.get("std")), h0["negative"], h0["non_negative"],
                     _pct(h0["majority_rate"]), n0["negative"], n0["positive"], _pct(n0["majority_rate"]),
                     *[lab["seven"][k] for k in SEVEN]])
    tables.append(ReportTable("labels", "Labels and class balance (has0: neg / non-neg; non0: neg / pos; 7-class)",
                              ["split", "n", "mean", "std", "has0 neg", "has0 non-neg", "has0 majority",
                               "non0 neg", "non0 pos", "non0 majority", *[f"7c {k}" for k in SEVEN]], rows))
    rows = []
    for name, fs in stats["feature_sets"].items():
        for s in splits:
            e = fs["splits"][s]
            r = e["rows"]
            rows.append([name, fs["modality"], s, e["clips"], e["present"], e["absent"], e["missing"], e["stale"],
                         e["failed"], _pct(e["missing_rate"]), fmt(r.get("p50")), fmt(r.get("p95")), fmt(r.get("max"))])
    tables.append(ReportTable("modalities", "Presence and sequence lengths (rows per clip) per feature set and split",
                              ["feature set", "modality", "split", "clips", "present", "absent", "missing", "stale",
                               "failed", "missing rate", "rows p50", "rows p95", "rows max"], rows,
                              note="absent: the extractor recorded a missing modality; missing: never committed; "
                                   "stale: committed for older inputs"))
    rows = []
    for name, fs in stats["feature_sets"].items():
        v = fs.get("values")
        if v is None:
            continue
        rows.append([name, fs["dim"], v["rows"], v["nan"], v["inf"], v["nonfinite_clips"], fmt(v.get("mean")),
                     fmt(v.get("std")), fmt(v.get("min")), fmt(v.get("max")), v.get("constant_dims", "–")])
    if rows:
        tables.append(ReportTable("values", "Feature values (mean/std: averaged over dimensions)",
                                  ["feature set", "dim", "rows", "NaN", "inf", "clips with non-finite", "mean", "std",
                                   "min", "max", "constant dims"], rows))
    rows = []
    for s in splits:
        t = stats["text"]["splits"][s]
        w, k = t["words"], t.get("tokens", {})
        rows.append([s, fmt(w.get("mean")), fmt(w.get("p50")), fmt(w.get("p95")), fmt(w.get("max")),
                     fmt(k.get("mean")), fmt(k.get("p50")), fmt(k.get("p95")), fmt(k.get("max"))])
    tables.append(ReportTable("text", "Text length: words per clip and word-piece tokens per clip (incl. [CLS]/[SEP])",
                              ["split", "words mean", "words p50", "words p95", "words max", "tokens mean",
                               "tokens p50", "tokens p95", "tokens max"], rows))
    rows = [["ingest reject", reason, n] for reason, n in stats["rejects"]["by_reason"].items()]
    rows += [["extraction failure", reason, n] for reason, n in stats["failures"]["by_reason"].items()]
    tables.append(ReportTable("failures", "Ingest rejects and active extraction failures by reason",
                              ["kind", "reason", "count"], rows))
    rows = [[name, t["extractor"], t["runs"], t["clips_done"], fmt(t["media_seconds"]), fmt(t["wall_seconds"]),
             fmt(t["realtime_factor"])] for name, t in stats["throughput"].items()]
    tables.append(ReportTable("throughput", "Extraction throughput recorded by runs (media seconds / compute seconds)",
                              ["feature set", "extractor", "runs", "clips", "media s", "compute s", "x realtime"], rows))
    rows = []
    for vname, v in stats["views"].items():
        for m, e in v["modalities"].items():
            rates = " / ".join(f"{s} {_pct(e['present'][s]['rate'])}" for s in stats["splits"] if s in e["present"])
            rows.append([vname, v["grid"], m, e["feature_set"], e["L"], e["dim"], rates, _pct(e["coverage"]),
                         fmt(e["lengths"].get("p50")), fmt(e["lengths"].get("max")), e["nan"], e["inf"]])
    if rows:
        tables.append(ReportTable("views", "Aligned views",
                                  ["view", "grid", "modality", "feature set", "L", "dim", "present", "step coverage",
                                   "length p50", "length max", "NaN", "inf"], rows,
                                  note="step coverage: real steps with data (not filled from the nearest row)"))
    return tables


# -- figures --------------------------------------------------------------------------------
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


# -- rendering ------------------------------------------------------------------------------
def _env(autoescape: bool) -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["pct"] = _pct
    return env


def _headline(stats: dict[str, Any]) -> list[tuple[str, str]]:
    c = stats["clips"]["all"]
    return [
        ("clips", f"{stats['n_clips']} (" + ", ".join(f"{s} {stats['clips'][s]['clips']}" for s in stats["splits"]) + ")"),
        ("total duration", f"{fmt(c['duration'].get('total'))} s"),
        ("feature sets", ", ".join(stats["feature_sets"]) or "none"),
        ("aligned views", ", ".join(stats["views"]) or "none"),
        ("ingest rejects", str(stats["rejects"]["total"])),
        ("active extraction failures", str(stats["failures"]["total"])),
    ]


def render_markdown(stats: dict[str, Any], tables: list[ReportTable] | None = None) -> str:
    tables = tables if tables is not None else report_tables(stats)
    return _env(False).get_template("report.md.j2").render(stats=stats, tables=tables, headline=_headline(stats))


def render_html(stats: dict[str, Any], tables: list[ReportTable] | None = None,
                figures: list[dict[str, str]] | None = None) -> str:
    tables = tables if tables is not None else report_tables(stats)
    figures = figures if figures is not None else report_figures(stats)
    return _env(True).get_template("report.html.j2").render(stats=stats, tables=tables, figures=figures,
                                                             headline=_headline(stats))


def render_report(stats: dict[str, Any], out_dir: str | StoreFS) -> dict[str, str]:
    """Write ``report.md``, one-file ``report.html`` and ``stats.json`` into ``out_dir`` (a directory,
    an fsspec URL or a StoreFS); returns file name -> full path or URL."""
    fs = out_dir if isinstance(out_dir, StoreFS) else StoreFS(str(out_dir))
    tables = report_tables(stats)
    files = {
        "report.md": render_markdown(stats, tables).encode(),
        "report.html": render_html(stats, tables).encode(),
        "stats.json": json.dumps(stats, indent=1, sort_keys=False, default=str).encode(),
    }
    for fname, data in files.items():
        fs.write_bytes_atomic(fname, data)
    return {fname: f"{fs.url}/{fname}" for fname in files}


# -- plain run and the flow -----------------------------------------------------------------
@dataclass
class StatsSummary:
    name: str
    report_dir: str
    files: dict[str, str]
    clips: int
    splits: dict[str, int]
    failures: int
    rejects: int
    artifacts: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return (f"report {self.name!r}: {self.clips} clips ("
                + ", ".join(f"{k} {v}" for k, v in self.splits.items())
                + f"), {self.rejects} rejects, {self.failures} active failures -> {self.report_dir}")


def run_stats(store_url: str, view: str | None = None, name: str | None = None,
              read_values: bool = True) -> tuple[StatsSummary, dict[str, Any]]:
    """Plain function (no Prefect): compute the statistics and write ``reports/<name>/``."""
    if name is not None and not NAME_RE.fullmatch(name):
        raise ConfigError(f"report name {name!r}: use letters, digits, '_', '.' and '-' (no spaces or slashes)")
    store = FeatureStore.open(store_url)
    stats = compute_stats(store, view, read_values=read_values, name=name)
    name = stats["name"]
    out = StoreFS(f"{store.url}/reports/{name}")
    files = render_report(stats, out)
    summary = StatsSummary(name=name, report_dir=out.url, files=files, clips=stats["n_clips"],
                           splits={s: stats["clips"][s]["clips"] for s in stats["splits"]},
                           failures=stats["failures"]["total"], rejects=stats["rejects"]["total"])
    return summary, stats


def artifact_key(name: str, table: str | None = None) -> str:
    return f"emoflow-stats-{slug(name)}" + (f"-{slug(table)}" if table else "")


def publish_artifacts(stats: dict[str, Any]) -> list[str]:
    """The report's Markdown and each table as Prefect artifacts (stable lowercase-dash keys)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    tables = report_tables(stats)
    name = stats["name"]
    keys = [artifact_key(name)]
    create_markdown_artifact(markdown=render_markdown(stats, tables), key=keys[0],
                             description=f"emoflow dataset statistics of {stats['store']}")
    for t in tables:
        key = artifact_key(name, t.key)
        create_table_artifact(table=t.records() or [dict.fromkeys(t.columns, "")], key=key, description=t.title)
        keys.append(key)
    return keys


@task(name="compute-stats", task_run_name="stats-{name}")
def stats_task(store_url: str, view: str | None, name: str | None, read_values: bool) -> tuple[StatsSummary, dict[str, Any]]:
    return run_stats(store_url, view, name, read_values)


def stats_options(config: PipelineConfig, view: str | None = None, name: str | None = None,
                  read_values: bool | None = None) -> tuple[str | None, str | None, bool]:
    """Explicit arguments over the config's ``stats:`` section (when it has one) over the defaults."""
    section = getattr(config, "stats", None)
    get = (lambda k, d: section.get(k, d)) if isinstance(section, dict) else (lambda k, d: getattr(section, k, d))
    return (view if view is not None else get("view", None),
            name if name is not None else get("name", None),
            read_values if read_values is not None else bool(get("read_values", True)))


@flow(name="emoflow-stats")
def stats_flow(config: PipelineConfig, view: str | None = None, name: str | None = None,
               read_values: bool | None = None) -> StatsSummary:
    """Statistics of ``config.store`` into ``reports/<name>/`` (``name``: the view's name, else
    ``dataset``), published as a Prefect markdown artifact ``emoflow-stats-<name>`` and one table
    artifact per report table ``emoflow-stats-<name>-<table>``. Arguments left None come from the
    config's ``stats`` section when it has one."""
    view, name, read_values = stats_options(config, view, name, read_values)
    summary, stats = stats_task(config.store, view, name, read_values)
    summary.artifacts = publish_artifacts(stats)
    get_run_logger().info("%s", summary.message)
    return summary
