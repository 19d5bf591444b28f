"""What a transcript is once read (``Transcript``: cues with times and text, word timings where the
file has them), the error for a file that cannot be one, and the rules every reader shares: how
words become cues, how markup is stripped, how a file and an excerpt of it are named."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from corpora.fields import MAX_SECONDS, printable
from corpora.rows import Reject
from features.clips import Word

Format = Literal["words", "srt", "vtt", "txt"]
PAUSE_S = 0.5  # a silence this long between two words ends a cue built from word timings
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


def check_span(path: Path, what: str, start: float, end: float, reason: str) -> None:
    if end < start:
        raise SidecarError(reason, f"{shown(path)}: {what} ends ({end:g} s) before it starts ({start:g} s)")
    if start < 0 or end > MAX_SECONDS:
        raise SidecarError(reason, f"{shown(path)}: {what} {start:g}-{end:g} s is outside [0, {MAX_SECONDS:g}] s")


def clean_text(text: str) -> str:
    """Text without markup, entities decoded, whitespace (line breaks included) collapsed."""
    text = _TAG.sub("", _ASS_OVERRIDE.sub("", text))
    return _SPACE.sub(" ", html.unescape(text)).strip()


def shown(path: Path) -> str:
    return printable(str(path))


def excerpt(text: str, limit: int = 120) -> str:
    """At most ``limit`` characters of ``text``: a message must not carry a 50 MB line."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
