"""A long demo video (a minute or more) of back-to-back planted segments, with an ``.srt`` sidecar.

Why it exists: ``emoflow demo`` ends by predicting on unseen input the way a user would run it: one
long file plus subtitles, not a table of pre-cut clips. Each segment is rendered by
:func:`corpora.synth.generate.render_clip`, the function that renders the sample dataset's clips, so
the text, audio and vision signals follow exactly the same rules and a model trained on the sample
dataset can score the segments; the known per-segment labels let a test check that its scores follow
them.

What differs from the sample dataset is only the *draw* of the components: labels are spread evenly
over [-3, 3] (seeded jitter within equal bins, both signs present) rather than the sum of three
independent draws, which piles up near 0 and would make "the scores follow the labels" a weak check.
Each segment's components ``(t, a, v)`` lie on the same 5-level grid and sum to its target label
(plus the same small label noise).

Segments lie back to back on one frame grid (:class:`corpora.synth.encode.Timeline`), so picture and
sound run without gaps and stay in sync in a single H.264/AAC mp4, the codecs of the sample clips.
Subtitles follow common practice: a cue per sentence, at most two lines of 42 characters, a
sentence that does not fit split into several cues at word boundaries; each cue spans its words
exactly (millisecond precision), so every cue lies inside its segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import srt

from corpora.synth.encode import Timeline
from corpora.synth.generate import render_clip
from corpora.synth.plan import opinion_sentence
from corpora.synth.signals import AUDIO_SAMPLE_RATE, FRAME_SIZE
from features.clips import Word

_GRID = np.linspace(-1.0, 1.0, 5)  # component levels, as in the sample dataset (levels=5)
_TRIPLES = np.array([(t, a, v) for t in _GRID for a in _GRID for v in _GRID])
_LINE_CHARS = 42  # subtitle line length and line count most style guides use
_CUE_LINES = 2


@dataclass(frozen=True)
class PlantedSegment:
    """One segment of a long video: its window and label, what is said, and its planted components.

    ``start``/``end`` are seconds in the video (frame boundaries); ``words`` are timed in seconds
    of the video too (not of the segment), so they line up with the ``.srt`` cues.
    """

    start: float
    end: float
    label: float
    text: str
    t: float
    a: float
    v: float
    words: tuple[Word, ...]

    @property
    def components(self) -> tuple[float, float, float]:
        return (self.t, self.a, self.v)


@dataclass(frozen=True)
class LongVideo:
    """What :func:`generate_long_video` wrote: the mp4, its ``.srt`` sidecar and the planted truth."""

    media: Path
    srt: Path
    segments: list[PlantedSegment]
    seed: int
    fps: int
    duration: float  # seconds: whole frames, == segments[-1].end

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.segments], dtype=np.float64)

    def segment_at(self, time: float) -> PlantedSegment | None:
        """The segment whose window holds ``time`` (seconds), if any."""
        for s in self.segments:
            if s.start <= time < s.end:
                return s
        return None


def generate_long_video(
    out_dir: str | Path,
    seed: int = 0,
    n_segments: int | None = None,
    segment_seconds: float | tuple[float, float] = (5.0, 6.0),
    *,
    minutes: float | None = None,
    fps: int = 15,
    size: tuple[int, int] = FRAME_SIZE,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    label_noise: float = 0.05,
    name: str = "long",
) -> LongVideo:
    """Write ``<out_dir>/<name>.mp4`` and ``<name>.srt``: planted segments with known labels.

    Length: ``n_segments`` segments (default 12: 60-72 s with the default 5-6 s segments), or, with
    ``minutes``, as many segments as it takes to reach that length (``minutes=10`` for benchmarks).
    ``segment_seconds`` is a fixed length or a (min, max) range drawn per segment. Everything is a
    function of the arguments: the same seed gives the same bytes.
    """
    if n_segments is not None and minutes is not None:
        raise ValueError("give n_segments or minutes, not both")
    if n_segments is not None and n_segments < 1:
        raise ValueError("n_segments must be >= 1")
    if minutes is not None and minutes <= 0:
        raise ValueError("minutes must be > 0")
    lo, hi = (segment_seconds, segment_seconds) if isinstance(segment_seconds, int | float) else segment_seconds
    if not 1.0 <= lo <= hi:
        raise ValueError(f"segment_seconds must be >= 1 s (min <= max), got {segment_seconds}")
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"size must have an even width and height (H.264 4:2:0), got {size}")
    out_dir = Path(out_dir).resolve()
    media, sidecar = out_dir / f"{name}.mp4", out_dir / f"{name}.srt"

    rng = np.random.default_rng([seed, 0x1046])
    frames = _segment_frames(rng, lo, hi, fps, n_segments, minutes)
    labels_at = _spread_targets(len(frames), rng)
    timeline = Timeline(fps, sample_rate)
    segments: list[PlantedSegment] = []
    for i, (n_frames, target) in enumerate(zip(frames, labels_at, strict=True)):
        t, a, v = (float(c) for c in _TRIPLES[rng.choice(np.flatnonzero(np.isclose(_TRIPLES.sum(1), target)))])
        label = round(float(np.clip(target + rng.normal(0.0, label_noise), -3.0, 3.0)), 3) + 0.0
        text = opinion_sentence(t, rng)
        crng = np.random.default_rng([seed, 0x1046, i])
        r = render_clip(text, a, v, n_frames=n_frames, fps=fps, size=size, sample_rate=sample_rate, rng=crng)
        start, end = timeline.append(r.yuv, r.audio)
        words = tuple(Word(w.word, start + w.start, start + w.end) for w in r.words)
        segments.append(PlantedSegment(start, end, label, text, t, a, v, words))
    timeline.encode(media)
    write_srt(sidecar, segments)
    return LongVideo(media, sidecar, segments, seed, fps, timeline.duration)


def _segment_frames(
    rng: np.random.Generator, lo: float, hi: float, fps: int, n_segments: int | None, minutes: float | None
) -> list[int]:
    """Frame count per segment: ``n_segments`` of them (default 12), or enough to last ``minutes``."""

    def draw() -> int:
        return max(1, int(round(float(rng.uniform(lo, hi)) * fps)))

    if minutes is None:
        return [draw() for _ in range(n_segments or 12)]
    want = math.ceil(minutes * 60.0 * fps - 1e-9)
    out: list[int] = []
    while sum(out) < want:
        out.append(draw())
    return out


def _spread_targets(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` component sums spread evenly over [-3, 3] on the 0.5 grid, shuffled, both signs when n > 1.

    One draw per equal-width bin (seeded jitter inside it), so a short video still spans the range.
    """
    edges = np.linspace(-3.0, 3.0, n + 1)
    for _ in range(1000):
        targets = np.round(rng.uniform(edges[:-1], edges[1:]) * 2.0) / 2.0
        if n < 2 or (targets.min() < 0 < targets.max()):
            break
    return rng.permutation(targets)


