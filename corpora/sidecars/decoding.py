"""A transcript file's bytes as text, by one fixed rule (``decode_text``): real subtitle files come
in every encoding, and a wrong guess garbles every accent, so what is guessed is noted and what
cannot be text is rejected naming the byte and its line."""

from __future__ import annotations

import codecs
import os
import re
import stat
from pathlib import Path

from corpora.fields import repair_text
from corpora.rows import INVALID_TEXT, MISSING_FILE
from corpora.sidecars.cues import Format, SidecarError, shown
from corpora.sidecars.finding import transcript_format

_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # C0/C1 controls but tab, line breaks, VT, FF
# a UTF-8 lead byte (0xC2-0xF4) then a continuation byte (0x80-0xBF), both decoded as cp1252; or a C1 control
_MOJIBAKE = re.compile("[\u00c2-\u00f4][\u00a0-\u00bf\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030"
                       "\u0160\u2039\u0152\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122"
                       "\u0161\u203a\u0153\u017e\u0178\u0080-\u009f]|[\u0080-\u009f]")


def read_bytes(path: Path) -> bytes:
    """The bytes of a regular file. Opened without blocking and checked before reading: a FIFO
    named ``.srt`` would block the whole batch forever."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SidecarError(MISSING_FILE, f"{shown(path)}: does not exist (or is a broken symlink)") from None
    except OSError as exc:
        raise SidecarError(INVALID_TEXT, f"{shown(path)}: cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SidecarError(MISSING_FILE, f"{shown(path)}: is not a regular file")
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read()
        except OSError as exc:
            raise SidecarError(INVALID_TEXT, f"{shown(path)}: cannot be read: {exc.strerror}") from None


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
ENCODING_NOTES = {
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
        raise SidecarError(INVALID_TEXT, f"{shown(path)}: not a valid {kind}: it holds a NUL byte (offset {at}, "
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
            f"{shown(path)}: is UTF-8 but for {invalid} invalid byte(s) (first 0x{raw[first]:02x} at offset {first}, "
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
            f"{shown(path)}: {problem}: byte 0x{raw[at]:02x} at offset {at} (line {_line_of(raw, at)}) ({exc.reason})",
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


def repaired(text: str, path: Path, notes: list[str]) -> str:
    """``text`` with mojibake undone (``corpora.fields.repair_text``: UTF-8 once decoded as cp1252,
    ``CafÃ©`` -> ``Café``) and control characters other than whitespace removed, each with a note.
    ftfy runs only on text holding a UTF-8 lead byte read as cp1252 before a continuation byte so
    read (or a C1 control): no other text can hold this mojibake, and ftfy takes seconds a MB."""
    if _MOJIBAKE.search(text):
        fixed = repair_text(text)
        if fixed != text:
            notes.append(f"{shown(path)}: mojibake repaired (UTF-8 text that had been decoded as Windows-1252)")
            text = fixed
    text, removed = _CONTROL.subn("", text)
    if removed:
        notes.append(f"{shown(path)}: {removed} control character(s) removed")
    return text
