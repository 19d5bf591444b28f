"""Layout readers: find a dataset's rows and media files (generic CSV/JSONL manifest, MMSA, CMU-MOSI)
without judging their values; ``corpora.ingest.validate`` does that. A row a reader already knows to
be bad (unparseable, an id that would build a path outside the root) carries its ``Reject``."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corpora.fields import (
    is_safe_component,
    printable,
)
from corpora.rows import (
    EXTRA_LABELS,
    INVALID_ROW,
    INVALID_WORDS,
    MISSING_VALUE,
    PATH_ESCAPES_ROOT,
    RawClip,
    Reject,
)
from store.errors import ManifestError

CSV_FIELD_LIMIT = 16 << 20  # characters per CSV field: a feature-length transcript fits


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