# --------------------------------------------------------------------------------------------
# Subtitles
# --------------------------------------------------------------------------------------------


def _wrap(words: list[str]) -> list[str] | None:
    """Greedy wrap into lines of <= 42 characters; None if that takes more than two lines."""
    lines: list[str] = []
    for w in words:
        if lines and len(lines[-1]) + 1 + len(w) <= _LINE_CHARS:
            lines[-1] += " " + w
        else:
            lines.append(w)
    return lines if len(lines) <= _CUE_LINES else None


def _cues(words: tuple[Word, ...]) -> list[tuple[float, float, str]]:
    """Split one sentence into the fewest cues that fit (near-equal word counts): (start, end, text)."""
    for k in range(1, len(words) + 1):
        bounds = np.linspace(0, len(words), k + 1).round().astype(int)
        chunks = [words[b0:b1] for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True)]
        wrapped = [_wrap([w.word for w in c]) for c in chunks]
        if all(lines is not None for lines in wrapped):
            return [(c[0].start, c[-1].end, "\n".join(lines or [])) for c, lines in zip(chunks, wrapped, strict=True)]
    raise ValueError("a single word longer than a subtitle line")  # pragma: no cover


def write_srt(path: Path, segments: list[PlantedSegment]) -> Path:
    """Write the SubRip sidecar: one or more cues per segment, each inside its segment's window.

    Times are rounded inwards to whole milliseconds (SRT's resolution), so a cue never starts before
    or ends after the words it shows, and never crosses a segment boundary.
    """
    subs = []
    for seg in segments:
        lo_ms, hi_ms = math.ceil(seg.start * 1000.0 - 1e-6), math.floor(seg.end * 1000.0 + 1e-6)
        for start, end, text in _cues(seg.words):
            s_ms = max(lo_ms, math.ceil(start * 1000.0 - 1e-6))
            e_ms = min(hi_ms, math.floor(end * 1000.0 + 1e-6))
            subs.append(srt.Subtitle(None, timedelta(milliseconds=s_ms), timedelta(milliseconds=e_ms), text))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(srt.compose(subs), encoding="utf-8")
    return path
