"""The grammar of clip-table fields: one strict parser per kind of value, used by every layout.

Python's own conversions accept far more than a dataset means: ``float()`` takes ``"nan"``,
``"inf"``, ``"0.0_1"`` and Arabic-Indic digits, ``bool`` is an ``int``, ``str(None)`` is
``"None"``. Each parser here accepts exactly one documented form and raises ``FieldError`` (a
reason code and a message) for anything else, so a bad value becomes a named reject of its row,
never a silent conversion and never a crash. The grammar is listed in ``docs/reliability.md``.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable
from typing import Any

import ftfy

MAX_SECONDS = 86_400.0  # no clip time or timestamp beyond one day: larger values are unit mistakes
WORD_TOLERANCE_S = 0.25  # word timings may overrun the clip by this much (ASR rounding); clamped
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ASCII_SPACE = " \t\r\n\f\v"
_TIMESTAMP = re.compile(r"([0-9]+):([0-5][0-9]):([0-5][0-9])(?:[,.]([0-9]{1,3}))?")  # SRT style H:MM:SS,mmm
_CLASS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# Mojibake repair only: every ftfy step that would change text that is not mis-decoded (curly
# quotes, ligatures, widths, HTML entities, Unicode normalisation, control characters) is off.
_REPAIR = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    fix_surrogates=False,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)


class FieldError(ValueError):
    """A field value outside the grammar; ``reason`` is the reject code of its row."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def has_bad_text(text: str) -> bool:
    """True for text that cannot be written as UTF-8: undecodable bytes (kept as lone surrogates
    by ``surrogateescape``) or lone surrogates from JSON ``\\ud800`` escapes."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def printable(text: str) -> str:
    """``text`` safe to store and print: undecodable bytes as ``\\xff``, lone surrogates escaped."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def is_blank(value: Any) -> bool:
    """A missing value: absent, JSON null, or an empty/whitespace-only string."""
    return value is None or (isinstance(value, str) and not value.strip(_ASCII_SPACE))


