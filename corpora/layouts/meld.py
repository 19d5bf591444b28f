"""The MELD layout: MELD's official CSVs of utterances with emotion and sentiment classes, and the
MELD.Raw clip folders next to them when present."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from corpora.fields import FieldError, parse_class, parse_timestamp, printable, repair_text
from corpora.layouts.media_files import media_names
from corpora.layouts.tables import read_csv
from corpora.rows import INVALID_ID, INVALID_LABEL, INVALID_SPLIT, INVALID_WINDOW, RawClip, Reject
from store.errors import ManifestError

MELD_COLUMNS = {"Utterance", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "StartTime", "EndTime"}
MELD_EMOTIONS = frozenset({"neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"})
MELD_SENTIMENTS = frozenset({"negative", "neutral", "positive"})
MELD_PARTS = ("train", "dev", "test")  # MELD's own split names: clip id prefixes, file order
# Where the MELD.Raw tarballs unpack each part's clips dia{D}_utt{U}.mp4 (next to the CSVs)
MELD_MEDIA_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
_MELD_PART_OF = {"train": "train", "dev": "dev", "val": "dev", "valid": "dev", "test": "test"}
_MELD_PART_IN_NAME = re.compile(r"(?<![a-z])(train|dev|valid|val|test)(?![a-z])")
MELD_CSV_GLOB = "*_sent_emo.csv"  # train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv
_MELD_STEM = re.compile(r"dia[0-9]+_utt[0-9]+")
_UINT = re.compile(r"[0-9]+")


def meld_files(path: Path) -> list[Path]:
    """The MELD CSVs a dataset path names: the file itself, or a folder's ``*_sent_emo.csv``
    (train, dev, test, then others by name)."""
    if path.is_file():
        return [path]
    order = {part: i for i, part in enumerate(MELD_PARTS)}
    found = [p for p in path.glob(MELD_CSV_GLOB) if p.is_file()]
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
        others = [p for p in self.folder.glob(MELD_CSV_GLOB) if p.name != csv_path.name]
        self.own_part = None if others else file_part
        self.found: dict[str, tuple[Path, dict[str, str]] | None] = {}

    def _index(self, folder: Path) -> dict[str, str]:
        return {stem: name for stem, name in media_names(folder).items() if _MELD_STEM.fullmatch(stem)}

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
        raise ManifestError(f"{path}: no MELD CSV ({MELD_CSV_GLOB}) in this folder")
    for csv_path in files:
        yield from _read_meld_csv(csv_path, root)


def _read_meld_csv(csv_path: Path, root: Path) -> Iterator[RawClip]:
    """One MELD CSV's rows; its split comes from a split/mode column, else from its file name."""
    file_part = _meld_part(csv_path)
    media = _MeldMedia(csv_path, root, file_part)
    for source, row in read_csv(csv_path, MELD_COLUMNS):
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
