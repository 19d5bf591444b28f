"""Ingest a dataset (generic manifest, MMSA, CMU-MOSI layout) into a validated clip table.

Every input row ends either in the clip table or in the rejects table with a named reason. Layout
readers only find rows and files; ``validate`` applies the field grammar (``corpora.fields``) in
one place. Only whole-file problems (unreadable or empty file, unknown layout, missing columns)
raise ``ManifestError``, with a message naming the file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from corpora.fields import (
    FieldError,
    id_key,
    is_blank,
    normalise_id,
    parse_label,
    parse_media_path,
    parse_seconds,
    parse_text,
    parse_words,
    printable,
)
from corpora.layouts import detect_layout, read_manifest, read_mmsa, read_mosi
from corpora.rows import (
    DUPLICATE_CLIP_ID,
    EMPTY_MEDIA,
    INVALID_ID,
    INVALID_LABEL,
    INVALID_PATH,
    INVALID_SPLIT,
    INVALID_TEXT,
    INVALID_WINDOW,
    INVALID_WORDS,
    MISSING_FILE,
    MISSING_VALUE,
    PATH_ESCAPES_ROOT,
    UNEXPECTED_ERROR,
    UNREADABLE_MEDIA,
    WINDOW_PAST_END,
    RawClip,
    Reject,
)
from features.media.probe import probe_media
from store import schema
from store.errors import CorruptMediaError, ManifestError
from store.fingerprint import clip_fingerprint, media_fingerprint

log = logging.getLogger(__name__)

Layout = Literal["auto", "manifest", "mmsa", "mosi"]
SPLITS = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "test": "test"}
WINDOW_TOLERANCE_S = 0.05  # containers round durations; a window this far past the end is fine
SECONDS_PER_WORD = 0.4  # duration estimate for a text-only clip with no times at all

@dataclass
class IngestResult:
    clips: pa.Table
    rejects: pa.Table
    layout: str

    @property
    def n_clips(self) -> int:
        return self.clips.num_rows

    @property
    def n_rejects(self) -> int:
        return self.rejects.num_rows


# -- validation -----------------------------------------------------------------------------
def _resolve_media(root: Path, rel: str, clip_id: str) -> Path:
    """Confine a manifest path to the dataset root: no absolute paths, no '..', no symlink out."""
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise Reject(PATH_ESCAPES_ROOT, f"clip {clip_id!r}: media path {rel!r} escapes the dataset root")
    full = root / p
    real = Path(os.path.realpath(full))
    if not real.is_relative_to(Path(os.path.realpath(root))):
        raise Reject(PATH_ESCAPES_ROOT, f"clip {clip_id!r}: media path {rel!r} resolves outside the dataset root")
    return full


def _field(parse: Callable[..., Any], clip_id: str, *args: Any) -> Any:
    """Run one field parser; its ``FieldError`` becomes the row's ``Reject`` naming the clip."""
    try:
        return parse(*args)
    except FieldError as exc:
        raise Reject(exc.reason, f"clip {clip_id!r}: {exc}") from None


