"""Ingest a dataset (generic manifest, MMSA, CMU-MOSI layout) into a validated clip table.

Every input row ends either in the clip table or in the rejects table with a named reason;
a whole-manifest problem (unknown layout, missing columns) raises ``ManifestError``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import pyarrow as pa

from features.probe import probe_media
from store import schema
from store.errors import CorruptMediaError, ManifestError
from store.fingerprint import clip_fingerprint, media_fingerprint

Layout = Literal["auto", "manifest", "mmsa", "mosi"]
SPLITS = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "test": "test"}
WINDOW_TOLERANCE_S = 0.05  # containers round durations; a window this far past the end is fine
SECONDS_PER_WORD = 0.4  # duration estimate for a text-only clip with no times at all

# Reject reasons: stable codes, documented in docs/reliability.md.
MISSING_FILE = "missing_file"
EMPTY_MEDIA = "empty_media"
UNREADABLE_MEDIA = "unreadable_media"
PATH_ESCAPES_ROOT = "path_escapes_root"
DUPLICATE_CLIP_ID = "duplicate_clip_id"
INVALID_LABEL = "invalid_label"
INVALID_WINDOW = "invalid_window"
WINDOW_PAST_END = "window_past_end"
INVALID_TEXT = "invalid_text_encoding"
INVALID_WORDS = "invalid_words"
INVALID_SPLIT = "invalid_split"
MISSING_VALUE = "missing_value"


class Reject(Exception):
    """One input row is invalid; carries a reason code and a message naming the problem."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class RawClip:
    """A row as a layout reader found it, before validation."""

    source: str
    clip_id: str
    video_id: str
    media: str | None  # path relative to the dataset root, None for a text-only clip
    start: float | None
    end: float | None
    text: str
    words: Any
    label: Any
    split: str
    extra_labels: dict[str, Any] = field(default_factory=dict)


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
def _decode(raw: bytes) -> str:
    """Decode keeping invalid bytes as lone surrogates, so one bad row can be rejected alone."""
    return raw.decode("utf-8-sig", errors="surrogateescape")


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _read_csv(path: Path, required: set[str]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(_decode(path.read_bytes()), newline=""))
    missing = required - set(reader.fieldnames or [])
    if missing:
        raise ManifestError(f"{path}: missing columns {sorted(missing)} (has {reader.fieldnames})")
    for i, row in enumerate(reader, start=2):  # line 1 is the header
        yield i, {k: (v if v is not None else "") for k, v in row.items() if k is not None}


