"""The generic manifest layout: one CSV or JSONL file naming each clip's media, window, transcript,
labels and split (``docs/datasets.md``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from corpora.layouts.tables import read_csv, read_jsonl
from corpora.rows import EXTRA_LABELS, MISSING_VALUE, RawClip, Reject
from store.schema import CLASS_LABELS

MANIFEST_COLUMNS = {"clip_id", "media", "text", "label", "split"}
SCORE_ALTERNATIVES = {"label": frozenset(CLASS_LABELS)}  # a class-only dataset (IEMOCAP) needs no score column


def read_manifest(path: Path) -> Iterator[RawClip]:
    """Generic CSV/JSONL: clip_id, media, [start, end], text, [words], label, split, [video_id],
    [label_T/A/V], [label_emotion, label_sentiment]. A dataset with class labels only (IEMOCAP)
    may leave out the ``label`` column (or its values)."""
    is_jsonl = path.suffix.lower() == ".jsonl"
    rows = read_jsonl(path) if is_jsonl else read_csv(path, MANIFEST_COLUMNS, SCORE_ALTERNATIVES)
    for source, row in rows:
        if isinstance(row, Reject):
            yield RawClip(source=source, clip_id=None, problem=row)
            continue
        needed = MANIFEST_COLUMNS - {"label"} if SCORE_ALTERNATIVES["label"] & row.keys() else MANIFEST_COLUMNS
        missing = sorted(needed - row.keys())
        problem = Reject(MISSING_VALUE, f"{source}: missing fields {missing}") if missing else None
        yield RawClip(
            source=source,
            clip_id=row.get("clip_id"),
            video_id=row.get("video_id"),
            media=row.get("media"),
            start=row.get("start"),
            end=row.get("end"),
            text=row.get("text"),
            words=row.get("words"),
            label=row.get("label"),
            split=row.get("split"),
            extra_labels={k: row.get(k) for k in EXTRA_LABELS},
            classes={k: row.get(k) for k in CLASS_LABELS},
            problem=problem,
        )
