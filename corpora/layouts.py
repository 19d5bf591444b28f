"""Layout readers: find a dataset's rows and media files (generic CSV/JSONL manifest, MMSA, CMU-MOSI)
without judging their values; ``corpora.ingest.validate`` does that. A row a reader already knows to
be bad (unparseable, an id that would build a path outside the root) carries its ``Reject``.

The ``media`` layout reads new, unlabeled media (files, folders, transcripts alone) for scoring: it
pairs media with their transcripts (``corpora.sidecars``), probes each media file once for its
duration and cuts it into segments (``corpora.segments``), one row each."""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from corpora.fields import (
    DuplicateKeyError,
    FieldError,
    duplicates,
    id_key,
    is_safe_component,
    load_json,
    parse_class,
    parse_timestamp,
    printable,
    repair_text,
)
from corpora.rows import (
    EXTRA_LABELS,
    INVALID_ID,
    INVALID_LABEL,
    INVALID_ROW,
    INVALID_SPLIT,
    INVALID_TEXT,
    INVALID_WINDOW,
    INVALID_WORDS,
    MISSING_FILE,
    MISSING_VALUE,
    PATH_ESCAPES_ROOT,
    UNEXPECTED_ERROR,
    UNREADABLE_MEDIA,
    RawClip,
    Reject,
    media_file_problem,
)
from corpora.segments import Segment, SegmentConfig, segment_media
from corpora.sidecars import SidecarError, read_transcript, sidecar_candidates, transcript_format
from features.media.probe import probe_media
from store.errors import CorruptMediaError, ManifestError
from store.featurestore import MediaSource
from store.fingerprint import files_sha256
from store.schema import CLASS_LABELS

log = logging.getLogger(__name__)

