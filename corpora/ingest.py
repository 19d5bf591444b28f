"""Ingest a dataset (generic manifest, MMSA, CMU-MOSI layout) into a validated clip table.

Every input row ends either in the clip table or in the rejects table with a named reason. Layout
readers only find rows and files; ``validate`` applies the field grammar (``corpora.fields``) in
one place. Only whole-file problems (unreadable or empty file, unknown layout, missing columns)
raise ``ManifestError``, with a message naming the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from corpora.fields import (
    FieldError,
    id_key,
    is_blank,
    is_safe_component,
    normalise_id,
    parse_label,
    parse_media_path,
    parse_seconds,
    parse_text,
    parse_words,
    printable,
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
CSV_FIELD_LIMIT = 16 << 20  # characters per CSV field: a feature-length transcript fits

# Reject reasons: stable codes, documented in docs/reliability.md.
MISSING_FILE = "missing_file"
EMPTY_MEDIA = "empty_media"
UNREADABLE_MEDIA = "unreadable_media"
PATH_ESCAPES_ROOT = "path_escapes_root"
INVALID_PATH = "invalid_path"
DUPLICATE_CLIP_ID = "duplicate_clip_id"
INVALID_ID = "invalid_id"
INVALID_LABEL = "invalid_label"
INVALID_WINDOW = "invalid_window"
WINDOW_PAST_END = "window_past_end"
INVALID_TEXT = "invalid_text_encoding"
INVALID_WORDS = "invalid_words"
INVALID_SPLIT = "invalid_split"
INVALID_ROW = "invalid_row"
MISSING_VALUE = "missing_value"
UNEXPECTED_ERROR = "unexpected_error"  # a bug of ours, never a user's fault; the row is still kept

EXTRA_LABELS = ("label_T", "label_A", "label_V")


class Reject(Exception):
    """One input row is invalid; carries a reason code and a message naming the problem."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class RawClip:
    """A row as a layout reader found it, before validation: values are as read (any JSON type).

    ``problem`` is set by a reader that already knows the row is bad (a line that is not a JSON
    object, an id that would escape the root if used in a path); ``validate`` raises it first.
    """

    source: str
    clip_id: Any
    video_id: Any = None
    media: Any = None  # path relative to the dataset root, None/blank for a text-only clip
    start: Any = None
    end: Any = None
    text: Any = None
    words: Any = None
    label: Any = None
    split: Any = None
    extra_labels: dict[str, Any] = field(default_factory=dict)
    problem: Reject | None = None


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


# -- reading helpers ------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    """The whole file as text. UTF-8 (BOM optional) keeps undecodable bytes as lone surrogates so
    one bad row can be rejected alone; a UTF-16 BOM switches to UTF-16."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest: {exc}") from exc
    if not raw.strip():
        raise ManifestError(f"{path}: the manifest is empty")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", errors="surrogatepass")
    return raw.decode("utf-8-sig", errors="surrogateescape")


def _source(path: Path, line: int) -> str:
    return f"{printable(path.name)}:{line}"


def _csv_header(text: str, path: Path) -> list[str]:
    """Column names: quotes removed by the CSV parser (also after a space: ``a, "b"``),
    surrounding whitespace dropped."""
    try:
        first = next(csv.reader(io.StringIO(text, newline=""), skipinitialspace=True), [])
    except csv.Error as exc:
        raise ManifestError(f"{path}: the header line cannot be parsed as CSV: {exc}") from exc
    return [name.strip() for name in first]


