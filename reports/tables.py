"""The report's tables, shared by the Markdown and HTML files and the Prefect table artifacts,
and the formatting rules (numbers, percentages, keys) every rendering uses."""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from typing import Any

from reports.compute import SEVEN


def slug(name: str) -> str:
    """A key part (Prefect artifact, figure): lowercase letters, digits and dashes."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", name.lower())).strip("-") or "report"


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: ``–`` for None, yes/no, floats to ``digits`` (scientific when tiny or huge)."""
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


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def md_text(value: Any) -> str:
    """Untrusted text (store paths, names, transcripts, file names, errors) safe inline or inside a
    Markdown table cell: whitespace (newlines too) collapsed so a row stays one line, HTML escaped
    (Markdown viewers pass raw HTML through) and Markdown/table syntax backslash-escaped."""
    t = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(t, quote=False))


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


@dataclass
class ReportTable:
    """One table: rows of cells under ``columns``; ``key`` names its artifact."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]


def report_tables(stats: dict[str, Any]) -> list[ReportTable]:
    """Every table of the report, in report order, from a ``compute_stats`` dict."""
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
        rows.append([s, lab["n"], lab.get("unlabelled", 0), fmt(lab.get("mean")), fmt(lab.get("std")),
                     h0["negative"], h0["non_negative"],
                     pct(h0["majority_rate"]), n0["negative"], n0["positive"], pct(n0["majority_rate"]),
                     *[lab["seven"][k] for k in SEVEN]])
    tables.append(ReportTable("labels", "Labels and class balance (has0: neg / non-neg; non0: neg / pos; 7-class)",
                              ["split", "n", "no score", "mean", "std", "has0 neg", "has0 non-neg", "has0 majority",
                               "non0 neg", "non0 pos", "non0 majority", *[f"7c {k}" for k in SEVEN]], rows,
                              note="n: clips with a score label; no score: clips without one (class labels only), "
                                   "left out of every figure"))
    tables += class_tables(stats, splits)
    rows = []
    for name, fs in stats["feature_sets"].items():
        for s in splits:
            e = fs["splits"][s]
            r = e["rows"]
            rows.append([name, fs["modality"], s, e["clips"], e["present"], e["absent"], e["missing"], e["stale"],
                         e["failed"], pct(e["missing_rate"]), fmt(r.get("p50")), fmt(r.get("p95")), fmt(r.get("max"))])
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
    tables.append(probe_table(stats))
    if face := face_table(stats, splits):
        tables.append(face)
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
                              ["feature set", "extractor", "runs", "clips", "media s", "compute s", "x realtime"],
                              rows))
    rows = []
    for vname, v in stats["views"].items():
        for m, e in v["modalities"].items():
            rates = " / ".join(f"{s} {pct(e['present'][s]['rate'])}" for s in stats["splits"] if s in e["present"])
            rows.append([vname, v["grid"], m, e["feature_set"], e["L"], e["dim"], rates, pct(e["coverage"]),
                         fmt(e["lengths"].get("p50")), fmt(e["lengths"].get("max")), e["nan"], e["inf"]])
    if rows:
        tables.append(ReportTable("views", "Aligned views",
                                  ["view", "grid", "modality", "feature set", "L", "dim", "present", "step coverage",
                                   "length p50", "length max", "NaN", "inf"], rows,
                                  note="step coverage: real steps with data (not filled from the nearest row)"))
    return tables



def probe_table(stats: dict[str, Any]) -> ReportTable:
    """The linear probe per modality and feature set (``reports.compute.linear_probe``): which sets
    carry the label linearly in their clip means; sets without enough labelled clips are named in the note."""
    rows, skipped = [], []
    sets = sorted(stats["feature_sets"].items(), key=lambda kv: (str(kv[1]["modality"]), kv[0]))
    for name, fs in sets:
        p = fs.get("probe")
        if p is None:
            continue
        if "skipped" in p:
            skipped.append(f"{name} ({p['skipped']})")
            continue
        rows.append([fs["modality"], name, fs.get("extractor"), p["dim"], p["clips"], p["folds"], fmt(p["r2"]),
                     pct(p["acc2"]), fmt(p["corr"]), fmt(p["alpha_median"])])
    note = ("ridge regression on each clip's mean feature vector against its label, out-of-fold over every "
            "labelled clip (folds keep a video's clips together); R² pooled over folds, Acc-2 = negative vs "
            "positive with zero labels left out")
    if skipped:
        note += "; not probed: " + "; ".join(skipped)
    return ReportTable("probe", "Linear probe per modality: how well each feature set's clip means predict the label",
                       ["modality", "feature set", "extractor", "dim", "clips", "folds", "R²", "Acc-2", "corr",
                        "ridge alpha"], rows, note=note)


def class_tables(stats: dict[str, Any], splits: list[str]) -> list[ReportTable]:
    """Clips per class and split of each categorical label the clip table has (none: no table): a
    class the train split lacks, or a majority far from the other splits', shows here."""
    tables = []
    for col, per_split in stats.get("classes", {}).items():
        rows: list[list[Any]] = []
        for cls, total in per_split["all"]["counts"].items():
            rows.append([cls, *[per_split[s]["counts"].get(cls, 0) for s in splits],
                         pct(total / per_split["all"]["n"])])
        rows.append(["(no class)", *[per_split[s]["unlabelled"] for s in splits], "–"])
        rows.append(["majority rate", *[pct(per_split[s]["majority_rate"]) for s in splits], "–"])
        tables.append(ReportTable(f"classes-{slug(col)}", f"Class balance of {col} (clips per class and split)",
                                  ["class", *splits, "share of all"], rows,
                                  note="share and majority rate are over the clips with a class"))
    return tables


def face_table(stats: dict[str, Any], splits: list[str]) -> ReportTable | None:
    """Face detection rate per ``vision.face`` set and split, from the clips' index meta (None: no such set)."""
    rows = []
    for name, fs in stats["feature_sets"].items():
        for s in splits if "faces" in fs else []:
            f = fs["faces"][s]
            r = f["clip_rate"]
            rows.append([name, s, f["clips"], f["frames"], pct(f["frame_rate"]), pct(r.get("p5")), pct(r.get("p50")),
                         f["faceless_clips"], f["multi_face_frames"]])
    if not rows:
        return None
    return ReportTable("faces", "Face detection rate (vision.face): sampled frames with a face",
                       ["feature set", "split", "clips", "frames", "face detection rate", "clip rate p5",
                        "clip rate p50", "clips without a face", "frames with 2+ faces"], rows,
                       note="faceless frames are rows with a zero vector and extras face = false; with 2+ faces the "
                            "largest is embedded")
