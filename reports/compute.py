"""Dataset statistics as one JSON-able dict: clip table, labels, class balance, rejects, failures, feature sets,
throughput and aligned views. Histograms are stored as counts over shared edges, so every figure
of a report can be drawn again from ``stats.json`` alone.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from features.align.view import STATUSES, modality_source
from store import FeatureStore, open_view
from store.ids import now_utc
from store.moments import Moments
from store.schema import CLASS_LABELS
from store.views import group_array

SPLIT_ORDER = ("train", "valid", "test")
LABEL_EDGES = [round(-3.0 + 0.5 * i, 1) for i in range(13)]  # 12 bins of 0.5 over [-3, 3]
SEVEN = [str(k) for k in range(-3, 4)]
PCTS = (5, 25, 50, 75, 95)
PROBE_MIN_CLIPS = 10  # fewer labelled clips with features: no probe (5 folds of 1-2 clips say nothing)
PROBE_FOLDS = 5
PROBE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))  # ridge penalties RidgeCV picks from (GCV)


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
    """Counts of the finite values over ``edges`` (kept with the edges, so plots need nothing else)."""
    x = np.asarray(values, np.float64)
    counts, _ = np.histogram(x[np.isfinite(x)], bins=np.asarray(edges, np.float64))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def shared_edges(values: Any, bins: int = 20, integer: bool = False) -> list[float]:
    """Bin edges over all splits' values, so per-split histograms stack (integers: whole-number bins)."""
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
    """Occurrences per value (None as "none"), most frequent first."""
    out = Counter("none" if k is None else str(k) for k in items)
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def moments_summary(mom: Moments) -> dict[str, Any]:
    """Rows, NaN/inf counts and (over the dimensions seen) mean, std, their ranges, min, max and
    near-constant dimensions of a feature set or view modality."""
    out: dict[str, Any] = {"rows": mom.rows, "nan": mom.nan, "inf": mom.inf}
    seen = mom.seen
    if not seen.any():
        return out
    mean, std = mom.mean[seen], mom.std()[seen]
    out.update({
        "mean": float(mean.mean()),  # mean over dimensions of the per-dim means
        "std": float(std.mean()),  # mean over dimensions of the per-dim stds
        "dim_mean_min": float(mean.min()),
        "dim_mean_max": float(mean.max()),
        "dim_std_min": float(std.min()),
        "dim_std_max": float(std.max()),
        "min": float(mom.min[seen].min()),
        "max": float(mom.max[seen].max()),
        "constant_dims": int((std < 1e-6).sum()),
    })
    return out


def clip_mean(values: np.ndarray) -> np.ndarray:
    """Per-dimension mean over a clip's rows, non-finite entries left out (0 where none is finite)."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    n = ok.sum(axis=0)
    return np.where(n > 0, np.where(ok, v, 0.0).sum(axis=0) / np.maximum(n, 1), 0.0)


def linear_probe(x: np.ndarray, y: np.ndarray, groups: list[str] | None = None, *, folds: int = PROBE_FOLDS,
                 min_clips: int = PROBE_MIN_CLIPS) -> dict[str, Any]:
    """How linearly a feature set's clip means carry the label: out-of-fold predictions of a ridge
    regression (standardised inputs, penalty chosen by RidgeCV's GCV inside each training fold),
    scored as R² (pooled over folds) and Acc-2 (negative vs positive, zero labels left out, as
    MMSA's Non0_acc_2). Folds keep a video's clips together (``groups``) so a speaker or scene
    never sits on both sides. Deterministic: unshuffled folds, closed-form fits.

    ``x`` [clips, dim] clip means, ``y`` [clips] labels (non-finite ones are dropped). Fewer than
    ``min_clips`` clips, or fewer than two folds: ``{"clips": n, "skipped": why}``.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold, KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, np.float64).reshape(len(y), -1)
    y = np.asarray(y, np.float64)
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    g = np.asarray(groups if groups is not None else [str(i) for i in range(len(keep))], dtype=object)[keep]
    n = int(len(y))
    out: dict[str, Any] = {"clips": n, "dim": int(x.shape[1])}
    n_groups = len(set(g.tolist()))
    k = min(folds, n_groups)
    if n < min_clips or k < 2:
        out["skipped"] = f"{n} labelled clips in {n_groups} videos (need {min_clips} clips, 2 videos)"
        return out
    splitter = GroupKFold(n_splits=k) if groups is not None else KFold(n_splits=k)
    pred = np.zeros(n, np.float64)
    chosen: list[float] = []
    for train, test in splitter.split(x, y, g if groups is not None else None):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=PROBE_ALPHAS)).fit(x[train], y[train])
        pred[test] = model.predict(x[test])
        chosen.append(float(model[-1].alpha_))
    ss_tot = float(((y - y.mean()) ** 2).sum())
    nz = y != 0
    out.update({
        "folds": k,
        "grouped": groups is not None,
        "r2": 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else None,
        "acc2": float(np.mean((pred[nz] > 0) == (y[nz] > 0))) if nz.any() else None,
        "acc2_clips": int(nz.sum()),
        "corr": float(np.corrcoef(pred, y)[0, 1]) if ss_tot > 0 and np.ptp(pred) > 0 else None,
        "alpha_median": float(np.median(chosen)),
    })
    return out