CSV_FIELD_LIMIT = 16 << 20  # characters per CSV field: a feature-length transcript fits
AUDIO_SUFFIXES = frozenset({".mp3", ".wav", ".flac", ".ogg", ".m4a", ".opus"})  # audio-only media
MEDIA_SUFFIXES = AUDIO_SUFFIXES | {".mp4", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m4v"}  # media, found by name


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
    surrounding whitespace dropped. A name given twice is a ManifestError: a row would keep one of
    its two values, silently (unnamed columns, as trailing commas make, are never read and may repeat)."""
    try:
        first = next(csv.reader(io.StringIO(text, newline=""), skipinitialspace=True), [])
    except csv.Error as exc:
        raise ManifestError(f"{path}: the header line cannot be parsed as CSV: {exc}") from exc
    header = [name.strip() for name in first]
    problem = duplicates("column", (name for name in header if name))
    if problem:
        raise ManifestError(f"{path}: {problem}")
    return header


def _read_csv(
    path: Path, required: set[str], alternatives: dict[str, frozenset[str]] | None = None
) -> Iterator[tuple[str, dict[str, str] | Reject]]:
    """``(source, row)`` per data row; a row the CSV parser cannot split, or whose field count
    differs from the header's, comes as a ``Reject`` instead of a dict. The header must hold every
    ``required`` column, or one of its ``alternatives`` (a class label for ``label``)."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    text = _read_text(path)
    header = _csv_header(text, path)
    alternatives = alternatives or {}
    missing = {c for c in required - set(header) if not alternatives.get(c, frozenset()) & set(header)}
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
    """``(source, object)`` per non-blank line; a line that is not a JSON object, or whose objects
    name a key twice, is a ``Reject``."""
    for i, line in enumerate(_LINE_BREAK.split(_read_text(path)), start=1):
        if not line.strip():
            continue
        source = _source(path, i)
        try:
            row = load_json(line)
        except DuplicateKeyError as exc:
            yield source, Reject(INVALID_ROW, f"{source}: {exc}")
            continue
        except (json.JSONDecodeError, RecursionError) as exc:
            yield source, Reject(INVALID_ROW, f"{source}: not valid JSON: {str(exc)[:200]}")
            continue
        if not isinstance(row, dict):
            yield source, Reject(INVALID_ROW, f"{source}: a row must be a JSON object, not {type(row).__name__}")
            continue
        yield source, row


def _media_names(folder: Path) -> dict[str, str]:
    """Stem -> name of the media files in ``folder`` (``MEDIA_SUFFIXES``, any case; none if it cannot
    be listed): other files, such as an OpenFace ``.csv`` next to a clip, are never its media. Of
    several with one stem, a video comes before an audio-only file (audio extracted next to its
    video must not cost the clip its frames), then the first by name."""
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return {}
    found: dict[str, str] = {}
    for name in sorted(names, key=lambda n: (os.path.splitext(n)[1].lower() in AUDIO_SUFFIXES, n)):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in MEDIA_SUFFIXES:
            found.setdefault(stem, name)
    return found


def _find_media(directory: Path, stem: str, root: Path) -> str | None:
    """The media file of ``stem`` in ``directory`` (``_media_names``), relative to ``root``: an exact
    name match, never a glob, so ids with ``*`` or ``[`` cannot pick another file."""
    name = _media_names(directory).get(stem)
    return str((directory / name).relative_to(root)) if name else None


# -- layouts --------------------------------------------------------------------------------
MANIFEST_COLUMNS = {"clip_id", "media", "text", "label", "split"}
SCORE_ALTERNATIVES = {"label": frozenset(CLASS_LABELS)}  # a class-only dataset (IEMOCAP) needs no score column


def read_manifest(path: Path) -> Iterator[RawClip]:
    """Generic CSV/JSONL: clip_id, media, [start, end], text, [words], label, split, [video_id],
    [label_T/A/V], [label_emotion, label_sentiment]. A dataset with class labels only (IEMOCAP)
    may leave out the ``label`` column (or its values)."""
    is_jsonl = path.suffix.lower() == ".jsonl"
    rows = _read_jsonl(path) if is_jsonl else _read_csv(path, MANIFEST_COLUMNS, SCORE_ALTERNATIVES)
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
        words = load_json(words_path.read_bytes()) if words_path.exists() else {}
    except OSError as exc:
        return Reject(INVALID_WORDS, f"cannot read the transcript of video {vid!r}: {exc}")
    except DuplicateKeyError as exc:
        return Reject(INVALID_WORDS, f"{words_path.relative_to(root)}: {exc}")
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


# -- MELD ------------------------------------------------------------------------------------
MELD_COLUMNS = {"Utterance", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "StartTime", "EndTime"}
MELD_EMOTIONS = frozenset({"neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"})
MELD_SENTIMENTS = frozenset({"negative", "neutral", "positive"})
MELD_PARTS = ("train", "dev", "test")  # MELD's own split names: clip id prefixes, file order
# Where the MELD.Raw tarballs unpack each part's clips dia{D}_utt{U}.mp4 (next to the CSVs)
MELD_MEDIA_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
_MELD_PART_OF = {"train": "train", "dev": "dev", "val": "dev", "valid": "dev", "test": "test"}
_MELD_PART_IN_NAME = re.compile(r"(?<![a-z])(train|dev|valid|val|test)(?![a-z])")
_MELD_CSV_GLOB = "*_sent_emo.csv"  # train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv
_MELD_STEM = re.compile(r"dia[0-9]+_utt[0-9]+")
_UINT = re.compile(r"[0-9]+")


def meld_files(path: Path) -> list[Path]:
    """The MELD CSVs a dataset path names: the file itself, or a folder's ``*_sent_emo.csv``
    (train, dev, test, then others by name)."""
    if path.is_file():
        return [path]
    order = {part: i for i, part in enumerate(MELD_PARTS)}
    found = [p for p in path.glob(_MELD_CSV_GLOB) if p.is_file()]
    return sorted(found, key=lambda p: (order.get(_meld_part(p) or "", len(order)), p.name))


def _meld_part(path: Path) -> str | None:
    """MELD's part (train/dev/test) a file name says (``dev_sent_emo.csv`` -> dev), or None."""
    match = _MELD_PART_IN_NAME.search(path.stem.lower())
    return _MELD_PART_OF[match.group(1)] if match else None


class _MeldMedia:
    """Where one MELD CSV's clips are: per part, MELD.Raw's folder next to the CSV
    (``MELD_MEDIA_DIRS``), else the CSV's own folder when it holds clips, the CSV is of one part
    (its file name's) and no other MELD CSV is there: loose clips of two parts in one folder cannot
    tell whose ``dia0_utt0.mp4`` is whose. No folder: text only. Each folder is listed once (MELD
    has ~10,000 clips per part)."""

    def __init__(self, csv_path: Path, root: Path, file_part: str | None) -> None:
        self.folder = csv_path.parent
        self.root = root
        others = [p for p in self.folder.glob(_MELD_CSV_GLOB) if p.name != csv_path.name]
        self.own_part = None if others else file_part
        self.found: dict[str, tuple[Path, dict[str, str]] | None] = {}

    def _index(self, folder: Path) -> dict[str, str]:
        return {stem: name for stem, name in _media_names(folder).items() if _MELD_STEM.fullmatch(stem)}

    def folder_of(self, part: str) -> tuple[Path, dict[str, str]] | None:
        if part not in self.found:
            sub = self.folder / MELD_MEDIA_DIRS[part]
            if sub.is_dir():
                self.found[part] = (sub, self._index(sub))
            else:
                own = self._index(self.folder) if part == self.own_part else {}
                self.found[part] = (self.folder, own) if own else None
        return self.found[part]

    def media(self, part: str, stem: str) -> str | None:
        """The clip's path relative to the root; a clip missing from a media folder gets the path it
        should have (ingest rejects it as ``missing_file``); None: this part has no media."""
        found = self.folder_of(part)
        if found is None:
            return None
        folder, names = found
        return str((folder / names.get(stem, f"{stem}.mp4")).relative_to(self.root))


def read_meld(path: Path) -> Iterator[RawClip]:
    """MELD's official CSVs (``train_sent_emo.csv``, ``dev_sent_emo.csv``, ``test_sent_emo.csv``:
    ``Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season, Episode,
    StartTime, EndTime``), a file or a folder of them, with clips ``dia{D}_utt{U}.mp4`` when present.

    - ids: ``<part>_dia{D}_utt{U}``, video ``<part>_dia{D}`` (the dialogue), part = train/dev/test:
      MELD numbers dialogues per part, so ``dia0_utt0`` exists in each and needs the prefix to be unique;
    - split: a ``split`` or ``mode`` column when there is one, else the file name (dev -> valid);
    - labels: ``label_emotion`` (7 classes) and ``label_sentiment`` (3 classes); no score (MELD has
      none; ``label`` stays null);
    - text: mojibake repaired (``corpora.fields.repair_text``), the text as shipped kept in
      ``text_original`` when that changed it;
    - times: StartTime/EndTime (``H:MM:SS,mmm`` in the episode) must parse and be ordered; a
      text-only clip keeps them as its span (its duration), a clip with media is the whole file.
    """
    root = path if path.is_dir() else path.parent
    files = meld_files(path)
    if not files:
        raise ManifestError(f"{path}: no MELD CSV ({_MELD_CSV_GLOB}) in this folder")
    for csv_path in files:
        yield from _read_meld_csv(csv_path, root)


def _read_meld_csv(csv_path: Path, root: Path) -> Iterator[RawClip]:
    """One MELD CSV's rows; its split comes from a split/mode column, else from its file name."""
    file_part = _meld_part(csv_path)
    media = _MeldMedia(csv_path, root, file_part)
    for source, row in _read_csv(csv_path, MELD_COLUMNS):
        if isinstance(row, Reject):
            yield RawClip(source=source, clip_id=None, problem=row)
            continue
        column = next((c for c in ("split", "mode") if c in row), None)
        if column is None and file_part is None:  # a whole-file problem: found on its first row
            raise ManifestError(
                f"{csv_path}: cannot tell the MELD split: the file name names none of train/dev/test "
                "and there is no split or mode column"
            )
        yield _meld_clip(source, row, row[column] if column else file_part, media)


def _meld_clip(source: str, row: dict[str, str], split: str | None, media: _MeldMedia) -> RawClip:
    """One MELD row as a ``RawClip``; the first problem found (id, split, times, classes) rejects it."""
    d, u = row["Dialogue_ID"].strip(), row["Utterance_ID"].strip()
    stem = f"dia{int(d)}_utt{int(u)}" if _UINT.fullmatch(d) and _UINT.fullmatch(u) else f"dia{d}_utt{u}"
    part = _MELD_PART_OF.get(split.strip().lower()) if split is not None else None
    shipped = row["Utterance"]
    repaired = repair_text(shipped)
    clip = RawClip(
        source=source,
        clip_id=f"{part}_{stem}" if part else stem,
        video_id=f"{part}_{stem.split('_utt')[0]}" if part else None,
        text=repaired,
        text_original=shipped if repaired != shipped else None,
        split=split,
    )
    if not (_UINT.fullmatch(d) and _UINT.fullmatch(u)):
        clip.problem = Reject(
            INVALID_ID, f"{source}: Dialogue_ID {printable(d)!r} / Utterance_ID {printable(u)!r} are not whole numbers"
        )
        return clip
    if part is None:
        clip.problem = Reject(INVALID_SPLIT, f"clip {clip.clip_id!r}: split {split!r} is not train/dev/test")
        return clip
    try:
        start = parse_timestamp(row["StartTime"], "StartTime", INVALID_WINDOW)
        end = parse_timestamp(row["EndTime"], "EndTime", INVALID_WINDOW)
        if start is None or end is None:
            raise FieldError(INVALID_WINDOW, "StartTime and EndTime are required")
        if start >= end:
            raise FieldError(INVALID_WINDOW, f"StartTime {row['StartTime']} is not before EndTime {row['EndTime']}")
        clip.classes = {
            "label_emotion": parse_class(row["Emotion"], "Emotion", INVALID_LABEL, MELD_EMOTIONS),
            "label_sentiment": parse_class(row["Sentiment"], "Sentiment", INVALID_LABEL, MELD_SENTIMENTS),
        }
        if None in clip.classes.values():
            raise FieldError(INVALID_LABEL, "Emotion and Sentiment are required")
    except FieldError as exc:
        clip.problem = Reject(exc.reason, f"clip {clip.clip_id!r}: {exc}")
        return clip
    clip.media = media.media(part, stem)
    if clip.media is None:  # text only: the utterance's span in the episode gives its duration
        clip.start, clip.end = start, end
    return clip


def detect_layout(path: Path) -> str:
    """Which reader a dataset path needs: a file by its header (or ``.jsonl`` suffix, any case),
    a folder by the files it holds."""
    if path.is_file():
        if path.suffix.lower() == ".jsonl":
            return "manifest"
        header = set(_csv_header(_read_text(path), path))
        if "media" in header:
            return "manifest"
        if MELD_COLUMNS <= header:
            return "meld"
        if MMSA_COLUMNS <= header:
            return "mmsa"
        raise ManifestError(
            f"{path}: cannot tell the layout from the header {sorted(header)}: a manifest needs "
            f"{sorted(MANIFEST_COLUMNS)}, an MMSA label file {sorted(MMSA_COLUMNS)}, "
            f"a MELD file {sorted(MELD_COLUMNS)}"
        )
    if (path / "label.csv").exists():
        return "mmsa"
    if (path / "segments.csv").exists():
        return "mosi"
    if (path / "manifest.csv").exists() or (path / "manifest.jsonl").exists():
        return "manifest"
    if any(path.glob(_MELD_CSV_GLOB)):
        return "meld"
    raise ManifestError(
        f"{path}: cannot tell the dataset layout (no label.csv, segments.csv, manifest.* or {_MELD_CSV_GLOB})"
    )


# -- media layout: new, unlabeled media to score ---------------------------------------------
PREDICT_SPLIT = "predict"  # the split of unlabeled clips (corpora.ingest.validate accepts no label there)


@dataclass(frozen=True)
class MediaInput:
    """One input of the media layout: a media file with its transcript (None: it has none), or a
    transcript alone (``media`` None). ``path`` is the file as given or as found in a given folder;
    ``rel`` the media path relative to the plan's root; ``problem`` set for a path that does not exist,
    which alone has no ``source`` (the file's real path and content hash, kept to give it its id again)."""

    path: Path
    video_id: str
    media: Path | None = None
    transcript: Path | None = None
    rel: str | None = None
    problem: Reject | None = None
    source: MediaSource | None = None


@dataclass(frozen=True)
class MediaPlan:
    """What ``read_media`` will read: ``root`` is the deepest folder holding every input file (real
    paths, symlinks resolved), so every media path is relative to it and never escapes it."""

    root: Path
    inputs: list[MediaInput]

    @property
    def sources(self) -> dict[str, MediaSource]:
        """video id -> source of every input file that exists: what a predict store records and
        passes back as ``plan_media``'s ``held``, so each file keeps its id in later runs."""
        return {i.video_id: i.source for i in self.inputs if i.source is not None}


def plan_media(
    paths: Sequence[str | os.PathLike[str]], held: Mapping[str, MediaSource] | None = None
) -> MediaPlan:
    """Expand the given files and folders into inputs, pair media with their transcripts.

    - A folder is scanned **recursively** (its files sorted by name, then its subfolders), skipping hidden names
      (``.git``, ``.DS_Store``) and symlinked folders (no loops); only media files
      (``MEDIA_SUFFIXES``) and transcripts (``corpora.sidecars.SUFFIXES``) are inputs there, other
      files are ignored. A file given by name is media unless it is a transcript, whatever its
      extension (the decoder decides).
    - A media file takes its transcript by ``corpora.sidecars.sidecar_candidates`` from its own
      folder; every candidate it has (also those of lower precedence) is consumed by it. A
      transcript no media input consumes is an input of its own, a text-only one.
    - Inputs keep the order of the given paths (folder contents sorted); a file reached twice (also
      through a symlink) is read once.
    - A given path that does not exist becomes an input with a ``missing_file`` problem (after the others).
    - ``video_id``: see ``_assign_ids``. ``held`` maps the ids a predict store already gives files
      to their sources (``FeatureStore.media_sources``); a file keeps its id there, and no other
      file takes it, so a rerun never replaces another file's predictions.
    """
    found: list[tuple[Path, bool]] = []  # (file, given by name)
    missing: list[Path] = []
    seen: set[str] = set()
    for given in map(Path, paths):
        if given.is_dir():
            files = [(f, False) for f in _scan(given)]
        elif given.is_file():
            files = [(given, True)]
        else:
            missing.append(given)
            continue
        for f, explicit in files:
            real = os.path.realpath(f)
            if real not in seen:
                seen.add(real)
                found.append((f, explicit))

    listings: dict[Path, list[str]] = {}

    def names_in(folder: Path) -> list[str]:
        if folder not in listings:
            try:
                listings[folder] = sorted(p.name for p in folder.iterdir() if p.is_file())
            except OSError:
                listings[folder] = []
        return listings[folder]

    is_media = {f: f.suffix.lower() in MEDIA_SUFFIXES or (explicit and transcript_format(f.name) is None)
                for f, explicit in found}
    transcript_of: dict[Path, Path | None] = {}
    consumed: set[str] = set()
    for f, _ in found:
        if is_media[f]:
            names = names_in(f.parent)
            stems = {Path(n).stem for n in names if Path(n).suffix.lower() in MEDIA_SUFFIXES} - {f.stem}
            candidates = sidecar_candidates(f, names, stems)
            transcript_of[f] = candidates[0] if candidates else None
            consumed.update(os.path.realpath(c) for c in candidates)

    kept = [(f, is_media[f]) for f, _ in found if is_media[f] or os.path.realpath(f) not in consumed]
    sources = [_media_source(f) for f, _ in kept]
    root = Path(os.path.commonpath([Path(s.path).parent for s in sources])) if sources else Path.cwd()
    names = [f.stem if media else (transcript_format(f.name) or (f.stem, ""))[0] for f, media in kept]
    gone = [(m.stem or m.name or "input", MediaSource(os.path.realpath(m))) for m in missing]
    ids = _assign_ids([*zip(names, sources), *gone], len(kept), held or {})
    inputs: list[MediaInput] = []
    for (f, media), source, vid in zip(kept, sources, ids):
        if media:
            rel = os.path.relpath(source.path, root)
            inputs.append(MediaInput(f, vid, media=f, transcript=transcript_of[f], rel=rel, source=source))
        else:
            inputs.append(MediaInput(f, vid, transcript=f, source=source))
    for m, vid in zip(missing, ids[len(kept):]):
        inputs.append(MediaInput(m, vid, problem=Reject(MISSING_FILE, f"{printable(str(m))}: does not exist")))
    return MediaPlan(root, inputs)


def _media_source(file: Path) -> MediaSource:
    """The file's real path and, for a regular file that can be read, the sha256 of its bytes (a FIFO
    is never read: it would block). Ingest hashes the media again by the same path: a cache hit."""
    real = os.path.realpath(file)
    try:
        digest = files_sha256([real]) if stat.S_ISREG(os.stat(real).st_mode) else None
    except OSError:  # unreadable: the input ends as its reject, its path still holds its id
        digest = None
    return MediaSource(real, digest)


def _assign_ids(wanted: Sequence[tuple[str, MediaSource]], files: int, held: Mapping[str, MediaSource]) -> list[str]:
    """The video id of each (name, source): the first ``files`` are input files, the rest paths that
    do not exist (no hash). Ids compare by ``id_key``; an id ``held`` gives one file never goes to another:

    1. a path ``held`` records keeps its id (a file changed in place is rescored in place);
    2. a file whose content a record has, where that record's file is gone, keeps that id (it moved);
    3. any other takes its name, or the first free of ``name~2``, ``name~3``, ..., in the order of
       the real paths (a folder's files before its subfolders'; missing paths last), so neither the
       order of the given paths nor a rerun decides which of two same-named files gets the bare name.
    """
    ids: dict[int, str] = {}
    claimed: set[str] = set()

    def give(i: int, vid: str) -> None:
        ids[i] = vid
        claimed.add(id_key(vid))

    by_path: dict[str, str] = {}
    for vid, source in sorted(held.items()):
        by_path.setdefault(source.path, vid)
    for i, (_, source) in enumerate(wanted):
        at_path = by_path.get(source.path)
        if at_path is not None and id_key(at_path) not in claimed:
            give(i, at_path)
    order = sorted(range(files), key=lambda i: _path_order(wanted[i][1].path))
    order += sorted(range(files, len(wanted)), key=lambda i: _path_order(wanted[i][1].path))
    moved = sorted(v for v, s in held.items() if s.sha256 and not os.path.lexists(s.path))
    for i in order:
        digest = wanted[i][1].sha256
        if i in ids or digest is None:
            continue
        same = next((v for v in moved if held[v].sha256 == digest and id_key(v) not in claimed), None)
        if same is not None:
            give(i, same)
    taken = {id_key(v) for v in held} | claimed
    for i in order:
        if i not in ids:
            ids[i] = _unique_id(wanted[i][0], taken)
    return [ids[i] for i in range(len(wanted))]


def _path_order(path: str) -> tuple[tuple[str, ...], str]:
    """Sort key of a real path that lists a folder's files before its subfolders' (as ``_scan`` does)."""
    p = Path(path)
    return p.parent.parts, p.name


def _scan(folder: Path) -> list[Path]:
    """Media and transcript files under ``folder``: recursive, sorted, hidden names and symlinked
    folders skipped. An entry named like one that is no regular file (a broken symlink, a FIFO) is
    kept, to end as a named reject rather than vanish."""
    out: list[Path] = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in MEDIA_SUFFIXES or transcript_format(name) is not None:
                path = Path(top) / name
                if not path.is_dir():
                    out.append(path)
    return out


def _unique_id(name: str, taken: set[str]) -> str:
    """``name``, or ``name~2``, ``name~3``, ...: the first not in ``taken`` (ids compare by
    ``id_key``), which it joins."""
    candidate, n = name, 1
    while id_key(candidate) in taken:
        n += 1
        candidate = f"{name}~{n}"
    taken.add(id_key(candidate))
    return candidate


def read_media(paths: Sequence[str | os.PathLike[str]], segment: SegmentConfig) -> Iterator[RawClip]:
    """The unlabeled clips (split ``predict``) of new media files, folders and transcripts (see
    ``plan_media``); their media paths are relative to ``plan_media(paths).root``."""
    return read_plan(plan_media(paths), segment)


def read_plan(plan: MediaPlan, config: SegmentConfig) -> Iterator[RawClip]:
    """One ``RawClip`` per segment of each input (``corpora.segments``): ``clip_id`` is
    ``<video_id>__<index:04d>``. An input that cannot be read (missing, empty or undecodable media,
    a bad transcript) gives one ``RawClip`` carrying its ``Reject``; a bug in reading one input
    rejects that input with ``unexpected_error``, the others go on."""
    for inp in plan.inputs:
        try:
            rows = _media_rows(inp, config)
        except Exception as exc:  # a bug of ours must not cost the other inputs
            log.exception("media layout: unexpected error on %s", printable(str(inp.path)))
            rows = [_problem(inp, Reject(UNEXPECTED_ERROR, f"{printable(str(inp.path))}: {type(exc).__name__}: {exc}"))]
        yield from rows


def _problem(inp: MediaInput, reject: Reject) -> RawClip:
    return RawClip(source=printable(str(inp.path)), clip_id=inp.video_id, video_id=inp.video_id, problem=reject)


def _media_rows(inp: MediaInput, config: SegmentConfig) -> list[RawClip]:
    shown = printable(str(inp.path))
    if inp.problem is not None:
        return [_problem(inp, inp.problem)]
    duration: float | None = None
    if inp.media is not None:
        try:
            problem = media_file_problem(inp.media, f"{shown}: media file")
            if problem is not None:
                return [_problem(inp, problem)]
            duration = probe_media(inp.media).duration
        except CorruptMediaError as exc:
            return [_problem(inp, Reject(UNREADABLE_MEDIA, str(exc)))]
        except OSError as exc:
            return [_problem(inp, Reject(UNREADABLE_MEDIA, f"{shown}: cannot be read: {exc}"))]
    transcript = None
    if inp.transcript is not None:
        try:
            transcript = read_transcript(inp.transcript)
        except SidecarError as exc:
            return [_problem(inp, exc)]
        for note in transcript.notes:
            log.warning("%s", note)
    if inp.media is None:
        assert transcript is not None
        if not transcript.text:
            return [_problem(inp, Reject(INVALID_TEXT, f"{shown}: the transcript has no text"))]
        if not transcript.timed:  # one text-only clip; ingest estimates its length from the word count
            return [_clip(inp, shown, Segment(0, 0.0, 0.0, transcript.text), timed=False)]
    segments = segment_media(transcript, duration, config)
    if inp.media is None:  # windows over a transcript alone: a window without text has nothing to score
        segments = [replace(s, index=i) for i, s in enumerate(s for s in segments if s.text)]
    return [_clip(inp, shown, s) for s in segments]


def _clip(inp: MediaInput, shown: str, seg: Segment, timed: bool = True) -> RawClip:
    words = [{"word": w.word, "start": w.start, "end": w.end} for w in seg.words] if seg.words else None
    return RawClip(
        source=f"{shown} [{seg.start:.2f}-{seg.end:.2f} s]" if timed else shown,
        clip_id=f"{inp.video_id}__{seg.index:04d}",
        video_id=inp.video_id,
        media=inp.rel,
        start=seg.start if timed else None,
        end=seg.end if timed else None,
        text=seg.text,
        words=words,
        split=PREDICT_SPLIT,
    )