def validate(raw: RawClip, root: Path) -> dict[str, Any]:
    """Turn a RawClip into a clip-table row or raise ``Reject``."""
    if raw.problem is not None:
        raise raw.problem
    if is_blank(raw.clip_id):
        raise Reject(MISSING_VALUE, f"{raw.source}: empty clip_id")
    try:
        cid = normalise_id(raw.clip_id, "clip_id", INVALID_ID)
    except FieldError as exc:
        raise Reject(exc.reason, f"{raw.source}: {exc}") from None
    video_id = cid if is_blank(raw.video_id) else _field(normalise_id, cid, raw.video_id, "video_id", INVALID_ID)
    text = _field(parse_text, cid, raw.text, "transcript", INVALID_TEXT)
    label = _field(parse_label, cid, raw.label, "label", INVALID_LABEL, True)
    extra = {k: _field(parse_label, cid, v, k, INVALID_LABEL, False) for k, v in raw.extra_labels.items()}
    split = SPLITS.get(raw.split.strip().lower()) if isinstance(raw.split, str) else None
    if split is None:
        raise Reject(INVALID_SPLIT, f"clip {cid!r}: split {raw.split!r} is not train/valid/test")
    start = _field(parse_seconds, cid, raw.start, "start", INVALID_WINDOW)
    end = _field(parse_seconds, cid, raw.end, "end", INVALID_WINDOW)
    if start is not None and end is not None and start >= end:
        raise Reject(INVALID_WINDOW, f"clip {cid!r}: start {start:g} >= end {end:g}")
    media = _field(parse_media_path, cid, raw.media, INVALID_PATH)

    media_uri = media_fp = None
    has_video = has_audio = False
    duration: float | None
    if media:
        path = _resolve_media(root, media, cid)
        try:
            if not path.exists():
                raise Reject(MISSING_FILE, f"clip {cid!r}: media file {media!r} does not exist")
            if not path.is_file():
                raise Reject(MISSING_FILE, f"clip {cid!r}: media path {media!r} is not a file")
            if path.stat().st_size == 0:
                raise Reject(EMPTY_MEDIA, f"clip {cid!r}: media file {media!r} is empty (0 bytes)")
            info = probe_media(path, clip_id=cid)
            media_fp = media_fingerprint(path)
        except CorruptMediaError as exc:
            raise Reject(UNREADABLE_MEDIA, str(exc)) from None
        except OSError as exc:
            raise Reject(UNREADABLE_MEDIA, f"clip {cid!r}: media file {media!r} cannot be read: {exc}") from None
        media_end = info.duration
        if (start or 0.0) >= media_end or (end is not None and end > media_end + WINDOW_TOLERANCE_S):
            raise Reject(
                WINDOW_PAST_END,
                f"clip {cid!r}: window {start or 0.0:g}-{end if end is not None else media_end:g} s is past "
                f"the end of {media!r} ({media_end:.2f} s)",
            )
        end = min(end, media_end) if end is not None else None
        duration = (end if end is not None else media_end) - (start or 0.0)
        media_uri = str(path.resolve())
        has_video, has_audio = bool(info.video), bool(info.audio)
    elif end is not None:
        duration = end - (start or 0.0)
    else:
        duration = None  # a text-only clip without a window: its words (or word count) define it
    words = _field(parse_words, cid, raw.words, duration, INVALID_WORDS)
    if duration is None:
        duration = max(w["end"] for w in words) if words else max(1, len(text.split())) * SECONDS_PER_WORD
    if duration <= 0:
        raise Reject(INVALID_WINDOW, f"clip {cid!r}: the clip has no duration")
    row = {
        "clip_id": cid,
        "video_id": video_id,
        "media_uri": media_uri,
        "start": start,
        "end": end,
        "duration": float(duration),
        "text": text,
        "words": words,
        "label": label,
        "label_T": extra.get("label_T"),
        "label_A": extra.get("label_A"),
        "label_V": extra.get("label_V"),
        "split": split,
        "has_video": has_video,
        "has_audio": has_audio,
        "media_fingerprint": media_fp,
    }
    row["clip_fingerprint"] = clip_fingerprint(row)
    return row


def ingest(path: str | os.PathLike[str], layout: Layout = "auto", folds: str | None = None) -> IngestResult:
    """Read and validate a dataset; returns the clip table and the rejects table.

    Ids are unique by ``corpora.fields.id_key``: a later row whose id equals an earlier one up
    to case is a duplicate (the first occurrence is kept).
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: dataset path does not exist")
    kind = detect_layout(path) if layout == "auto" else layout
    readers: dict[str, Callable[[], Iterator[RawClip]]] = {
        "manifest": lambda: read_manifest(_manifest_file(path)),
        "mmsa": lambda: read_mmsa(path),
        "mosi": lambda: read_mosi(path, Path(folds) if folds else None),
    }
    if kind not in readers:
        raise ManifestError(f"unknown layout {kind!r}; choose one of {sorted(readers)}")
    root = path if path.is_dir() else path.parent
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    first_of: dict[str, str] = {}
    for raw in readers[kind]():
        try:
            row = validate(raw, root)
            key = id_key(row["clip_id"])
            if key in first_of:
                raise Reject(
                    DUPLICATE_CLIP_ID,
                    f"clip {row['clip_id']!r}: duplicate clip_id (first occurrence {first_of[key]!r} kept)",
                )
            first_of[key] = row["clip_id"]
            rows.append(row)
        except Reject as rej:
            rejects.append(_reject_row(raw, rej.reason, str(rej)))
        except Exception as exc:  # a bug must not cost the batch; the row is kept as a reject
            log.exception("ingest: unexpected error on %s", printable(raw.source))
            rejects.append(_reject_row(raw, UNEXPECTED_ERROR, f"{raw.source}: {type(exc).__name__}: {exc}"))
    return IngestResult(
        clips=pa.Table.from_pylist(rows, schema=schema.CLIPS),
        rejects=pa.Table.from_pylist(rejects, schema=schema.REJECTS),
        layout=kind,
    )


def _reject_row(raw: RawClip, reason: str, message: str) -> dict[str, Any]:
    """A rejects-table row; every string made storable (undecodable bytes shown as ``\\xff``)."""
    cid = "" if raw.clip_id is None else raw.clip_id if isinstance(raw.clip_id, str) else json.dumps(raw.clip_id)
    return {"source": printable(raw.source), "clip_id": printable(cid), "reason": reason, "message": printable(message)}


def _manifest_file(path: Path) -> Path:
    if path.is_file():
        return path
    for name in ("manifest.csv", "manifest.jsonl"):
        if (path / name).exists():
            return path / name
    raise ManifestError(f"{path}: no manifest.csv or manifest.jsonl")
