"""SubRip and WebVTT files into cues: timing lines made canonical first (one lenient rule), then
parsed by their libraries (``srt``, ``webvtt-py``), times checked, markup stripped, rolling
captions folded."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import srt
import webvtt
from webvtt.errors import MalformedCaptionError, MalformedFileError

from corpora.rows import INVALID_TEXT, INVALID_WINDOW
from corpora.sidecars.cues import Cue, Format, SidecarError, Transcript, check_span, clean_text, excerpt, shown

ROLLING_CONTIGUITY_S = 0.05  # a rolling-caption cue starts where the previous one ended, within this
_VTT_HEADER = re.compile(r"WEBVTT(?:[ \t\n]|$)")
_VTT_BLOCK = re.compile(r"(?:WEBVTT|NOTE|STYLE|REGION)(?:[ \t]|$)")  # WebVTT blocks that hold no cue
# a cue timing line: a time holding ':' (a bare "1 --> 2" in text is not one), an arrow as the srt
# package reads it ("-->", "- >", "-- >"), a time, then cue settings or SubRip coordinates
_TIMING_LINE = re.compile(r"[ \t]*(?P<a>-?[0-9]*:[0-9:.,]*)[ \t]*-[ -] *>[ \t]*(?P<b>-?[0-9:.,]+)(?P<rest>[ \t].*)?$")
_TIME_HMS = re.compile(r"(?P<h>[0-9]+):(?P<m>[0-5]?[0-9]):(?P<s>[0-5]?[0-9])(?:[,.:](?P<f>[0-9]+))?")
_SRT_TIME = re.compile(r"[0-9]{2,}:[0-5][0-9]:[0-5][0-9],[0-9]{3}")  # the standard forms, left as they are
_VTT_TIME = re.compile(r"(?:[0-9]{2,}:)?[0-5][0-9]:[0-5][0-9]\.[0-9]{3}")
_TIME_MS = re.compile(r"(?P<m>[0-5]?[0-9]):(?P<s>[0-5]?[0-9])[,.](?P<f>[0-9]+)")


def read_subtitles(path: Path, text: str, fmt: Format, notes: list[str]) -> Transcript:
    """SubRip or WebVTT into cues: timing lines made canonical (``_canonical_timings``), parsed by
    their libraries, times checked, markup stripped."""
    raw: list[tuple[float, float, list[str]]] = []
    text = _canonical_timings(text.rstrip(), fmt, path, notes)
    if text.strip():
        raw = _parse_srt(path, text) if fmt == "srt" else _parse_vtt(path, text, notes)
    for i, (start, end, _) in enumerate(raw, start=1):
        check_span(path, f"cue {i}", start, end, INVALID_WINDOW)
    raw.sort(key=lambda c: c[0])  # stable: cues written out of order keep their order among equal starts
    cues = _unroll([(a, b, [clean_text(line) for line in lines]) for a, b, lines in raw])
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
            f"{shown(path)}: not a valid SubRip file: line {line}: {excerpt(bad)!r} is not part of a cue "
            "(an index line, 'H:MM:SS,mmm --> H:MM:SS,mmm', text)",
        ) from None
    except ValueError as exc:
        raise SidecarError(INVALID_TEXT, f"{shown(path)}: not a valid SubRip file: {excerpt(str(exc))}") from None


def _parse_vtt(path: Path, text: str, notes: list[str]) -> list[tuple[float, float, list[str]]]:
    """``(start, end, lines)`` of each WebVTT cue (strict: a malformed cue is an error, not skipped).
    A file without the ``WEBVTT`` line is read when it starts with a cue (noted). Blocks that are no
    cue, note, style or region are ignored, as players ignore them, with a note naming the first."""
    ignored = [n for n, block in _blocks(text) if not _VTT_BLOCK.match(block[0]) and not _timing_of(block)]
    text = text.lstrip()
    if not _VTT_HEADER.match(text):
        if not _timing_of(text.split("\n\n", 1)[0].split("\n")):
            first = excerpt(text.split("\n", 1)[0])
            raise SidecarError(INVALID_TEXT, f"{shown(path)}: not a valid WebVTT file: {first!r} is neither "
                                             "the 'WEBVTT' header line nor a cue")
        notes.append(f"{shown(path)}: no WEBVTT header line, but it starts with a cue: read as WebVTT")
        text = "WEBVTT\n\n" + text
        ignored = ignored[1:] if ignored and ignored[0] == 1 else ignored
    if ignored:
        notes.append(f"{shown(path)}: {len(ignored)} block(s) that are no cue, NOTE, STYLE or REGION ignored, "
                     f"as WebVTT players do (the first at line {ignored[0]}; a blank line inside a cue ends it)")
    try:
        captions = webvtt.from_string(text, strict=True)
    except (MalformedFileError, MalformedCaptionError, ValueError) as exc:
        raise SidecarError(INVALID_TEXT, f"{shown(path)}: not a valid WebVTT file: {excerpt(str(exc))}") from None
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
                f"{shown(path)}: line {n + 1}: cue timing {excerpt(line.strip())!r} is not "
                "H:MM:SS,mmm --> H:MM:SS,mmm (hours optional; minutes and seconds 0-59; no sign)",
            )
        standard = _SRT_TIME if fmt == "srt" else _VTT_TIME
        if not (standard.fullmatch(m["a"]) and standard.fullmatch(m["b"])):
            a, b = (_format_ms(t or 0, "," if fmt == "srt" else ".") for t in times)
            lines[n] = f"{a} --> {b}{m['rest'] or ''}"
            changed, changed_at = changed + 1, changed_at or n + 1
    if changed:
        notes.append(f"{shown(path)}: {changed} cue timing line(s) not in the standard form (the first at line "
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
