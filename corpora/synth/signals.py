"""The planted signals of the demo data: lexicon, clip records, signal mappings and rendering."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from features.clips import Word

Layout = Literal["manifest", "mmsa", "mosi"]
Split = Literal["train", "valid", "test"]

AUDIO_SAMPLE_RATE = 16_000
FRAME_SIZE = (160, 120)  # (width, height)
NEGATIVE_RGB = np.array([30.0, 70.0, 190.0])  # blue background at v = -1
POSITIVE_RGB = np.array([235.0, 140.0, 30.0])  # warm orange background at v = +1
_SHAPE_GREY = 225  # R == G == B, so the moving shape never shifts the hue signal

# Sentiment lexicon: slot score -> words. A sentence has two clause slots; its text polarity is the
# mean slot score (neutral clauses score 0), which equals the planted ``t`` (on a 0.25 grid).
LEXICON: dict[float, tuple[str, ...]] = {
    1.0: ("wonderful", "brilliant", "amazing", "fantastic", "excellent", "superb", "outstanding"),
    0.5: ("good", "nice", "pleasant", "enjoyable", "decent", "likeable"),
    -0.5: ("bad", "dull", "boring", "weak", "poor", "disappointing"),
    -1.0: ("terrible", "awful", "horrible", "dreadful", "atrocious", "pathetic", "disgusting"),
}
_WORD_SCORE = {w: s for s, words in LEXICON.items() for w in words}


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthClip:
    """One generated clip: its planted components, transcript and where its media lies.

    ``media`` is the absolute path of the file holding the clip; ``start``/``end`` are the window in
    that file in seconds (``None`` = the whole file; set in the ``mosi`` layout). ``words`` are in
    seconds from the clip start. ``clip_id`` is ``f"{video_id}_{local_id}"`` in every layout.
    """

    clip_id: str
    video_id: str
    local_id: str
    index: int  # position in generation order; seeds the clip's rendering
    split: Split
    t: float
    a: float
    v: float
    label: float
    text: str
    words: tuple[Word, ...]
    fps: int
    n_frames: int
    n_samples: int
    duration: float  # n_frames / fps, seconds
    media: Path
    start: float | None = None
    end: float | None = None

    @property
    def components(self) -> tuple[float, float, float]:
        return (self.t, self.a, self.v)

    @property
    def label_tav(self) -> tuple[float, float, float]:
        """Per-modality labels as MMSA writes them: components scaled to [-3, 3]."""
        t, a, v = (float(np.clip(3.0 * c, -3.0, 3.0)) for c in self.components)
        return t, a, v


@dataclass(frozen=True)
class GeneratedDataset:
    """What :func:`generate_dataset` wrote. ``manifest`` is the layout's main table."""

    root: Path
    layout: Layout
    seed: int
    manifest: Path  # manifest.csv | label.csv | segments.csv
    clips: tuple[SynthClip, ...]
    files: tuple[Path, ...] = field(default=())  # every file written (tables and media)

    def by_id(self) -> dict[str, SynthClip]:
        return {c.clip_id: c for c in self.clips}

    @property
    def labels(self) -> np.ndarray:
        return np.array([c.label for c in self.clips], dtype=np.float64)

    @property
    def components(self) -> np.ndarray:
        """[n_clips, 3] array of the planted (t, a, v)."""
        return np.array([c.components for c in self.clips], dtype=np.float64)

    @property
    def video_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.video_id for c in self.clips))


# --------------------------------------------------------------------------------------------
# Signal mappings (public so tests and docs can invert them)
# --------------------------------------------------------------------------------------------


def background_rgb(v: float) -> np.ndarray:
    """Background colour for vision component ``v``: linear blue -> orange, so R - B tracks ``v``."""
    w = (float(np.clip(v, -1.0, 1.0)) + 1.0) / 2.0
    return (1.0 - w) * NEGATIVE_RGB + w * POSITIVE_RGB


def pitch_hz(a: float) -> float:
    """Fundamental frequency for audio component ``a``: 150 Hz * 2^(0.8 a), ~86..261 Hz."""
    return 150.0 * 2.0 ** (0.8 * float(np.clip(a, -1.0, 1.0)))


