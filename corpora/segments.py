"""Cut a media file's time line into the clips ("segments") a model scores.

Two ways, chosen by ``SegmentConfig.mode``:

- **cues** (``auto`` with a timed transcript): consecutive cues are merged until a segment lasts at
  least ``min_seconds``, never across a silence longer than ``max_gap`` and never past
  ``max_seconds``; a short segment left over joins a neighbour when that keeps both rules. Cues
  that overlap in time stay in one segment (no boundary can pass between them). A segment longer
  than ``max_seconds`` (one long cue, or overlapping cues) is split between words: real word
  timings when the transcript has them, else the cue's words spread evenly over it (the
  ``features.clips.clip_words`` rule), into pieces of about equal length. A single word longer than
  ``max_seconds`` cannot be split: its segment stays longer. A segment of instantaneous cues is
  widened up to ``ZERO_SPAN_S``, or joins the segment starting at that instant. Cue segments cover
  the cues, not the silence between segments.
- **windows** (``windows``, or ``auto`` without a timed transcript): fixed windows of ``window``
  seconds every ``hop`` seconds covering ``[0, duration]``; the last one ends at ``duration``
  (never shorter than ``window - hop``). A window's text is that of the words (with word timings)
  or else whole cues overlapping it (an instant at the media end is in the last window). Cues
  after the media end are in no window: logged. A transcript without media spans its last cue's
  end (at least ``ZERO_SPAN_S``).

An untimed transcript (``.txt``) cannot be placed in time: on a media file no longer than
``max_seconds`` it becomes one segment with the whole text; on a longer one the text is dropped
(logged) and the media is cut into windows without text, since repeating one text in every window
would score it many times over.

Segment times are seconds on the media timeline, ``end`` clamped to the media duration; cues past
the end of the media give segments past it, which ingest rejects (``window_past_end``) rather
than dropping their text silently.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from corpora.sidecars.cues import Cue, Transcript
from features.clips import Word
from store.config_model import ConfigModel

log = logging.getLogger(__name__)

ZERO_SPAN_S = 1.0  # a segment of instantaneous cues is widened to this (up to the next segment)


class SegmentConfig(ConfigModel):
    """How new media is cut into scored segments (defaults: 3-12 s cue segments, 5 s windows every 2.5 s)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "cues", "windows"] = Field(
        "auto", description="auto: cues with a timed transcript, else windows; cues falls back to windows too"
    )
    min_seconds: float = Field(3.0, gt=0, description="merge consecutive cues until a segment lasts this long")
    max_seconds: float = Field(
        12.0, gt=0, description="split longer segments between words; also the longest media an untimed text covers"
    )
    max_gap: float = Field(2.0, ge=0, description="never merge cues across a silence longer than this (s)")
    window: float = Field(5.0, gt=0, description="fixed window length (s)")
    hop: float = Field(2.5, gt=0, description="fixed window step (s); at most window, so windows leave no gap")

    @model_validator(mode="after")
    def _consistent(self) -> SegmentConfig:
        if self.min_seconds > self.max_seconds:
            raise ValueError(f"min_seconds {self.min_seconds:g} is above max_seconds {self.max_seconds:g}")
        if self.hop > self.window:
            raise ValueError(f"hop {self.hop:g} is above window {self.window:g}: windows would leave gaps")
        return self


@dataclass(frozen=True)
class Segment:
    """One scored clip: ``start``/``end`` in seconds on the media timeline, ``words`` (real word
    timings only, else None) in seconds from the segment start, as the clip table stores them."""

    index: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class _Token:
    """A word with its media-time span; ``real`` when timed by the transcript, not spread evenly."""

    text: str
    start: float
    end: float
    real: bool


@dataclass
class _Span:
    start: float
    end: float
    tokens: list[_Token]
    texts: list[str]

    @property
    def duration(self) -> float:
        return self.end - self.start


def segment_media(transcript: Transcript | None, duration: float | None, config: SegmentConfig) -> list[Segment]:
    """The segments of one media file (``duration`` its length) or of a transcript without media
    (``duration`` None). Raises ``ValueError`` when neither gives a time span (an untimed
    transcript without media: ingest keeps that as one text-only clip)."""
    timed = transcript is not None and transcript.timed and bool(transcript.cues)
    if transcript is not None and not transcript.timed:
        if duration is None:
            raise ValueError(f"{transcript.path}: an untimed transcript without media has no time span")
        if duration <= config.max_seconds:
            return [Segment(0, 0.0, duration, transcript.text)]
        if transcript.text:
            log.warning("%s: untimed transcript of a %.1f s media (longer than max_seconds %g): "
                        "windows get no text", transcript.path, duration, config.max_seconds)
        return windows(None, duration, config)
    if not timed:
        if duration is None:
            raise ValueError("no media duration and no timed transcript: nothing gives a time span")
        return windows(None, duration, config)
    assert transcript is not None
    if config.mode == "windows":  # without media, the windows span the transcript (at least ZERO_SPAN_S)
        return windows(transcript, duration if duration is not None else max(transcript.end, ZERO_SPAN_S), config)
    return cue_segments(transcript.cues, duration, config)


