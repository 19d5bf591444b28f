"""Transcripts that sit next to media files ("sidecars"): find them and read them into cues.

Formats, by file name (extensions in any case):

- ``foo.words.json``: word timings, a list of ``{word, start, end}`` objects (extra keys such as
  ``conf`` ignored), or of segments ``{..., words: [...]}`` (the ASR export in
  ``shared/data/clips``), or an object with a ``segments`` or ``words`` list (Whisper's JSON).
  Cues are built from the words: a cue ends after sentence punctuation or before a pause of
  ``PAUSE_S``. An ASR's own segments are ignored: they are fixed-size chunks, not sentences.
- ``foo.srt`` (SubRip, parsed by the ``srt`` package) and ``foo.vtt`` (WebVTT, by ``webvtt-py``):
  markup is stripped (``<i>``, ``<font>``, VTT voice and class tags, ASS overrides such as
  ``{\\an8}``, HTML entities), the lines of a cue are joined with a space, empty cues dropped and
  YouTube-style rolling captions (each cue repeating the previous line, plus 10 ms "hold" cues)
  folded back into one cue per line.
- ``foo.txt``: plain text without times (``Transcript.timed`` is False).

Bytes are decoded as UTF-8 (BOM optional), UTF-16 with a BOM, else cp1252 (Windows subtitle
editors' default) with a logged warning and ``Transcript.encoding == "cp1252"``; bytes that are none
of these reject the file. A file that cannot be used raises ``SidecarError`` (a ``Reject`` with one
of the reason codes of ``corpora.rows``) whose message names the file and the problem.
"""

from __future__ import annotations

import codecs
import html
import logging
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import srt
import webvtt
from webvtt.errors import MalformedCaptionError, MalformedFileError

from corpora.fields import MAX_SECONDS, WORD_TOLERANCE_S, FieldError, load_json, parse_words, printable
from corpora.rows import INVALID_TEXT, INVALID_WINDOW, INVALID_WORDS, Reject
from features.clips import Word

log = logging.getLogger(__name__)

Format = Literal["words", "srt", "vtt", "txt"]
#: transcript suffixes in precedence order (a media file's first match wins); compared case-insensitively
SUFFIXES: tuple[tuple[str, Format], ...] = (
    (".words.json", "words"),
    (".srt", "srt"),
    (".vtt", "vtt"),
    (".txt", "txt"),
)
PAUSE_S = 0.5  # a silence this long between two words ends a cue built from word timings
ROLLING_CONTIGUITY_S = 0.05  # a rolling-caption cue starts where the previous one ended, within this
_SENTENCE_END = re.compile(r"[.!?…。！？]['\"”’)\]]*$")
_ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")  # {\an8}, {\i1}: SubStation overrides kept by many .srt files
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<\d[\d:.]*>")  # <i>, </font>, <v Name>, <c.x>, <00:00:01.920>
_SPACE = re.compile(r"\s+")


class SidecarError(Reject):
    """A transcript file that cannot be used: ``reason`` is a reject code, the message names the file."""