def _read_csv(path: Path, required: set[str]) -> Iterator[tuple[str, dict[str, str] | Reject]]:
    """``(source, row)`` per data row; a row the CSV parser cannot split, or whose field count
    differs from the header's, comes as a ``Reject`` instead of a dict."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    text = _read_text(path)
    header = _csv_header(text, path)
    missing = required - set(header)
    if missing:
        raise ManifestError(f"{path}: missing columns {sorted(missing)} (has {header})")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _source(path, reader.line_num), Reject(INVALID_ROW, f"{_source(path, reader.line_num)}: {exc}")
            continue
        source = _source(path, reader.line_num)
        if not values:  # a blank line is not a row
            continue
        if len(values) != len(header):
            yield source, Reject(INVALID_ROW, f"{source}: {len(values)} fields, the header has {len(header)}")
            continue
        yield source, dict(zip(header, values))


_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # JSON text never holds a raw CR or LF, so these are line ends


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any] | Reject]]:
    """``(source, object)`` per non-blank line; a line that is not a JSON object is a ``Reject``."""
    for i, line in enumerate(_LINE_BREAK.split(_read_text(path)), start=1):
        if not line.strip():
            continue
        source = _source(path, i)
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            yield source, Reject(INVALID_ROW, f"{source}: not valid JSON: {str(exc)[:200]}")
            continue
        if not isinstance(row, dict):
            yield source, Reject(INVALID_ROW, f"{source}: a row must be a JSON object, not {type(row).__name__}")
            continue
        yield source, row


def _find_media(directory: Path, stem: str, root: Path) -> str | None:
    """The first file (by name) in ``directory`` named ``stem.<ext>``, relative to ``root``:
    an exact name match, never a glob, so ids with ``*`` or ``[`` cannot pick another file."""
    try:
        names = sorted(p.name for p in directory.iterdir() if p.stem == stem)
    except OSError:
        return None
    return str((directory / names[0]).relative_to(root)) if names else None


# -- layouts --------------------------------------------------------------------------------
MANIFEST_COLUMNS = {"clip_id", "media", "text", "label", "split"}


def read_manifest(path: Path) -> Iterator[RawClip]:
    """Generic CSV/JSONL: clip_id, media, [start, end], text, [words], label, split, [video_id]."""
    is_jsonl = path.suffix.lower() == ".jsonl"
    rows = _read_jsonl(path) if is_jsonl else _read_csv(path, MANIFEST_COLUMNS)
    for source, row in rows:
        if isinstance(row, Reject):
            yield RawClip(source=source, clip_id=None, problem=row)
            continue
        missing = sorted(MANIFEST_COLUMNS - row.keys())
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
            problem=problem,
        )


MMSA_COLUMNS = {"video_id", "clip_id", "text", "label", "mode"}


def read_mmsa(path: Path) -> Iterator[RawClip]:
    """MMSA ``label.csv`` (+ ``Raw/<video_id>/<clip_id>.mp4``); no ``Raw/`` folder means text only.

    ``clip_id`` becomes ``<video_id>_<clip_id>`` (the MMSA convention) unless it already is.
    """
    label_csv = path / "label.csv" if path.is_dir() else path
    root = label_csv.parent
    raw_dir = root / "Raw"
    has_raw = raw_dir.is_dir()
    for source, row in _read_csv(label_csv, MMSA_COLUMNS):
        if isinstance(row, Reject):
            yield RawClip(source=source, clip_id=None, problem=row)
            continue
        vid, cid = row["video_id"].strip(), row["clip_id"].strip()
        clip = RawClip(
            source=source,
            clip_id=cid if cid.startswith(f"{vid}_") else f"{vid}_{cid}",
            video_id=vid,
            start=row.get("start"),
            end=row.get("end"),
            text=row["text"],
            label=row["label"],
            split=row["mode"],
            extra_labels={k: row.get(k) for k in EXTRA_LABELS},
        )
        if has_raw:
            if not (is_safe_component(vid) and is_safe_component(cid)):
                clip.problem = _unsafe_id(source, vid, cid)
            else:
                clip.media = _find_media(raw_dir / vid, cid, root) or f"Raw/{vid}/{cid}.mp4"
        yield clip


def _unsafe_id(source: str, *ids: str) -> Reject:
    shown = ", ".join(repr(printable(i)) for i in ids)
    return Reject(PATH_ESCAPES_ROOT, f"{source}: id {shown} cannot name a file inside the dataset root")


def read_mosi(root: Path, folds: Path | None = None) -> Iterator[RawClip]:
    """CMU-MOSI layout: ``Video/Full/<vid>.*``, ``segments.csv``, ``Transcript/Segmented/<vid>.annotprocessed``,
    ``folds.csv`` (video_id, split), optional ``Transcript/Words/<vid>.json``.

    A video id is checked to be one safe path component before any file is built from it; a
    transcript or words file that cannot be read or parsed rejects that video's rows.
    """
    folds_path = folds or root / "folds.csv"
    if not folds_path.exists():
        raise ManifestError(f"{root}: CMU-MOSI layout needs a folds file (video_id,split) at {folds_path}")
    split_of = {
        row["video_id"].strip(): row["split"]
        for _, row in _read_csv(folds_path, {"video_id", "split"})
        if not isinstance(row, Reject)
    }
    per_video: dict[str, tuple[dict[str, str], dict[str, Any], str | None] | Reject] = {}
    for source, row in _read_csv(root / "segments.csv", {"video_id", "segment_id", "start", "end", "label"}):
        if isinstance(row, Reject):
            yield RawClip(source=source, clip_id=None, problem=row)
            continue
        vid, seg = row["video_id"].strip(), row["segment_id"].strip()
        clip = RawClip(source=source, clip_id=f"{vid}_{seg}", video_id=vid, start=row["start"], end=row["end"],
                       label=row["label"], split=split_of.get(vid, ""))
        if not is_safe_component(vid):
            clip.problem = _unsafe_id(source, vid)
            yield clip
            continue
        if vid not in per_video:
            per_video[vid] = _mosi_video(root, vid)
        found = per_video[vid]
        if isinstance(found, Reject):
            clip.problem = Reject(found.reason, f"clip {clip.clip_id!r}: {found}")
        else:
            texts, words, media = found
            clip.text, clip.words = texts.get(seg, ""), words.get(seg)
            clip.media = media or f"Video/Full/{vid}.mp4"
        yield clip


def _mosi_video(root: Path, vid: str) -> tuple[dict[str, str], dict[str, Any], str | None] | Reject:
    """One MOSI video's segment transcripts, word timings and media path, or why they are unusable."""
    transcript = root / "Transcript" / "Segmented" / f"{vid}.annotprocessed"
    words_path = root / "Transcript" / "Words" / f"{vid}.json"
    try:
        texts = _read_annotprocessed(transcript) if transcript.exists() else {}
        words = json.loads(words_path.read_bytes()) if words_path.exists() else {}
    except OSError as exc:
        return Reject(INVALID_WORDS, f"cannot read the transcript of video {vid!r}: {exc}")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return Reject(INVALID_WORDS, f"{words_path.relative_to(root)} is not valid JSON: {str(exc)[:200]}")
    if not isinstance(words, dict):
        return Reject(INVALID_WORDS, f"{words_path.relative_to(root)} is not an object of segment -> words")
    return texts, words, _find_media(root / "Video" / "Full", vid, root)


def _read_annotprocessed(path: Path) -> dict[str, str]:
    out = {}
    for line in _LINE_BREAK.split(path.read_bytes().decode("utf-8-sig", errors="surrogateescape")):
        if "_DELIM_" in line:
            seg, text = line.split("_DELIM_", 1)
            out[seg.strip()] = text.strip()
    return out


def detect_layout(path: Path) -> str:
    """Which reader a dataset path needs: a file by its header (or ``.jsonl`` suffix, any case),
    a folder by the files it holds."""
    if path.is_file():
        if path.suffix.lower() == ".jsonl":
            return "manifest"
        header = set(_csv_header(_read_text(path), path))
        if "media" in header:
            return "manifest"
        if MMSA_COLUMNS <= header:
            return "mmsa"
        raise ManifestError(
            f"{path}: cannot tell the layout from the header {sorted(header)}: a manifest needs "
            f"{sorted(MANIFEST_COLUMNS)}, an MMSA label file {sorted(MMSA_COLUMNS)}"
        )
    if (path / "label.csv").exists():
        return "mmsa"
    if (path / "segments.csv").exists():
        return "mosi"
    if (path / "manifest.csv").exists() or (path / "manifest.jsonl").exists():
        return "manifest"
    raise ManifestError(f"{path}: cannot tell the dataset layout (no label.csv, segments.csv or manifest.*)")


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
        except Exception as exc:  # noqa: BLE001 - a bug must not cost the batch; the row is kept as a reject
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