def text_polarity(text: str) -> float:
    """Mean score of the two clause slots, read back from the lexicon (equals the planted ``t``)."""
    return sum(_WORD_SCORE.get(w, 0.0) for w in text.split()) / 2.0


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _speaking(times: np.ndarray, words: Sequence[Word]) -> np.ndarray:
    """1.0 where a word is being spoken at ``times`` (seconds), else 0.0."""
    out = np.zeros(times.shape, dtype=np.float64)
    for w in words:
        out[(times >= w.start) & (times < w.end)] = 1.0
    return out


@dataclass(frozen=True)
class Scene:
    """What a clip's picture is: a static background plus one grey box per frame (x0, x1, y0, y1)."""

    background: np.ndarray  # [H, W, 3] uint8
    boxes: np.ndarray  # [n_frames, 4] int


def make_scene(
    n_frames: int,
    fps: float,
    v: float,
    size: tuple[int, int],
    words: Sequence[Word],
    rng: np.random.Generator,
) -> Scene:
    width, height = size
    bg = background_rgb(v)
    grad = np.linspace(-12.0, 12.0, height)[:, None, None]  # brightness gradient, zero mean
    column = np.clip(bg[None, None, :] + grad, 0, 255).astype(np.uint8)
    background = np.ascontiguousarray(np.broadcast_to(column, (height, width, 3)))
    side = int(rng.integers(max(4, min(size) // 6), max(5, min(size) // 3)))
    phase = float(rng.uniform(0.0, 2.0 * math.pi))
    speed = float(rng.uniform(0.6, 1.4))  # radians per second around the ellipse
    times = (np.arange(n_frames) + 0.5) / fps
    half_h = side / 2 * (1.0 + 0.5 * _speaking(times, words))  # the box "talks" while a word is on
    cx = width / 2 + (width / 2 - side) * 0.8 * np.cos(phase + speed * times)
    cy = height / 2 + (height / 2 - side) * 0.6 * np.sin(phase + speed * times)
    boxes = np.stack(
        [
            np.maximum(0, cx - side / 2).astype(int),
            np.minimum(width, cx + side / 2).astype(int),
            np.maximum(0, cy - half_h).astype(int),
            np.minimum(height, cy + half_h).astype(int),
        ],
        axis=1,
    )
    return Scene(background, boxes)


def scene_rgb(scene: Scene) -> np.ndarray:
    frames = np.empty((len(scene.boxes), *scene.background.shape), dtype=np.uint8)
    frames[:] = scene.background
    for frame, (x0, x1, y0, y1) in zip(frames, scene.boxes, strict=True):
        frame[y0:y1, x0:x1] = _SHAPE_GREY
    return frames


def scene_yuv(scene: Scene) -> np.ndarray:
    """Same pixels as ``rgb_to_yuv420p(scene_rgb(scene))``, converting only each box's area."""
    height, width = scene.background.shape[:2]
    n = len(scene.boxes)
    base = rgb_to_yuv420p(scene.background[None])[0]
    out = np.empty((n, *base.shape), dtype=np.uint8)
    out[:] = base
    y_plane, u_plane, v_plane = _planes(out, height, width)
    for i, (x0, x1, y0, y1) in enumerate(scene.boxes):
        if x1 <= x0 or y1 <= y0:
            continue
        ex0, ey0 = x0 - x0 % 2, y0 - y0 % 2  # whole 2x2 chroma blocks
        ex1, ey1 = min(width, x1 + x1 % 2), min(height, y1 + y1 % 2)
        crop = scene.background[ey0:ey1, ex0:ex1].copy()
        crop[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0] = _SHAPE_GREY
        cy, cu, cv = _planes(rgb_to_yuv420p(crop[None]), ey1 - ey0, ex1 - ex0)
        y_plane[i, ey0:ey1, ex0:ex1] = cy[0]
        u_plane[i, ey0 // 2 : ey1 // 2, ex0 // 2 : ex1 // 2] = cu[0]
        v_plane[i, ey0 // 2 : ey1 // 2, ex0 // 2 : ex1 // 2] = cv[0]
    return out


def render_frames(
    n_frames: int,
    fps: float,
    v: float,
    *,
    size: tuple[int, int] = FRAME_SIZE,
    words: Sequence[Word] = (),
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """RGB frames [n, H, W, 3] uint8: background colour from ``v`` + a moving, "talking" grey square.

    A small vertical gradient and the square keep frames non-constant without moving the mean hue.
    """
    return scene_rgb(make_scene(n_frames, fps, v, size, words, rng or np.random.default_rng(0)))


def render_audio(
    n_samples: int,
    a: float,
    words: Sequence[Word],
    *,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    rng: np.random.Generator | None = None,
    noise: float = 0.003,
) -> np.ndarray:
    """Mono float32 audio: one harmonic voice-like burst per word, light noise everywhere.

    ``a`` sets the pitch (:func:`pitch_hz`), the spectral tilt (brighter when positive: visible in
    MFCCs) and the loudness contour over the utterance (rising when positive, falling when negative).
    """
    rng = rng or np.random.default_rng(0)
    a = float(np.clip(a, -1.0, 1.0))
    y = rng.normal(0.0, noise, n_samples)
    f0 = pitch_hz(a)
    tilt = 1.4 - 0.5 * a
    base_gain = 0.22 * (1.0 + 0.25 * a)
    n_harm = max(1, min(12, int(3800.0 // (f0 * 1.1))))
    k = np.arange(1, n_harm + 1, dtype=np.float64)
    amps = k**-tilt
    amps /= amps.sum()
    n_words = max(1, len(words))
    for i, w in enumerate(words):
        s0 = max(0, int(round(w.start * sample_rate)))
        s1 = min(n_samples, int(round(w.end * sample_rate)))
        if s1 - s0 < 8:
            continue
        tt = np.arange(s1 - s0) / sample_rate
        span = max(tt[-1], 1e-3)
        pos = (i + 0.5) / n_words
        gain = base_gain * (1.0 + 0.35 * a * (2.0 * pos - 1.0))
        f_word = f0 * (1.0 + 0.02 * rng.standard_normal())
        glide = 1.0 + 0.04 * a * (tt / span - 0.5)  # intonation: rises when positive
        phase = 2.0 * math.pi * np.cumsum(f_word * glide) / sample_rate
        tone = np.sin(np.outer(phase, k)) @ amps
        env = np.minimum(1.0, np.minimum(tt / 0.015, (span - tt) / 0.03).clip(0.0))
        y[s0:s1] += gain * env * tone
    return np.clip(y, -0.99, 0.99).astype(np.float32)


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 RGB -> [N, H * 3 / 2, W] uint8 planar YUV 4:2:0 (PyAV's yuv420p layout).

    Integer BT.601 limited range (what decoders assume for an untagged SD stream), done here so
    the encoder's input is exact integer maths, independent of swscale's CPU-specific code paths.
    """
    n, height, width = rgb.shape[:3]
    x = rgb.astype(np.int32)  # integer maths: exact, so identical on every run and machine
    y = (np.tensordot(x, np.array([66, 129, 25], np.int32), axes=([3], [0])) + 128 >> 8) + 16
    quad = x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]  # 4x 2x2 mean
    coef = np.array([[-38, 112], [-74, -94], [112, -18]], np.int32)
    uv = ((np.tensordot(quad, coef, axes=([3], [0])) + 512) >> 10) + 128
    flat = np.concatenate(
        [y.reshape(n, -1), uv[..., 0].reshape(n, -1), uv[..., 1].reshape(n, -1)], axis=1
    )
    return flat.clip(0, 255).astype(np.uint8).reshape(n, height * 3 // 2, width)


def _planes(yuv: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y [N, H, W], U and V [N, H/2, W/2] planes inside packed [N, H * 3 / 2, W] frames."""
    flat = yuv.reshape(len(yuv), -1)
    luma, chroma = height * width, (height // 2) * (width // 2)
    return (
        flat[:, :luma].reshape(-1, height, width),
        flat[:, luma : luma + chroma].reshape(-1, height // 2, width // 2),
        flat[:, luma + chroma :].reshape(-1, height // 2, width // 2),
    )
