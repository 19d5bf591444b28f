"""Transcripts that sit next to media files ("sidecars"): find them and read them into cues.

Formats, by file name (extensions in any case):

- ``foo.words.json``: word timings, a list of ``{word, start, end}`` objects (extra keys such as
  ``conf`` ignored), or of segments ``{..., words: [...]}`` (the ASR export in
  ``shared/data/clips``), or an object with a ``segments``, ``words`` or ``word_segments`` list
  (Whisper's and WhisperX's JSON). Cues are built from the words: a cue ends after sentence
  punctuation or before a pause of ``PAUSE_S``. An ASR's own segments are ignored: they are
  fixed-size chunks, not sentences; but segments without word timings (Whisper run without them)
  are the only times there are, so each becomes a cue. WhisperX's words without times (numbers,
  symbols) are placed between their timed neighbours.
- ``foo.srt`` (SubRip, parsed by the ``srt`` package) and ``foo.vtt`` (WebVTT, by ``webvtt-py``):
  cue timing lines are first made canonical by one lenient rule (``_canonical_timings``), markup
  is stripped (``<i>``, ``<font>``, VTT voice and class tags, ASS overrides such as ``{\\an8}``,
  HTML entities), the lines of a cue are joined with a space, empty cues dropped and
  YouTube-style rolling captions (each cue repeating the previous line, plus 10 ms "hold" cues)
  folded back into one cue per line.
- ``foo.txt``: plain text without times (``Transcript.timed`` is False).

Only regular files are read (a FIFO would block). Bytes are decoded by the fixed rule of
``decode_text`` (BOMs, UTF-16 without one, UTF-8, else Windows-1252, and what is rejected); line
endings become ``\\n``, mojibake is repaired and control characters removed. Whatever is read
leniently (a guessed encoding, repaired times or text) is a line in ``Transcript.notes``, which
the caller logs. A file that cannot be used raises ``SidecarError`` (a ``Reject`` with one of the
reason codes of ``corpora.rows``) whose message names the file, the problem and, where there is
one, its line; quoted content is cut short.
"""

from __future__ import annotations

import codecs
import html
import logging
import os
import re
import stat
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import srt
import webvtt
from webvtt.errors import MalformedCaptionError, MalformedFileError

from corpora.fields import (
    MAX_SECONDS,
    WORD_TOLERANCE_S,
    FieldError,
    load_json,
    parse_number,
    parse_words,
    printable,
    repair_text,
)
from corpora.rows import INVALID_TEXT, INVALID_WINDOW, INVALID_WORDS, MISSING_FILE, Reject
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
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # C0/C1 controls but tab, line breaks, VT, FF
# a UTF-8 lead byte (0xC2-0xF4) then a continuation byte (0x80-0xBF), both decoded as cp1252; or a C1 control
_MOJIBAKE = re.compile("[\u00c2-\u00f4][\u00a0-\u00bf\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030"
                       "\u0160\u2039\u0152\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122"
                       "\u0161\u203a\u0153\u017e\u0178\u0080-\u009f]|[\u0080-\u009f]")
