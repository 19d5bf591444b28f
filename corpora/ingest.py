"""Ingest a dataset (generic manifest, MMSA, CMU-MOSI, MELD layout) into a validated clip table, or new
unlabeled media (``media`` layout, ``ingest_media``) into clips of split ``predict`` to score.

Every input row ends either in the clip table or in the rejects table with a named reason. Layout
readers only find rows and files; ``validate`` applies the field grammar (``corpora.fields``) in
one place. Only whole-file problems (unreadable or empty file, unknown layout, missing columns)
raise ``ManifestError``, with a message naming the file.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from corpora.fields import (
    FieldError,
    id_key,
    is_blank,
    normalise_id,
    parse_class,
    parse_label,
    parse_media_path,
    parse_seconds,
    parse_text,
    parse_words,
    printable,
)
from corpora.layouts.detect import detect_layout
from corpora.layouts.manifest import read_manifest
from corpora.layouts.media import PREDICT_SPLIT, plan_media, read_plan
from corpora.layouts.meld import read_meld
from corpora.layouts.mmsa import read_mmsa
from corpora.layouts.mosi import read_mosi
from corpora.rows import (
    DUPLICATE_CLIP_ID,
    INVALID_ID,
    INVALID_LABEL,
    INVALID_PATH,
    INVALID_SPLIT,
    INVALID_TEXT,
    INVALID_WINDOW,
    INVALID_WORDS,
    MISSING_VALUE,
    PATH_ESCAPES_ROOT,
    UNEXPECTED_ERROR,
    UNREADABLE_MEDIA,
    WINDOW_PAST_END,
    RawClip,
    Reject,
    media_file_problem,
)
from corpora.segments import SegmentConfig
from features.media.probe import MediaInfo, probe_media
from store import schema
from store.errors import CorruptMediaError, ManifestError
from store.featurestore import MediaSource
from store.fingerprint import clip_fingerprint, media_fingerprint

log = logging.getLogger(__name__)

Layout = Literal["auto", "manifest", "mmsa", "mosi", "media", "meld"]
SPLITS = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "test": "test"}
WINDOW_TOLERANCE_S = 0.05  # containers round durations; a window this far past the end is fine
SECONDS_PER_WORD = 0.4  # duration estimate for a text-only clip with no times at all


@dataclass
class IngestResult:
    """The clip and rejects tables. ``sources`` (media layout only): video_id -> the input file it
    came from (the media file, or the transcript of a text-only input): real path and content hash."""

    clips: pa.Table
    rejects: pa.Table
    layout: str
    sources: dict[str, MediaSource] = field(default_factory=dict)

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


@functools.lru_cache(maxsize=256)
def _probe(path: str, size: int, mtime_ns: int) -> MediaInfo:
    """``probe_media`` once per file version: a video cut into many clips (MOSI, the media layout)
    is opened once, not once per clip. Failures are not cached (lru_cache keeps no exceptions)."""
    return probe_media(path)


def _probe_media(path: Path) -> MediaInfo:
    st = path.stat()
    return _probe(str(path), st.st_size, st.st_mtime_ns)


def validate(raw: RawClip, root: Path, *, predict: bool = False) -> dict[str, Any]:
    """Turn a RawClip into a clip-table row or raise ``Reject``.

    ``predict`` (the media layout): the split must be ``predict`` and the label may be missing (new
    media has none). Otherwise a label is required and the split is train/valid/test; the label is a
    score in [-3, 3], or, for a class-only dataset (MELD, IEMOCAP), a class label
    (``store.schema.CLASS_LABELS``) with the score left null: no score is invented from a class.
    ``text_original`` is kept only when the layout's repair changed the text.
    """
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
    original = raw.text_original
    if original is not None:
        original = _field(parse_text, cid, original, "transcript as shipped", INVALID_TEXT)
    classes = {k: _field(parse_class, cid, raw.classes.get(k), k, INVALID_LABEL) for k in schema.CLASS_LABELS}
    has_class = any(v is not None for v in classes.values())
    label = _field(parse_label, cid, raw.label, "label", INVALID_LABEL, not (predict or has_class))
    extra = {k: _field(parse_label, cid, v, k, INVALID_LABEL, False) for k, v in raw.extra_labels.items()}
    splits = {PREDICT_SPLIT: PREDICT_SPLIT} if predict else SPLITS
    split = splits.get(raw.split.strip().lower()) if isinstance(raw.split, str) else None
    if split is None:
        expected = PREDICT_SPLIT if predict else "train/valid/test"
        raise Reject(INVALID_SPLIT, f"clip {cid!r}: split {raw.split!r} is not {expected}")
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
            problem = media_file_problem(path, f"clip {cid!r}: media file {media!r}")
            if problem is not None:
                raise problem
            info = _probe_media(path)
            media_fp = media_fingerprint(path)
        except CorruptMediaError as exc:
            raise Reject(UNREADABLE_MEDIA, f"clip {cid!r}: {exc}") from None
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
        **classes,
        "text_original": original if original != text else None,
    }
    row["clip_fingerprint"] = clip_fingerprint(row)
    return row


def resolve_layout(path: str | os.PathLike[str], layout: str) -> str:
    """The layout ``path`` is read with: ``layout``, or for ``auto`` the one its header or files name
    (``detect_layout``). A missing path or an undetectable layout is a ``ManifestError`` naming the
    path: the same answer for the ingest and for its dry run, which reads nothing more."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: dataset path does not exist")
    return detect_layout(path) if layout == "auto" else layout