def _read_jsonl(path: Path, required: set[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, line in enumerate(_decode(path.read_bytes()).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}:{i}: not valid JSON: {exc}") from exc
        missing = required - set(row)
        if missing:
            raise ManifestError(f"{path}:{i}: missing fields {sorted(missing)}")
        yield i, row


def _opt_float(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return float(value)


# -- layouts --------------------------------------------------------------------------------
MANIFEST_COLUMNS = {"clip_id", "media", "text", "label", "split"}


def read_manifest(path: Path) -> Iterator[RawClip]:
    """Generic CSV/JSONL: clip_id, media, [start, end], text, [words], label, split, [video_id]."""
    rows = _read_jsonl(path, MANIFEST_COLUMNS) if path.suffix == ".jsonl" else _read_csv(path, MANIFEST_COLUMNS)
    for line, row in rows:
        clip_id = str(row["clip_id"])
        yield RawClip(
            source=f"{path.name}:{line}",
            clip_id=clip_id,
            video_id=str(row.get("video_id") or clip_id),
            media=(str(row["media"]) or None) if row.get("media") else None,
            start=row.get("start"),
            end=row.get("end"),
            text=row["text"],
            words=row.get("words"),
            label=row["label"],
            split=str(row["split"]),
            extra_labels={k: row.get(k) for k in ("label_T", "label_A", "label_V")},
        )


MMSA_COLUMNS = {"video_id", "clip_id", "text", "label", "mode"}


def read_mmsa(path: Path) -> Iterator[RawClip]:
    """MMSA ``label.csv`` (+ ``Raw/<video_id>/<clip_id>.mp4``); no ``Raw/`` folder means text only.

    ``clip_id`` becomes ``<video_id>_<clip_id>`` (the MMSA convention) unless it already is.
    """
    label_csv = path / "label.csv" if path.is_dir() else path
    raw_dir = label_csv.parent / "Raw"
    for line, row in _read_csv(label_csv, MMSA_COLUMNS):
        vid, cid = row["video_id"], row["clip_id"]
        media = None
        if raw_dir.is_dir():
            found = sorted((raw_dir / vid).glob(f"{cid}.*")) if (raw_dir / vid).is_dir() else []
            media = str(found[0].relative_to(label_csv.parent)) if found else f"Raw/{vid}/{cid}.mp4"
        yield RawClip(
            source=f"{label_csv.name}:{line}",
            clip_id=cid if cid.startswith(f"{vid}_") else f"{vid}_{cid}",
            video_id=vid,
            media=media,
            start=row.get("start"),
            end=row.get("end"),
            text=row["text"],
            words=None,
            label=row["label"],
            split=row["mode"],
            extra_labels={k: row.get(k) for k in ("label_T", "label_A", "label_V")},
        )


def read_mosi(root: Path, folds: Path | None = None) -> Iterator[RawClip]:
    """CMU-MOSI layout: ``Video/Full/<vid>.*``, ``segments.csv``, ``Transcript/Segmented/<vid>.annotprocessed``,
    ``folds.csv`` (video_id, split), optional ``Transcript/Words/<vid>.json``."""
    folds_path = folds or root / "folds.csv"
    if not folds_path.exists():
        raise ManifestError(f"{root}: CMU-MOSI layout needs a folds file (video_id,split) at {folds_path}")
    split_of = {row["video_id"]: row["split"] for _, row in _read_csv(folds_path, {"video_id", "split"})}
    texts: dict[str, dict[str, str]] = {}
    words: dict[str, dict[str, Any]] = {}
    for line, row in _read_csv(root / "segments.csv", {"video_id", "segment_id", "start", "end", "label"}):
        vid, seg = row["video_id"], row["segment_id"]
        if vid not in texts:
            texts[vid] = _read_annotprocessed(root / "Transcript" / "Segmented" / f"{vid}.annotprocessed")
            wpath = root / "Transcript" / "Words" / f"{vid}.json"
            words[vid] = json.loads(wpath.read_text()) if wpath.exists() else {}
        found = sorted((root / "Video" / "Full").glob(f"{vid}.*"))
        yield RawClip(
            source=f"segments.csv:{line}",
            clip_id=f"{vid}_{seg}",
            video_id=vid,
            media=str(found[0].relative_to(root)) if found else f"Video/Full/{vid}.mp4",
            start=row["start"],
            end=row["end"],
            text=texts[vid].get(seg, ""),
            words=words[vid].get(seg),
            label=row["label"],
            split=split_of.get(vid, ""),
        )


def _read_annotprocessed(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out = {}
    for line in _decode(path.read_bytes()).splitlines():
        if "_DELIM_" in line:
            seg, text = line.split("_DELIM_", 1)
            out[seg.strip()] = text.strip()
    return out


def detect_layout(path: Path) -> str:
    if path.is_file():
        if path.suffix == ".jsonl":
            return "manifest"
        header = _decode(path.read_bytes()[:4096]).splitlines()[0].split(",")
        return "manifest" if "media" in header else "mmsa"
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


def _parse_words(value: Any, clip_id: str) -> list[dict[str, Any]] | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        items = json.loads(value) if isinstance(value, str) else value
        words = [{"word": str(w["word"]), "start": float(w["start"]), "end": float(w["end"])} for w in items]
    except (ValueError, TypeError, KeyError) as exc:
        raise Reject(INVALID_WORDS, f"clip {clip_id!r}: word timings are not a list of word/start/end: {exc}")
    if any(not (math.isfinite(w["start"]) and math.isfinite(w["end"])) or w["end"] < w["start"] for w in words):
        raise Reject(INVALID_WORDS, f"clip {clip_id!r}: a word ends before it starts or has no finite time")
    return words or None


def validate(raw: RawClip, root: Path) -> dict[str, Any]:
    """Turn a RawClip into a clip-table row or raise ``Reject``."""
    cid = raw.clip_id
    if not cid:
        raise Reject(MISSING_VALUE, f"{raw.source}: empty clip_id")
    text = raw.text if isinstance(raw.text, str) else ("" if raw.text is None else str(raw.text))
    if _has_bad_bytes(text) or _has_bad_bytes(cid):
        raise Reject(INVALID_TEXT, f"clip {cid!r}: transcript is not valid UTF-8")
    try:
        label = float(raw.label)
    except (TypeError, ValueError):
        raise Reject(INVALID_LABEL, f"clip {cid!r}: label {raw.label!r} is not a number") from None
    if not math.isfinite(label) or not -3.0 <= label <= 3.0:
        raise Reject(INVALID_LABEL, f"clip {cid!r}: label {label} is NaN or outside [-3, 3]")
    split = SPLITS.get(str(raw.split).strip().lower())
    if split is None:
        raise Reject(INVALID_SPLIT, f"clip {cid!r}: split {raw.split!r} is not train/valid/test")
    try:
        start, end = _opt_float(raw.start), _opt_float(raw.end)
    except ValueError:
        raise Reject(INVALID_WINDOW, f"clip {cid!r}: start/end {raw.start!r}/{raw.end!r} are not numbers") from None
    if start is not None and start < 0:
        raise Reject(INVALID_WINDOW, f"clip {cid!r}: start {start} is negative")
    if start is not None and end is not None and start >= end:
        raise Reject(INVALID_WINDOW, f"clip {cid!r}: start {start} >= end {end}")
    words = _parse_words(raw.words, cid)
    extra = {}
    for k, v in raw.extra_labels.items():
        try:
            extra[k] = _opt_float(v)
        except ValueError:
            raise Reject(INVALID_LABEL, f"clip {cid!r}: {k} {v!r} is not a number") from None

    media_uri = media_fp = None
    has_video = has_audio = False
    if raw.media:
        path = _resolve_media(root, raw.media, cid)
        if not path.exists():
            raise Reject(MISSING_FILE, f"clip {cid!r}: media file {raw.media!r} does not exist")
        if path.stat().st_size == 0:
            raise Reject(EMPTY_MEDIA, f"clip {cid!r}: media file {raw.media!r} is empty (0 bytes)")
        try:
            info = probe_media(path, clip_id=cid)
        except CorruptMediaError as exc:
            raise Reject(UNREADABLE_MEDIA, str(exc)) from None
        media_end = info.duration
        if (start or 0.0) >= media_end or (end is not None and end > media_end + WINDOW_TOLERANCE_S):
            raise Reject(
                WINDOW_PAST_END,
                f"clip {cid!r}: window {start or 0.0}-{end} s is past the end of {raw.media!r} ({media_end:.2f} s)",
            )
        end = min(end, media_end) if end is not None else None
        duration = (end if end is not None else media_end) - (start or 0.0)
        media_uri, media_fp = str(path.resolve()), media_fingerprint(path)
        has_video, has_audio = bool(info.video), bool(info.audio)
    elif start is not None and end is not None:
        duration = end - start
    elif words:
        duration = max(w["end"] for w in words)
    else:
        duration = max(1, len(text.split())) * SECONDS_PER_WORD
    row = {
        "clip_id": cid,
        "video_id": raw.video_id,
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
    """Read and validate a dataset; returns the clip table and the rejects table."""
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
    rows, rejects, seen = [], [], set()
    for raw in readers[kind]():
        try:
            if raw.clip_id in seen:
                raise Reject(DUPLICATE_CLIP_ID, f"clip {raw.clip_id!r}: duplicate clip_id (first occurrence kept)")
            row = validate(raw, root)
            seen.add(raw.clip_id)
            rows.append(row)
        except Reject as rej:
            rejects.append({"source": raw.source, "clip_id": raw.clip_id, "reason": rej.reason, "message": str(rej)})
    return IngestResult(
        clips=pa.Table.from_pylist(rows, schema=schema.CLIPS),
        rejects=pa.Table.from_pylist(rejects, schema=schema.REJECTS),
        layout=kind,
    )


def _manifest_file(path: Path) -> Path:
    if path.is_file():
        return path
    for name in ("manifest.csv", "manifest.jsonl"):
        if (path / name).exists():
            return path / name
    raise ManifestError(f"{path}: no manifest.csv or manifest.jsonl")
