"""The ``media`` layout: new, unlabeled media (files, folders, transcripts alone) to score. It pairs
media with their transcripts (``corpora.sidecars``), probes each media file once for its duration
and cuts it into segments (``corpora.segments``), one row each; every file keeps its video id
across runs."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from corpora.fields import id_key, printable
from corpora.layouts.media_files import MEDIA_SUFFIXES
from corpora.rows import (
    INVALID_TEXT,
    MISSING_FILE,
    UNEXPECTED_ERROR,
    UNREADABLE_MEDIA,
    RawClip,
    Reject,
    media_file_problem,
)
from corpora.segments import Segment, SegmentConfig, segment_media
from corpora.sidecars.cues import SidecarError
from corpora.sidecars.finding import sidecar_candidates, transcript_format
from corpora.sidecars.reading import read_transcript
from features.media.probe import probe_media
from store.errors import CorruptMediaError
from store.featurestore import MediaSource
from store.fingerprint import files_sha256

log = logging.getLogger(__name__)

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
      (``MEDIA_SUFFIXES``) and transcripts (``corpora.sidecars.finding.SUFFIXES``) are inputs there, other
      files are ignored. A file given by name is media unless it is a transcript, whatever its
      extension (the decoder decides).
    - A media file takes its transcript by ``corpora.sidecars.finding.sidecar_candidates`` from its own
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