def ingest(
    path: str | os.PathLike[str],
    layout: Layout = "auto",
    folds: str | None = None,
    segment: SegmentConfig | None = None,
) -> IngestResult:
    """Read and validate a dataset; returns the clip table and the rejects table.

    Ids are unique by ``corpora.fields.id_key``: a later row whose id equals an earlier one up
    to case is a duplicate (the first occurrence is kept). ``layout="media"`` reads ``path`` (a
    folder or file of new media) as ``ingest_media([path], segment)``; ``auto`` never picks it.
    """
    path = Path(path)
    kind = resolve_layout(path, layout)
    if kind == "media":
        return ingest_media([path], segment)
    readers: dict[str, Callable[[], Iterator[RawClip]]] = {
        "manifest": lambda: read_manifest(_manifest_file(path)),
        "mmsa": lambda: read_mmsa(path),
        "mosi": lambda: read_mosi(path, Path(folds) if folds else None),
        "meld": lambda: read_meld(path),
    }
    if kind not in readers:
        raise ManifestError(f"unknown layout {kind!r}; choose one of {sorted(readers)}")
    root = path if path.is_dir() else path.parent
    return _collect(readers[kind](), root, kind)


def ingest_media(
    paths: Sequence[str | os.PathLike[str]], segment: SegmentConfig | None = None,
    held: Mapping[str, MediaSource] | None = None,
) -> IngestResult:
    """New, unlabeled media into clips of split ``predict`` (label null), one per segment.

    ``paths``: media files, folders (scanned recursively) and transcripts without media, as
    ``corpora.layouts.media.plan_media`` pairs them; ``segment`` how media is cut (default
    ``SegmentConfig()``); ``held``: the video ids a predict store already gives files (``plan_media``).
    Clip ids are ``<video_id>__<index:04d>``; ``media_uri`` is the file's absolute real path;
    ``IngestResult.sources`` maps each video_id to its input file. Every input file ends as clips or
    as a reject row; only nothing to read at all raises ``ManifestError``.
    """
    plan = plan_media(paths, held)
    if not plan.inputs:
        shown = ", ".join(printable(str(p)) for p in paths) or "(no paths)"
        raise ManifestError(f"{shown}: no media or transcript files to read")
    result = _collect(read_plan(plan, segment or SegmentConfig()), plan.root, "media", predict=True)
    result.sources = plan.sources
    return result


def collect(raws: Iterable[RawClip], root: Path, kind: str) -> IngestResult:
    """Validate rows that another reader found (``interop``: the samples of an MMSA feature pickle)
    exactly as a layout's rows are: the same grammar, reasons and duplicate rule."""
    return _collect(raws, root, kind)


def _collect(raws: Iterable[RawClip], root: Path, kind: str, predict: bool = False) -> IngestResult:
    """Validate every row into the clip table or the rejects table; ids unique up to case."""
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    first_of: dict[str, str] = {}
    for raw in raws:
        try:
            row = validate(raw, root, predict=predict)
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