# -- fixed windows ----------------------------------------------------------------------------
def window_spans(duration: float, window: float, hop: float) -> list[tuple[float, float]]:
    """``[k * hop, k * hop + window]`` until a window reaches ``duration`` (that one clamped to it)."""
    spans: list[tuple[float, float]] = []
    k = 0
    while True:
        start = k * hop
        end = start + window
        if end >= duration or math.isclose(end, duration):
            spans.append((start, duration))
            return spans
        spans.append((start, end))
        k += 1


def windows(transcript: Transcript | None, duration: float, config: SegmentConfig) -> list[Segment]:
    """Fixed windows over ``[0, duration]``, each with the text of the words, else the whole cues,
    overlapping it (a word or cue may so appear in two windows). Cues that start after the media
    end are in no window: logged, since windows cannot be rejected one by one as cue segments are."""
    spans = window_spans(duration, config.window, config.hop)
    out = []
    timed: Sequence[Word | Cue] = () if transcript is None else (transcript.words or transcript.cues)
    for i, ((a, b), inside) in enumerate(zip(spans, _in_windows(timed, spans))):
        text = " ".join(x.word if isinstance(x, Word) else x.text for x in inside)
        words = tuple(_relative(w.word, w.start, w.end, a, b) for w in inside if isinstance(w, Word)) or None
        out.append(Segment(i, a, b, text, words))
    past = sum(1 for x in timed if x.start > duration or (x.start == duration and x.end > x.start))
    if past and transcript is not None:
        log.warning("%s: %d of its %s start after the media end (%.2f s): they are in no window",
                    transcript.path, past, "words" if transcript.words else "cues", duration)
    return out


def _in_windows(items: Sequence[Word | Cue], spans: Sequence[tuple[float, float]]) -> list[list[Word | Cue]]:
    """The items (in their order) overlapping each window, in one sweep: windows start in order, so an
    item that ended before one window cannot reach a later one (a long transcript stays linear)."""
    order = sorted(range(len(items)), key=lambda k: items[k].start)
    out: list[list[Word | Cue]] = []
    active: list[int] = []
    nxt = 0
    for i, (a, b) in enumerate(spans):
        last = i == len(spans) - 1
        while nxt < len(order) and (items[order[nxt]].start < b or (last and items[order[nxt]].start <= b)):
            active.append(order[nxt])
            nxt += 1
        active = [k for k in active if items[k].end > a or items[k].start >= a]
        out.append([items[k] for k in sorted(active) if _overlaps(items[k].start, items[k].end, a, b, last)])
    return out


def _overlaps(start: float, end: float, a: float, b: float, closed: bool = False) -> bool:
    """Whether ``[start, end]`` shares time with ``[a, b)``; an instant counts inside ``[a, b)``, or
    ``[a, b]`` for the ``closed`` last window (an instant at the media end is still in it)."""
    if end > start:
        return start < b and end > a
    return a <= start < b or (closed and start == b)


# -- cue segments -----------------------------------------------------------------------------
def cue_segments(cues: Sequence[Cue], duration: float | None, config: SegmentConfig) -> list[Segment]:
    """Cues merged to ``[min_seconds, max_seconds]`` segments, split between words when longer (see
    the module docstring); ``duration`` None for a transcript without media."""
    spans = _grow(_atoms(cues), config)
    pieces = [p for s in spans for p in (_split(s, config) if s.duration > config.max_seconds else [s])]
    pieces = _fold_short(pieces, config)
    pieces = _widen_instants(pieces, duration, min(ZERO_SPAN_S, config.max_seconds))
    out = []
    for i, p in enumerate(pieces):
        end = p.end if duration is None or p.start >= duration else min(p.end, duration)
        real = [t for t in p.tokens if t.real]
        words = tuple(_relative(t.text, t.start, t.end, p.start, end) for t in real) if real else None
        out.append(Segment(i, p.start, end, " ".join(p.texts), words))
    return out


def _tokens(cue: Cue) -> list[_Token]:
    if cue.words:
        return [_Token(w.word, w.start, w.end, True) for w in cue.words]
    words = cue.text.split()
    step = (cue.end - cue.start) / max(len(words), 1)
    return [_Token(w, cue.start + k * step, cue.start + (k + 1) * step, False) for k, w in enumerate(words)]