# -- compute --------------------------------------------------------------------------------
def _splits(clips: list[dict[str, Any]]) -> list[str]:
    present = {c["split"] for c in clips}
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))


def label_stats(labels: list[float | None]) -> dict[str, Any]:
    """Distribution and the MMSA class views: has0 (negative < 0 vs non-negative), non0 (negative
    vs positive, zeros left out) and 7 classes (``round(clip(label, -3, 3))``, numpy rounding).

    Clips without a score (None: a class-only dataset such as MELD, or a clip with only class labels)
    are counted as ``unlabelled`` and left out of every figure, so rates are over scored clips only."""
    y = np.asarray([np.nan if v is None else v for v in labels], np.float64)
    scored = np.isfinite(y)
    unlabelled = int((~scored).sum())
    y = y[scored]
    seven = np.round(np.clip(y, -3.0, 3.0)).astype(int) if len(y) else np.zeros(0, int)
    out: dict[str, Any] = dist(y)
    neg, pos, zero = int((y < 0).sum()), int((y > 0).sum()), int((y == 0).sum())
    out["histogram"] = hist(y, LABEL_EDGES)
    out["has0"] = {"negative": neg, "non_negative": pos + zero,
                   "majority_rate": max(neg, pos + zero) / len(y) if len(y) else None}
    out["non0"] = {"negative": neg, "positive": pos, "excluded_zero": zero,
                   "majority_rate": max(neg, pos) / (neg + pos) if neg + pos else None}
    out["seven"] = {k: int((seven == int(k)).sum()) for k in SEVEN}
    out["unlabelled"] = unlabelled
    return out


def class_stats(values: list[str | None]) -> dict[str, Any]:
    """Balance of one categorical label (``label_emotion``, ``label_sentiment``): clips per class,
    most frequent first, and the majority class's rate over the clips that have a class; clips
    without one are ``unlabelled``."""
    counts = _count(v for v in values if v is not None)
    n = sum(counts.values())
    return {"n": n, "unlabelled": len(values) - n, "counts": counts,
            "majority_rate": max(counts.values()) / n if n else None}


def face_stats(metas: list[dict[str, Any]]) -> dict[str, Any]:
    """Face detection rate of ``vision.face`` clips from their index meta (no feature read): the rate
    over all sampled frames, the per-clip rate's distribution and the clips without any face."""
    rates = [m["face_rate"] for m in metas if m.get("face_rate") is not None]
    frames = sum(int(m.get("n_frames") or 0) for m in metas)
    with_face = sum(int(m.get("face_frames") or 0) for m in metas)
    return {"clips": len(rates), "frames": frames, "face_frames": with_face,
            "frame_rate": with_face / frames if frames else None, "clip_rate": dist(rates),
            "faceless_clips": sum(1 for r in rates if r == 0), "multi_face_frames":
            sum(int(m.get("multi_face_frames") or 0) for m in metas)}


def _clip_words(row: dict[str, Any]) -> int:
    return len(row["words"]) if row.get("words") else len((row.get("text") or "").split())