_VTT_HEADER = re.compile(r"WEBVTT(?:[ \t\n]|$)")
_VTT_BLOCK = re.compile(r"(?:WEBVTT|NOTE|STYLE|REGION)(?:[ \t]|$)")  # WebVTT blocks that hold no cue
# a cue timing line: a time holding ':' (a bare "1 --> 2" in text is not one), an arrow as the srt
# package reads it ("-->", "- >", "-- >"), a time, then cue settings or SubRip coordinates
_TIMING_LINE = re.compile(r"[ \t]*(?P<a>-?[0-9]*:[0-9:.,]*)[ \t]*-[ -] *>[ \t]*(?P<b>-?[0-9:.,]+)(?P<rest>[ \t].*)?$")
_TIME_HMS = re.compile(r"(?P<h>[0-9]+):(?P<m>[0-5]?[0-9]):(?P<s>[0-5]?[0-9])(?:[,.:](?P<f>[0-9]+))?")
_SRT_TIME = re.compile(r"[0-9]{2,}:[0-5][0-9]:[0-5][0-9],[0-9]{3}")  # the standard forms, left as they are
_VTT_TIME = re.compile(r"(?:[0-9]{2,}:)?[0-5][0-9]:[0-5][0-9]\.[0-9]{3}")
_TIME_MS = re.compile(r"(?P<m>[0-5]?[0-9]):(?P<s>[0-5]?[0-9])[,.](?P<f>[0-9]+)")


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
    """Read one sidecar by its name's format; ``SidecarError`` names the file and the problem.
    ``Transcript.notes`` says what was read leniently (an encoding guessed, times or markup
    repaired), for the caller to log."""
    found = transcript_format(path.name)
    if found is None:
        raise SidecarError(INVALID_TEXT, f"{_shown(path)}: not a transcript file (expected {_suffix_list()})")
    fmt = found[1]
    text, encoding = decode_text(_read_bytes(path), path)
    notes: list[str] = []
    if encoding in _ENCODING_NOTES:
        notes.append(f"{_shown(path)}: {_ENCODING_NOTES[encoding]}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # CRLF and old Mac CR-only files
    text = _repaired(text, path, notes)
    if fmt == "words":
        transcript = _read_words(path, text, notes)
    elif fmt == "txt":
        transcript = Transcript(path, "txt", [], _clean(text), timed=False)
    else:
        transcript = _read_subtitles(path, text, fmt, notes)
    transcript.encoding, transcript.notes = encoding, notes
    return transcript


def _read_bytes(path: Path) -> bytes:
    """The bytes of a regular file. Opened without blocking and checked before reading: a FIFO
    named ``.srt`` would block the whole batch forever."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SidecarError(MISSING_FILE, f"{_shown(path)}: does not exist (or is a broken symlink)") from None
    except OSError as exc:
        raise SidecarError(INVALID_TEXT, f"{_shown(path)}: cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SidecarError(MISSING_FILE, f"{_shown(path)}: is not a regular file")
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read()
        except OSError as exc:
            raise SidecarError(INVALID_TEXT, f"{_shown(path)}: cannot be read: {exc.strerror}") from None


#: byte order marks, UTF-32 first (its little-endian mark starts with UTF-16's): (mark, codec, encoding)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
    (codecs.BOM_UTF8, "utf-8", "utf-8"),
)
_KIND: dict[Format, str] = {"srt": "SubRip file", "vtt": "WebVTT file", "words": "word timings file",
                           "txt": "text file"}
_ENCODING_NOTES = {
    "cp1252": "not UTF-8; decoded as Windows-1252 (cp1252)",
    "utf-16-le": "no byte order mark, but every other byte is NUL: decoded as UTF-16 LE",
    "utf-16-be": "no byte order mark, but every other byte is NUL: decoded as UTF-16 BE",
}


def decode_text(raw: bytes, path: Path) -> tuple[str, str]:
    """``(text, encoding)`` by one fixed rule, first match wins:

    1. a byte order mark: UTF-32, UTF-16 or UTF-8, and the bytes must be valid in it;
    2. no BOM, but NUL in at least a quarter of the 2-byte units, nearly all on one side: UTF-16
       LE or BE (what Windows tools write when they leave the BOM out);
    3. any other NUL byte: not text (a binary file named like a transcript);
    4. valid UTF-8;
    5. damaged UTF-8 (more well-formed multi-byte UTF-8 characters than invalid bytes): rejected,
       since decoding it as Windows-1252 would garble all its other non-ASCII characters;
    6. Windows-1252 (cp1252: what Windows subtitle editors write; Latin-1 text is read the same),
       unless it holds one of the five bytes cp1252 leaves undefined.

    ``SidecarError`` (``invalid_text_encoding``) names the file, the offending byte and its line."""
    for bom, codec, encoding in _BOMS:
        if raw.startswith(bom):
            problem = f"has a {encoding.upper()} byte order mark but is not valid {encoding.upper()}"
            return _strict(raw, codec, path, problem, len(bom)), encoding
    utf16 = _utf16_without_bom(raw)
    if utf16 is not None:
        return _strict(raw, utf16, path, f"looks like {utf16.upper()} without a byte order mark but is not"), utf16
    if b"\0" in raw:
        at = raw.index(b"\0")
        found = transcript_format(path.name)
        kind = _KIND[found[1]] if found else "text file"
        raise SidecarError(INVALID_TEXT, f"{_shown(path)}: not a valid {kind}: it holds a NUL byte (offset {at}, "
                                         f"line {_line_of(raw, at)}): binary data, not text")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        first = exc.start
    escaped = raw.decode("utf-8", "surrogateescape")  # each invalid byte one lone surrogate
    invalid = len(escaped) - len(escaped.encode("utf-8", "ignore").decode("utf-8"))
    multibyte = len(escaped) - len(escaped.encode("ascii", "ignore")) - invalid
    if multibyte > invalid:
        raise SidecarError(
            INVALID_TEXT,
            f"{_shown(path)}: is UTF-8 but for {invalid} invalid byte(s) (first 0x{raw[first]:02x} at offset {first}, "
            f"line {_line_of(raw, first)}): a damaged file; read as Windows-1252 its {multibyte} other non-ASCII "
            "characters would be garbled",
        )
    return _strict(raw, "cp1252", path, "is neither UTF-8, UTF-16 (with BOM) nor Windows-1252 text"), "cp1252"


def _strict(raw: bytes, encoding: str, path: Path, problem: str, skip: int = 0) -> str:
    """``raw[skip:]`` decoded; an error names the offending byte by its offset in the file."""
    try:
        return raw[skip:].decode(encoding)
    except UnicodeDecodeError as exc:
        at = skip + exc.start
        raise SidecarError(
            INVALID_TEXT,
            f"{_shown(path)}: {problem}: byte 0x{raw[at]:02x} at offset {at} (line {_line_of(raw, at)}) ({exc.reason})",
        ) from None


def _utf16_without_bom(raw: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when NUL bytes sit on one side of at least a quarter of the 2-byte
    units (ASCII in UTF-16: timing lines make sure of it), at most one in eight on the other."""
    if len(raw) < 2 or len(raw) % 2:
        return None
    units = len(raw) // 2
    high_odd = raw[1::2].count(0)  # LE: the high byte, NUL for ASCII, comes second
    high_even = raw[0::2].count(0)
    if high_odd >= units / 4 and high_even <= high_odd / 8:
        return "utf-16-le"
    if high_even >= units / 4 and high_odd <= high_even / 8:
        return "utf-16-be"
    return None


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _repaired(text: str, path: Path, notes: list[str]) -> str:
    """``text`` with mojibake undone (``corpora.fields.repair_text``: UTF-8 once decoded as cp1252,
    ``CafÃ©`` -> ``Café``) and control characters other than whitespace removed, each with a note.
    ftfy runs only on text holding a UTF-8 lead byte read as cp1252 before a continuation byte so
    read (or a C1 control): no other text can hold this mojibake, and ftfy takes seconds a MB."""
    if _MOJIBAKE.search(text):
        fixed = repair_text(text)
        if fixed != text:
            notes.append(f"{_shown(path)}: mojibake repaired (UTF-8 text that had been decoded as Windows-1252)")
            text = fixed
    text, removed = _CONTROL.subn("", text)
    if removed:
        notes.append(f"{_shown(path)}: {removed} control character(s) removed")
    return text


def _read_subtitles(path: Path, text: str, fmt: Format, notes: list[str]) -> Transcript:
    """SubRip or WebVTT into cues: timing lines made canonical (``_canonical_timings``), parsed by
    their libraries, times checked, markup stripped."""
    raw: list[tuple[float, float, list[str]]] = []
    text = _canonical_timings(text.rstrip(), fmt, path, notes)
    if text.strip():
        raw = _parse_srt(path, text) if fmt == "srt" else _parse_vtt(path, text, notes)
    for i, (start, end, _) in enumerate(raw, start=1):
        _check_span(path, f"cue {i}", start, end, INVALID_WINDOW)
    raw.sort(key=lambda c: c[0])  # stable: cues written out of order keep their order among equal starts
    cues = _unroll([(a, b, [_clean(line) for line in lines]) for a, b, lines in raw])
    return Transcript(path, fmt, cues, " ".join(c.text for c in cues))


def _parse_srt(path: Path, text: str) -> list[tuple[float, float, list[str]]]:
    """``(start, end, lines)`` of each SubRip cue; a parse error names the line where cues stop."""
    try:
        return [(s.start.total_seconds(), s.end.total_seconds(), s.content.splitlines()) for s in srt.parse(text)]
    except srt.SRTParseError as exc:
        # the first line that is neither blank nor a bare index number: the one that broke the cue
        skipped, bad = next(((k, line) for k, line in enumerate(exc.unmatched_content.split("\n"))
                             if line.strip() and not line.strip().isdigit()), (0, ""))
        line = text.count("\n", 0, exc.expected_start) + 1 + skipped
        raise SidecarError(
            INVALID_TEXT,
            f"{_shown(path)}: not a valid SubRip file: line {line}: {_excerpt(bad)!r} is not part of a cue "
            "(an index line, 'H:MM:SS,mmm --> H:MM:SS,mmm', text)",
        ) from None
    except ValueError as exc:
        raise SidecarError(INVALID_TEXT, f"{_shown(path)}: not a valid SubRip file: {_excerpt(str(exc))}") from None


def _parse_vtt(path: Path, text: str, notes: list[str]) -> list[tuple[float, float, list[str]]]:
    """``(start, end, lines)`` of each WebVTT cue (strict: a malformed cue is an error, not skipped).
    A file without the ``WEBVTT`` line is read when it starts with a cue (noted). Blocks that are no
    cue, note, style or region are ignored, as players ignore them, with a note naming the first."""
    ignored = [n for n, block in _blocks(text) if not _VTT_BLOCK.match(block[0]) and not _timing_of(block)]
    text = text.lstrip()
    if not _VTT_HEADER.match(text):
        if not _timing_of(text.split("\n\n", 1)[0].split("\n")):
            first = _excerpt(text.split("\n", 1)[0])
            raise SidecarError(INVALID_TEXT, f"{_shown(path)}: not a valid WebVTT file: {first!r} is neither "
                                             "the 'WEBVTT' header line nor a cue")
        notes.append(f"{_shown(path)}: no WEBVTT header line, but it starts with a cue: read as WebVTT")
        text = "WEBVTT\n\n" + text
        ignored = ignored[1:] if ignored and ignored[0] == 1 else ignored
    if ignored:
        notes.append(f"{_shown(path)}: {len(ignored)} block(s) that are no cue, NOTE, STYLE or REGION ignored, "
                     f"as WebVTT players do (the first at line {ignored[0]}; a blank line inside a cue ends it)")
    try:
        captions = webvtt.from_string(text, strict=True)
    except (MalformedFileError, MalformedCaptionError, ValueError) as exc:
        raise SidecarError(INVALID_TEXT, f"{_shown(path)}: not a valid WebVTT file: {_excerpt(str(exc))}") from None
    return [(c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000, c.text.splitlines())
            for c in captions.captions]


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """``(first line number, lines)`` of each block of lines between empty lines (as in WebVTT, a
    line of spaces belongs to its block: YouTube's captions hold one inside each cue)."""
    out: list[tuple[int, list[str]]] = []
    block: list[str] = []
    for n, line in enumerate(text.split("\n"), start=1):
        if line:
            if not block:
                out.append((n, block))
            block.append(line)
        else:
            block = []
    return out


def _timing_of(block: list[str]) -> re.Match[str] | None:
    """The cue timing line of a block: its first line, or its second after an index or identifier."""
    for line in block[:2]:
        if m := _TIMING_LINE.match(line):
            return m
    return None


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


def _canonical_timings(text: str, fmt: Format, path: Path, notes: list[str]) -> str:
    """Every cue timing line rewritten as ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` (``.`` in WebVTT), the
    rest of the line kept (cue settings). Read leniently, by one rule: hours may be left out
    (``MM:SS,mmm``, WebVTT's short form), ``,`` and ``.`` both mark the fraction, which is a decimal
    fraction of any length (``01,5`` is 1.5 s, as the ``srt`` package would read 1.005 s), rounded
    to milliseconds. A timing line (a time with ``:``, an arrow, a time) outside this grammar, a
    negative time for one, rejects the file (``invalid_window``) naming its line."""
    lines = text.split("\n")
    changed = changed_at = 0
    pos = 0  # the line's place in its block (blocks are separated by blank lines)
    for n, line in enumerate(lines):
        pos = 0 if n == 0 or not lines[n - 1].strip() else pos + 1
        # a block's timing line is its first line, or its second after an index or cue identifier:
        # a line of cue text such as "10:30 --> 11:00" is left alone
        m = _TIMING_LINE.match(line) if pos == 0 or (pos == 1 and not _TIMING_LINE.match(lines[n - 1])) else None
        if m is None:
            continue
        times = [_milliseconds(m[k]) for k in ("a", "b")]
        if None in times:
            raise SidecarError(
                INVALID_WINDOW,
                f"{_shown(path)}: line {n + 1}: cue timing {_excerpt(line.strip())!r} is not "
                "H:MM:SS,mmm --> H:MM:SS,mmm (hours optional; minutes and seconds 0-59; no sign)",
            )
        standard = _SRT_TIME if fmt == "srt" else _VTT_TIME
        if not (standard.fullmatch(m["a"]) and standard.fullmatch(m["b"])):
            a, b = (_format_ms(t or 0, "," if fmt == "srt" else ".") for t in times)
            lines[n] = f"{a} --> {b}{m['rest'] or ''}"
            changed, changed_at = changed + 1, changed_at or n + 1
    if changed:
        notes.append(f"{_shown(path)}: {changed} cue timing line(s) not in the standard form (the first at line "
                     f"{changed_at}) read leniently: hours optional, ',' or '.', a decimal fraction ('01,5' is 1.5 s)")
    return "\n".join(lines)


def _milliseconds(token: str) -> int | None:
    m = _TIME_HMS.fullmatch(token) or _TIME_MS.fullmatch(token)
    if m is None:
        return None
    parts = m.groupdict()
    fraction = parts.get("f")
    ms = round(int(fraction) * 1000 / 10 ** len(fraction)) if fraction else 0
    return ((int(parts.get("h") or 0) * 60 + int(parts["m"])) * 60 + int(parts["s"])) * 1000 + ms


def _format_ms(ms: int, sep: str) -> str:
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{sep}{ms:03d}"


def _excerpt(text: str, limit: int = 120) -> str:
    """At most ``limit`` characters of ``text``: a message must not carry a 50 MB line."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _read_words(path: Path, text: str, notes: list[str]) -> Transcript:
    """A ``.words.json`` file into words (checked: finite, ordered, ``start <= end``) and cues.
    Whisper's JSON without word timings (segments with only ``start``/``end``/``text``) is read as
    one cue per segment, as a ``.srt`` would be; so is a file where only some segments have words."""
    try:
        data = load_json(text)
    except (ValueError, RecursionError) as exc:  # not JSON, or a key named twice
        raise SidecarError(INVALID_WORDS, f"{_shown(path)}: not valid JSON: {_excerpt(str(exc))}") from None
    groups = _word_groups(data)
    if groups is None:
        raise SidecarError(
            INVALID_WORDS,
            f"{_shown(path)}: expected a list of {{word, start, end}} objects, of segments with a 'words' list "
            "or with start/end/text, or an object with such a 'segments', 'words' or 'word_segments' list",
        )
    without = sum(1 for _, group_words in groups if group_words is None)
    if without:
        notes.append(f"{_shown(path)}: {without} of its {len(groups)} segments have no word timings: "
                     "each segment is read as one cue")
        return _segment_cues(path, [seg for seg, _ in groups if seg is not None])
    items: list[Any] = []
    placed = 0
    for segment, group_words in groups:
        group, n = _place_untimed(segment, group_words or [])
        items += group
        placed += n
    if placed:
        notes.append(f"{_shown(path)}: {placed} word(s) without times (as WhisperX leaves numbers and symbols) "
                     "placed evenly between the timed words or segment bounds around them")
    try:
        parsed = parse_words(items, None, INVALID_WORDS) or []
    except FieldError as exc:
        raise SidecarError(exc.reason, f"{_shown(path)}: {_excerpt(str(exc), 300)}") from None
    words: list[Word] = []
    for i, w in enumerate(parsed):
        token = _clean(w["word"])
        if not token:
            continue
        if words and (w["start"] < words[-1].start or w["start"] < words[-1].end - WORD_TOLERANCE_S):
            raise SidecarError(
                INVALID_WORDS,
                f"{_shown(path)}: word {i} {_excerpt(token)!r} at {w['start']:g} s overlaps or precedes the word "
                f"before it ({words[-1].word!r}, {words[-1].start:g}-{words[-1].end:g} s): timings out of order",
            )
        words.append(Word(token, w["start"], w["end"]))
    cues = words_to_cues(words)
    return Transcript(path, "words", cues, " ".join(w.word for w in words), words=words)


def _word_groups(data: Any) -> list[tuple[dict[str, Any] | None, list[Any] | None]] | None:
    """``(segment, its words)`` of the accepted JSON shapes: a flat word list is one group without
    a segment; a segment without a ``words`` list has words None. None for any other shape. Of an
    object's ``segments``, ``words`` and ``word_segments`` (WhisperX) lists, the first non-empty one."""
    if isinstance(data, dict):
        lists = [data[k] for k in ("segments", "words", "word_segments") if isinstance(data.get(k), list)]
        return _word_groups(next((v for v in lists if v), lists[0])) if lists else None
    if not isinstance(data, list):
        return None
    if data and all(isinstance(s, dict) and ("words" in s or ("text" in s and "word" not in s)) for s in data):
        if not all(s.get("words") is None or isinstance(s["words"], list) for s in data):
            return None
        return [(s, s.get("words")) for s in data]
    return [(None, data)]


def _segment_cues(path: Path, segments: list[dict[str, Any]]) -> Transcript:
    """One cue per segment of Whisper's JSON (``start``, ``end``, ``text``), sorted by start."""
    cues: list[Cue] = []
    for i, seg in enumerate(segments):
        try:
            start = parse_number(seg.get("start"), f"segment {i} start", INVALID_WORDS)
            end = parse_number(seg.get("end"), f"segment {i} end", INVALID_WORDS)
        except FieldError as exc:
            raise SidecarError(exc.reason, f"{_shown(path)}: {_excerpt(str(exc), 300)}") from None
        _check_span(path, f"segment {i}", start, end, INVALID_WORDS)
        if not isinstance(seg.get("text"), str):
            raise SidecarError(INVALID_WORDS, f"{_shown(path)}: segment {i} has no 'text' string")
        if text := _clean(seg["text"]):
            cues.append(Cue(start, end, text))
    cues.sort(key=lambda c: c.start)
    return Transcript(path, "words", cues, " ".join(c.text for c in cues))


def _place_untimed(segment: dict[str, Any] | None, words: list[Any]) -> tuple[list[Any], int]:
    """``words`` with each run of words lacking both ``start`` and ``end`` spread evenly from the end
    of the timed word before it (else the segment's start) to the start of the one after it (else
    the segment's end); how many were placed. A run with nothing on one side stays as it is."""
    def untimed(w: Any) -> bool:
        return isinstance(w, dict) and "word" in w and w.get("start") is None and w.get("end") is None

    out = list(words)
    placed = 0
    i = 0
    while i < len(words):
        if not untimed(words[i]):
            i += 1
            continue
        j = i
        while j < len(words) and untimed(words[j]):
            j += 1
        lo = _time_of(words[i - 1], "end") if i > 0 else _time_of(segment, "start")
        hi = _time_of(words[j], "start") if j < len(words) else _time_of(segment, "end")
        if lo is None or hi is None:  # nothing to place it by: parse_words names the word
            i = j
            continue
        step = (max(hi, lo) - lo) / (j - i)
        for k in range(i, j):
            out[k] = {**words[k], "start": lo + (k - i) * step, "end": lo + (k - i + 1) * step}
        placed += j - i
        i = j
    return out, placed


def _time_of(item: Any, key: str) -> float | None:
    """``item[key]`` as seconds, None when it has no usable one."""
    if not isinstance(item, dict):
        return None
    try:
        return parse_number(item.get(key), key, INVALID_WORDS)
    except FieldError:
        return None


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