def _atoms(cues: Sequence[Cue]) -> list[_Span]:
    """Runs of cues overlapping in time (sorted by start): no segment boundary can pass inside one."""
    atoms: list[_Span] = []
    for cue in sorted(cues, key=lambda c: (c.start, c.end)):
        if atoms and cue.start < atoms[-1].end:
            atom = atoms[-1]
            atom.end = max(atom.end, cue.end)
            atom.tokens += _tokens(cue)
            atom.texts.append(cue.text)
        else:
            atoms.append(_Span(cue.start, cue.end, _tokens(cue), [cue.text]))
    return atoms


def _joinable(a: _Span, b: _Span, config: SegmentConfig) -> bool:
    """``a`` then ``b`` can be one segment: no long silence between them, not too long together."""
    return b.start - a.end <= config.max_gap and b.end - a.start <= config.max_seconds


def _join(a: _Span, b: _Span) -> _Span:
    return _Span(a.start, max(a.end, b.end), a.tokens + b.tokens, a.texts + b.texts)


def _grow(atoms: list[_Span], config: SegmentConfig) -> list[_Span]:
    """Greedy: add the next cues to a segment until it lasts ``min_seconds`` (where ``_joinable``)."""
    spans: list[_Span] = []
    for atom in atoms:
        if spans and spans[-1].duration < config.min_seconds and _joinable(spans[-1], atom, config):
            spans[-1] = _join(spans[-1], atom)
        else:
            spans.append(atom)
    return spans


def _fold_short(spans: list[_Span], config: SegmentConfig) -> list[_Span]:
    """Fold each segment still shorter than ``min_seconds`` into its previous neighbour, else its
    next one, where ``_joinable`` allows (after splitting, so a piece of a long cue can take it)."""
    spans = list(spans)
    i = 0
    while i < len(spans):
        if spans[i].duration < config.min_seconds:
            if i > 0 and _joinable(spans[i - 1], spans[i], config):
                spans[i - 1 : i + 1] = [_join(spans[i - 1], spans[i])]
                continue
            if i + 1 < len(spans) and _joinable(spans[i], spans[i + 1], config):
                spans[i : i + 2] = [_join(spans[i], spans[i + 1])]
                continue
        i += 1
    return spans


def _split(span: _Span, config: SegmentConfig) -> list[_Span]:
    """A too-long span cut between tokens into pieces of about ``duration / ceil(duration / max)``
    seconds, none longer than ``max_seconds`` unless one token is. A cut falls in the silence
    between two tokens (its middle, at most ``max_seconds`` from the piece start) and only where no
    earlier token is still running."""
    target = span.duration / math.ceil(span.duration / config.max_seconds)
    pieces: list[_Span] = []
    start, running = span.start, span.start
    current: list[_Token] = []
    for tok in span.tokens:
        if current and tok.start >= running:
            too_long = tok.end - start > config.max_seconds
            # cut before tok when ending after it would overshoot the target more than ending before undershoots
            past_target = tok.end - start - target > target - (running - start) and tok.end - start > target
            if too_long or past_target:
                cut = min((running + tok.start) / 2, start + config.max_seconds)
                pieces.append(_Span(start, cut, current, [" ".join(t.text for t in current)]))
                start, current = cut, []
        current.append(tok)
        running = max(running, tok.end)
    pieces.append(_Span(start, span.end, current, [" ".join(t.text for t in current)]))
    return pieces


def _widen_instants(pieces: list[_Span], duration: float | None, span: float) -> list[_Span]:
    """Give a zero-length segment (instantaneous cues alone) up to ``span`` seconds, without reaching
    the next segment or the media end, so it can be a clip. One that has no room (the next segment
    starts at the same instant) joins that segment, or the previous one when that ends there: a
    zero-length clip would be rejected and its text lost. Pieces at or past the media end stay as
    they are (ingest rejects them as past the end)."""
    out: list[_Span] = []
    for i, p in enumerate(pieces):
        if p.end <= p.start and (duration is None or p.start < duration):
            limit = pieces[i + 1].start if i + 1 < len(pieces) else math.inf
            if duration is not None:
                limit = min(limit, duration)
            p.end = max(p.end, min(p.start + span, limit))
            if p.end <= p.start:
                if out and out[-1].end >= p.start:
                    out[-1] = _join(out[-1], p)
                    continue
                if i + 1 < len(pieces):
                    pieces[i + 1] = _join(p, pieces[i + 1])
                    continue
        out.append(p)
    return out


def _relative(text: str, start: float, end: float, a: float, b: float) -> Word:
    """A word's span in seconds from the segment start ``a``, clipped to the segment ``[a, b]``."""
    return Word(text, min(max(start - a, 0.0), b - a), min(max(end - a, 0.0), b - a))