def _feature_set_stats(store: FeatureStore, name: str, table: pa.Table, clips: list[dict[str, Any]],
                       splits: list[str], failures: list[dict[str, Any]], read_values: bool) -> dict[str, Any]:
    """One feature set's report section; ``clips`` is ``table`` (the clip table) as rows."""
    fset = store.feature_set(name)
    attrs = fset.attrs
    modality = str(attrs.get("modality"))
    src = modality_source(store, modality, name, table)
    usable, states = src.usable, [STATUSES[k] for k in src.status]
    index = fset.rows()
    failed_clips = {f["clip_id"] for f in failures if f["feature_set"] == name}
    per_split: dict[str, Any] = {}
    edges = shared_edges(src.lengths[usable].tolist(), integer=True)
    for split in [*splits, "all"]:
        pos_ = [i for i, c in enumerate(clips) if split == "all" or c["split"] == split]
        status = [states[i] for i in pos_]
        rows = [int(src.lengths[i]) for i in pos_ if usable[i]]
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
            "media_seconds": float(sum(index[clips[i]["clip_id"]].duration or 0.0 for i in pos_ if usable[i])),
        }
        per_split[split] = entry
    absent_reasons = _count(index[c["clip_id"]].absent for i, c in enumerate(clips) if states[i] == "absent")
    out: dict[str, Any] = {
        "extractor": attrs.get("extractor"), "modality": modality, "dim": attrs.get("dim"),
        "created": attrs.get("created"), "config": attrs.get("config"),
        "splits": per_split, "absent_reasons": absent_reasons, "committed_clips": len(index),
    }
    if modality == "text":
        metas = [index[c["clip_id"]].meta for i, c in enumerate(clips) if usable[i]]
        out["tokens"] = {"truncated": sum(1 for m in metas if m.get("truncated")),
                         "word_times": _count(m.get("word_times") for m in metas)}
    if attrs.get("extractor") == "vision.face":
        out["faces"] = {split: face_stats([index[clips[i]["clip_id"]].meta for i in range(len(clips))
                                           if usable[i] and (split == "all" or clips[i]["split"] == split)])
                        for split in [*splits, "all"]}
    if read_values:
        mom = Moments(int(attrs.get("dim") or 1))
        bad_clips = 0
        usable_at = {c["clip_id"]: i for i, c in enumerate(clips) if usable[i]}
        means: dict[int, np.ndarray] = {}
        for row, feat in fset.iter_features((r for r in index.values() if r.length), extras=()):
            bad_clips += int(not np.isfinite(feat.values).all())
            mom.add(feat.values)
            if row.clip_id in usable_at:
                means[usable_at[row.clip_id]] = clip_mean(feat.values)
        out["values"] = {**moments_summary(mom), "nonfinite_clips": bad_clips}
        order = sorted(i for i in means if clips[i].get("label") is not None)  # clip-table order
        if order:
            out["probe"] = linear_probe(np.stack([means[i] for i in order]),
                                        np.asarray([clips[i]["label"] for i in order], np.float64),
                                        [str(clips[i]["video_id"]) for i in order])
        else:
            out["probe"] = {"clips": 0, "skipped": "no labelled clip has features"}
    return out


def _view_stats(store: FeatureStore, name: str, splits: list[str]) -> dict[str, Any]:
    view = open_view(store, name)
    group = view.group()
    clip_splits = view.clips.column("split").to_pylist()
    out: dict[str, Any] = {"grid": view.attrs.get("grid"), "fingerprint": view.fingerprint,
                           "created": view.attrs.get("created"), "clips": view.clips.num_rows,
                           "normalized": view.attrs.get("normalized"), "modalities": {}}
    for m, meta in sorted(view.attrs.get("modalities", {}).items()):
        values = np.asarray(group_array(group, f"{m}/values")[...])
        lengths = np.asarray(group_array(group, f"{m}/lengths")[...])
        present = np.asarray(group_array(group, f"{m}/present")[...]).astype(bool)
        mask = np.asarray(group_array(group, f"{m}/mask")[...]).astype(bool) if view.has_array(f"{m}/mask") else None
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
            "values": moments_summary(mom),
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
    table = store.clips()
    clips = table.to_pylist()
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
    stats["classes"] = {
        col: {split: class_stats([c.get(col) for c in clips if split == "all" or c["split"] == split])
              for split in [*splits, "all"]}
        for col in CLASS_LABELS if any(c.get(col) is not None for c in clips)
    }
    stats["rejects"] = {"total": len(rejects), "by_reason": _count(r["reason"] for r in rejects)}
    stats["failures"] = {
        "total": len(failures),
        "by_reason": _count(f["error_type"] for f in failures),
        "by_stage": _count(f["stage"] for f in failures),
        "by_feature_set": _count(f["feature_set"] for f in failures),
        "transient": sum(1 for f in failures if f["transient"]),
    }
    stats["feature_sets"] = {
        n: _feature_set_stats(store, n, table, clips, splits, failures, read_values) for n in store.feature_set_names()
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
    names = [view] if view else store.view_names()
    stats["views"] = {v: _view_stats(store, v, splits) for v in names}
    return stats
