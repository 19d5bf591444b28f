"""What a clip is to the extractors and the aligner: its inputs and the one rule for its words."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Word:
    """One transcript word with its span in seconds from the clip start."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class ClipInput:
    """What an extractor needs to know about one clip (a row of the clip table)."""

    clip_id: str
    media_uri: str | None
    start: float | None  # window start within the media, seconds (None: from 0)
    end: float | None  # window end within the media, seconds (None: to the end)
    text: str
    duration: float  # clip duration in seconds (end - start, or the media duration)
    words: tuple[Word, ...] | None = None

    @property
    def offset(self) -> float:
        return self.start or 0.0


def clip_words(clip: ClipInput | Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """The clip's words and their spans [n, 2]: the given word timings, else the whitespace-split
    transcript spread evenly over the clip duration. The one rule for the text extractor (a
    ``ClipInput``) and the aligner (a clip-table row), so a text set's ``word_index`` indexes exactly
    the words the aligner pools onto."""
    if isinstance(clip, ClipInput):
        given = [(w.word, w.start, w.end) for w in clip.words or ()]
        text, duration = clip.text, clip.duration
    else:
        given = [(w["word"], w["start"], w["end"]) for w in clip.get("words") or ()]
        text, duration = clip.get("text") or "", float(clip.get("duration") or 0.0)
    if given:
        return [w for w, _, _ in given], np.array([[a, b] for _, a, b in given], dtype=np.float64).reshape(-1, 2)
    words = text.split()
    edges = np.linspace(0.0, max(duration, 0.0), len(words) + 1)
    return words, np.stack([edges[:-1], edges[1:]], axis=1).reshape(len(words), 2)