def parse_number(value: Any, what: str, reason: str) -> float:
    """A finite decimal: a JSON number (not a boolean) or a string like ``-1.5``, ``2``, ``3e-1``.

    Rejected: booleans, lists, objects, ``nan``/``inf`` in any spelling, digit separators
    (``0.0_1``), non-ASCII digits, hex, and magnitudes that overflow a float.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FieldError(reason, f"{what} {value!r} is not a number (a {type(value).__name__})")
    if isinstance(value, str):
        text = value.strip(_ASCII_SPACE)
        if not _DECIMAL.fullmatch(text):
            raise FieldError(reason, f"{what} {value!r} is not a decimal number")
        value = text
    try:
        number = float(value)
    except OverflowError:
        raise FieldError(reason, f"{what} {value!r} is too large") from None
    if not math.isfinite(number):
        raise FieldError(reason, f"{what} {value!r} is not finite")
    return number


def parse_optional_number(value: Any, what: str, reason: str) -> float | None:
    return None if is_blank(value) else parse_number(value, what, reason)


def parse_seconds(value: Any, what: str, reason: str) -> float | None:
    """An optional time in seconds: a finite decimal in ``[0, MAX_SECONDS]``."""
    seconds = parse_optional_number(value, what, reason)
    if seconds is not None and not 0.0 <= seconds <= MAX_SECONDS:
        raise FieldError(reason, f"{what} {seconds:g} s is outside [0, {MAX_SECONDS:g}] s")
    return seconds


def parse_label(value: Any, what: str, reason: str, required: bool) -> float | None:
    """A sentiment score in ``[-3, 3]`` (the CMU-MOSI scale; SIMS' [-1, 1] fits inside)."""
    if is_blank(value):
        if required:
            raise FieldError(reason, f"{what} is missing")
        return None
    label = parse_number(value, what, reason)
    if not -3.0 <= label <= 3.0:
        raise FieldError(reason, f"{what} {label:g} is outside [-3, 3]")
    return label


def parse_timestamp(value: Any, what: str, reason: str) -> float | None:
    """An optional SRT-style time ``H:MM:SS,mmm`` (also ``.mmm``, 1-3 fraction digits; MELD's
    StartTime/EndTime) in seconds, at most ``MAX_SECONDS``; ASCII digits only."""
    if is_blank(value):
        return None
    match = _TIMESTAMP.fullmatch(value.strip(_ASCII_SPACE)) if isinstance(value, str) else None
    if match is None:
        raise FieldError(reason, f"{what} {value!r} is not a time H:MM:SS,mmm")
    hours, minutes, secs, frac = match.groups()
    seconds = int(hours) * 3600 + int(minutes) * 60 + int(secs) + (int(frac) / 10 ** len(frac) if frac else 0.0)
    if seconds > MAX_SECONDS:
        raise FieldError(reason, f"{what} {value!r} is more than {MAX_SECONDS:g} s")
    return float(seconds)


def parse_class(value: Any, what: str, reason: str, allowed: Collection[str] | None = None) -> str | None:
    """An optional class label (an emotion, a sentiment class): a name of ASCII letters, digits,
    ``_`` or ``-``, starting with a letter, at most 32 characters, compared and stored in lower
    case (``Neutral`` is ``neutral``); with ``allowed``, one of those names."""
    if is_blank(value):
        return None
    if not isinstance(value, str):
        raise FieldError(reason, f"{what} {value!r} is not a class name (a {type(value).__name__})")
    name = value.strip(_ASCII_SPACE).lower()
    if not _CLASS_NAME.fullmatch(name):
        raise FieldError(reason, f"{what} {printable(value)!r} is not a class name (letters, digits, _ or -)")
    if allowed is not None and name not in allowed:
        raise FieldError(reason, f"{what} {value!r} is not one of {', '.join(sorted(allowed))}")
    return name


def repair_text(text: str) -> str:
    """``text`` with mojibake undone (UTF-8 read as Windows-1252: ``â€™`` -> ``’``; stray C1
    controls such as U+0092 -> ``’``) by ftfy, and nothing else changed. Text holding undecodable
    bytes is returned as is: ``parse_text`` rejects it by name."""
    return text if has_bad_text(text) else ftfy.fix_text(text, _REPAIR)


def normalise_id(value: Any, what: str, reason: str) -> str:
    """An identifier: a JSON string or integer, trimmed, NFC-normalised, valid UTF-8, no control
    characters, not empty. Ids are compared by ``id_key`` (case-insensitive)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FieldError(reason, f"{what} {value!r} is not a string (a {type(value).__name__})")
    text = unicodedata.normalize("NFC", str(value).strip())
    if not text:
        raise FieldError(reason, f"{what} is empty")
    if has_bad_text(text):
        raise FieldError(reason, f"{what} {printable(text)!r} is not valid UTF-8")
    if _has_control(text):
        raise FieldError(reason, f"{what} {text!r} contains control characters")
    return text


def id_key(clip_id: str) -> str:
    """What makes two ids the same clip: ids differing only in case are one clip (file systems on
    macOS/Windows and most datasets treat them so), so a second spelling is a duplicate."""
    return clip_id.casefold()


def is_safe_component(name: str) -> bool:
    """Whether ``name`` can be one path component inside a dataset root (no separators, no
    ``..``, no control characters): checked before a layout builds a path from an id."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\") and not _has_control(name)


def parse_text(value: Any, what: str, reason: str) -> str:
    """A transcript: a string (JSON null or absent: empty), valid UTF-8."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FieldError(reason, f"{what} is not a string (a {type(value).__name__})")
    if has_bad_text(value):
        raise FieldError(reason, f"{what} is not valid UTF-8")
    return value


def parse_media_path(value: Any, reason: str) -> str | None:
    """A media path relative to the dataset root (None: a text-only clip). Confinement to the root
    is checked where the root is known (``corpora.ingest``)."""
    if is_blank(value):
        return None
    if not isinstance(value, str):
        raise FieldError(reason, f"media path {value!r} is not a string (a {type(value).__name__})")
    if has_bad_text(value):
        raise FieldError(reason, f"media path {printable(value)!r} is not valid UTF-8")
    if _has_control(value):
        raise FieldError(reason, f"media path {value!r} contains control characters")
    return value.strip(_ASCII_SPACE)


class DuplicateKeyError(ValueError):
    """A JSON object names one key twice (``json`` would keep the last value silently)."""


def duplicates(what: str, names: Iterable[str]) -> str:
    """``duplicate <what> 'a'`` (``<what>s 'a', 'b'``) naming each name given more than once; "": none is."""
    twice = sorted(name for name, n in Counter(names).items() if n > 1)
    return f"duplicate {what}{'s' if len(twice) > 1 else ''} {', '.join(map(repr, twice))}" if twice else ""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads``: the object as a dict, or ``DuplicateKeyError``."""
    row = dict(pairs)
    if len(row) < len(pairs):
        raise DuplicateKeyError(duplicates("key", (key for key, _ in pairs)))
    return row


def load_json(text: str | bytes) -> Any:
    """``json.loads`` for what users hand us (manifest rows, word timings): an object naming a key
    twice, at any depth, is a ``DuplicateKeyError`` instead of its last value."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def parse_words(value: Any, duration: float | None, reason: str) -> list[dict[str, Any]] | None:
    """Word timings: a list (or its JSON text) of ``{"word": str, "start": s, "end": s}``, seconds
    from the clip start, ``start <= end``, inside ``[0, duration]`` give or take
    ``WORD_TOLERANCE_S`` (then clamped). ``duration`` None: a clip whose length the words define."""
    if is_blank(value):
        return None
    if isinstance(value, str):
        try:
            value = load_json(value)
        except DuplicateKeyError as exc:
            raise FieldError(reason, f"word timings: {exc}") from None
        except ValueError as exc:
            raise FieldError(reason, f"word timings are not valid JSON: {exc}") from None
    if not isinstance(value, list):
        raise FieldError(reason, f"word timings are not a list (a {type(value).__name__})")
    words = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not {"word", "start", "end"} <= item.keys():
            raise FieldError(reason, f"word {i} is not an object with word/start/end: {item!r}")
        word = item["word"]
        if not isinstance(word, str) or has_bad_text(word):
            raise FieldError(reason, f"word {i} is not a UTF-8 string: {word!r}")
        start = parse_number(item["start"], f"word {i} start", reason)
        end = parse_number(item["end"], f"word {i} end", reason)
        if end < start:
            raise FieldError(reason, f"word {i} {word!r} ends ({end:g} s) before it starts ({start:g} s)")
        limit = MAX_SECONDS if duration is None else duration
        if start < -WORD_TOLERANCE_S or end > limit + WORD_TOLERANCE_S:
            raise FieldError(
                reason, f"word {i} {word!r} from {start:g} to {end:g} s is outside the clip (0 to {limit:g} s)"
            )
        words.append({"word": word, "start": min(max(start, 0.0), limit), "end": min(max(end, 0.0), limit)})
    return words or None