@dataclass(frozen=True)
class Cue:
    """A timed piece of transcript, seconds on the media timeline. ``words``: its word timings
    (media time) when the transcript has them, so a long cue can be split between words."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass
class Transcript:
    """One sidecar's content. ``cues`` sorted by start (empty for plain text); ``words`` on the media
    timeline (only from ``.words.json``); ``text`` the whole transcript as one line."""

    path: Path
    format: Format
    cues: list[Cue]
    text: str
    timed: bool = True
    words: list[Word] | None = None
    encoding: str = "utf-8"
    notes: list[str] = field(default_factory=list)

    @property
    def end(self) -> float:
        """Where the last cue ends (0 for an untimed or empty transcript)."""
        return max((c.end for c in self.cues), default=0.0)


# -- finding sidecars -------------------------------------------------------------------------
def transcript_format(name: str) -> tuple[str, Format] | None:
    """``(base name, format)`` of a transcript file name (``foo.en.srt`` -> ``("foo.en", "srt")``),
    None for any other file."""
    lower = name.lower()
    for suffix, fmt in SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], fmt
    return None


def sidecar_candidates(media: Path, names: Iterable[str], media_stems: Collection[str] = ()) -> list[Path]:
    """Every transcript among ``names`` (file names in the media's folder) that belongs to ``media``,
    best first.

    Precedence: format first (``.words.json`` > ``.srt`` > ``.vtt`` > ``.txt``), then the untagged
    name (``foo.srt``) before language-tagged ones (``foo.en.srt``, ``foo.TOS-en.srt``), these by
    name. Names are compared as strings, never as globs; a name that matches only up to case
    (``Interview.mp4`` and ``interview.srt``, as case-insensitive file systems let people write
    them) comes after the exact ones, unless another media file in ``media_stems`` has that name
    exactly. A tagged name whose base is itself the stem of another media file in ``media_stems``
    belongs to that file (``foo.vp9.srt`` is the sidecar of ``foo.vp9.webm``, not of ``foo.mp4``).
    """
    ranked: list[tuple[int, int, int, str]] = []
    for name in names:
        found = transcript_format(name)
        if found is None or found[0] in media_stems:
            continue
        base, fmt = found
        rank = [f for _, f in SUFFIXES].index(fmt)
        for case, stem in enumerate((media.stem, media.stem.casefold())):
            key = base if case == 0 else base.casefold()
            if key == stem:
                ranked.append((case, rank, 0, name))
            elif key.startswith(stem + ".") and key != stem + "." and base not in media_stems:
                ranked.append((case, rank, 1, name))
            else:
                continue
            break
    return [media.parent / name for *_, name in sorted(ranked)]


def find_sidecar(media: Path, media_stems: Collection[str] = ()) -> Path | None:
    """The transcript of ``media`` by the precedence of ``sidecar_candidates``, None if it has none."""
    try:
        names = [p.name for p in media.parent.iterdir() if p.is_file()]
    except OSError:
        return None
    found = sidecar_candidates(media, names, media_stems)
    return found[0] if found else None


# -- reading ----------------------------------------------------------------------------------
def read_transcript(path: Path) -> Transcript:
    """Read one sidecar by its name's format; ``SidecarError`` names the file and the problem."""
    found = transcript_format(path.name)
    if found is None:
        raise SidecarError(INVALID_TEXT, f"{_shown(path)}: not a transcript file (expected {_suffix_list()})")
    fmt = found[1]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SidecarError(INVALID_TEXT, f"{_shown(path)}: cannot be read: {exc}") from None
    text, encoding = decode_text(raw, path)
    notes = [] if encoding != "cp1252" else [f"{_shown(path)}: not UTF-8; decoded as Windows-1252 (cp1252)"]
    if fmt == "words":
        transcript = _read_words(path, text)
    elif fmt == "txt":
        transcript = Transcript(path, "txt", [], _clean(text), timed=False)
    else:
        transcript = _read_subtitles(path, text, fmt)
    transcript.encoding, transcript.notes = encoding, notes
    return transcript


def decode_text(raw: bytes, path: Path) -> tuple[str, str]:
    """``(text, encoding)``: UTF-8 with or without BOM, UTF-16 with BOM, else cp1252 (logged);
    ``SidecarError`` (``invalid_text_encoding``) when none of them decodes the bytes."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise SidecarError(
                INVALID_TEXT, f"{_shown(path)}: has a UTF-16 BOM but is not valid UTF-16: {exc}"
            ) from None
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise SidecarError(
            INVALID_TEXT, f"{_shown(path)}: is neither UTF-8, UTF-16 (with BOM) nor Windows-1252 text: {exc}"
        ) from None
    log.warning("%s: not UTF-8; decoded as Windows-1252 (cp1252)", _shown(path))
    return text, "cp1252"


def _read_subtitles(path: Path, text: str, fmt: Format) -> Transcript:
    """SubRip or WebVTT into cues: parsed by their libraries, times checked, markup stripped."""
    raw: list[tuple[float, float, list[str]]] = []
    if text.strip():
        if fmt == "srt":
            try:
                raw = [
                    (s.start.total_seconds(), s.end.total_seconds(), s.content.splitlines()) for s in srt.parse(text)
                ]
            except (srt.SRTParseError, ValueError) as exc:
                raise SidecarError(INVALID_TEXT, f"{_shown(path)}: not a valid SubRip file: {exc}") from None
        else:
            try:
                captions = webvtt.from_string(text, strict=True)
            except (MalformedFileError, MalformedCaptionError, ValueError) as exc:
                raise SidecarError(INVALID_TEXT, f"{_shown(path)}: not a valid WebVTT file: {exc}") from None
            raw = [
                (c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000, c.text.splitlines())
                for c in captions.captions
            ]
    for i, (start, end, _) in enumerate(raw, start=1):
        _check_span(path, f"cue {i}", start, end, INVALID_WINDOW)
    raw.sort(key=lambda c: c[0])  # stable: cues written out of order keep their order among equal starts
    cues = _unroll([(a, b, [_clean(line) for line in lines]) for a, b, lines in raw])
    return Transcript(path, fmt, cues, " ".join(c.text for c in cues))


def _unroll(raw: Sequence[tuple[float, float, list[str]]]) -> list[Cue]:
    """Cues with text, rolling captions folded: a cue that starts where the previous one ended and
    begins with that cue's last line(s) adds only its new lines; one with no new line only holds
    the previous text longer (YouTube's 10 ms cues), so it extends the previous cue."""
    out: list[Cue] = []
    prev_lines: list[str] = []
    prev_end = -1.0
    for start, end, all_lines in raw:
        lines = [line for line in all_lines if line]
        contiguous = bool(out) and abs(start - prev_end) <= ROLLING_CONTIGUITY_S
        repeated = _repeated_prefix(prev_lines, lines) if contiguous else 0
        new = lines[repeated:]
        if new:
            out.append(Cue(start, end, " ".join(new)))
        elif repeated and out[-1].end < end:
            out[-1] = Cue(out[-1].start, end, out[-1].text)
        prev_lines, prev_end = lines, end
    return out


def _repeated_prefix(previous: list[str], lines: list[str]) -> int:
    """How many of ``lines``' first lines repeat the last lines of ``previous`` (a roll-up caption)."""
    for k in range(min(len(previous), len(lines)), 0, -1):
        if lines[:k] == previous[-k:]:
            return k
    return 0


def _read_words(path: Path, text: str) -> Transcript:
    """A ``.words.json`` file into words (checked: finite, ordered, ``start <= end``) and cues."""
    try:
        data = load_json(text)
    except (ValueError, RecursionError) as exc:  # not JSON, or a key named twice
        raise SidecarError(INVALID_WORDS, f"{_shown(path)}: not valid JSON: {str(exc)[:200]}") from None
    items = _word_items(data)
    if items is None:
        raise SidecarError(
            INVALID_WORDS,
            f"{_shown(path)}: expected a list of {{word, start, end}} objects or of segments with a 'words' list",
        )
    try:
        parsed = parse_words(items, None, INVALID_WORDS) or []
    except FieldError as exc:
        raise SidecarError(exc.reason, f"{_shown(path)}: {exc}") from None
    words: list[Word] = []
    for i, w in enumerate(parsed):
        token = _clean(w["word"])
        if not token:
            continue
        if words and (w["start"] < words[-1].start or w["start"] < words[-1].end - WORD_TOLERANCE_S):
            raise SidecarError(
                INVALID_WORDS,
                f"{_shown(path)}: word {i} {token!r} at {w['start']:g} s overlaps or precedes the word before it "
                f"({words[-1].word!r}, {words[-1].start:g}-{words[-1].end:g} s): timings out of order",
            )
        words.append(Word(token, w["start"], w["end"]))
    cues = words_to_cues(words)
    return Transcript(path, "words", cues, " ".join(w.word for w in words), words=words)


def _word_items(data: Any) -> list[Any] | None:
    """The word objects of the accepted JSON shapes, None for any other shape."""
    if isinstance(data, dict):
        for key in ("segments", "words"):
            if isinstance(data.get(key), list):
                return _word_items(data[key])
        return None
    if not isinstance(data, list):
        return None
    if data and all(isinstance(s, dict) and isinstance(s.get("words"), list) for s in data):
        return [w for s in data for w in s["words"]]
    return data


def words_to_cues(words: Sequence[Word]) -> list[Cue]:
    """Group words into cues: a cue ends after a word with sentence punctuation or before a pause
    longer than ``PAUSE_S`` (transcripts of speech without punctuation still break at pauses)."""
    cues: list[Cue] = []
    current: list[Word] = []
    for i, w in enumerate(words):
        current.append(w)
        last = i == len(words) - 1
        if last or _SENTENCE_END.search(w.word) or words[i + 1].start - w.end > PAUSE_S:
            cues.append(Cue(current[0].start, max(x.end for x in current), " ".join(x.word for x in current),
                            tuple(current)))
            current = []
    return cues


def _check_span(path: Path, what: str, start: float, end: float, reason: str) -> None:
    if end < start:
        raise SidecarError(reason, f"{_shown(path)}: {what} ends ({end:g} s) before it starts ({start:g} s)")
    if start < 0 or end > MAX_SECONDS:
        raise SidecarError(reason, f"{_shown(path)}: {what} {start:g}-{end:g} s is outside [0, {MAX_SECONDS:g}] s")


def _clean(text: str) -> str:
    """Text without markup, entities decoded, whitespace (line breaks included) collapsed."""
    text = _TAG.sub("", _ASS_OVERRIDE.sub("", text))
    return _SPACE.sub(" ", html.unescape(text)).strip()


def _shown(path: Path) -> str:
    return printable(str(path))


def _suffix_list() -> str:
    return ", ".join(s for s, _ in SUFFIXES)
