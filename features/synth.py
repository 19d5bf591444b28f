"""A seeded generator of a small but real multimodal sentiment dataset (the embedded demo data).

Why it exists: ``emoflow demo`` and the core tests must run on a fresh machine with nothing but the
install, and the real corpora (MOSI, MELD) ship no video. So we write real H.264/AAC ``.mp4`` files
with PyAV whose *content* carries the label, one planted component per modality:

* ``t`` (text): the transcript's sentiment words ("wonderful", "dull", ...); neutral filler otherwise.
* ``a`` (audio): a harmonic, voice-like tone per word: pitch (low = negative, high = positive),
  spectral tilt and a loudness contour follow ``a``; silence (light noise) between words.
* ``v`` (vision): the background colour runs from blue (negative) to warm orange (positive); a
  neutral grey square moves and "talks" (grows while a word is spoken) so frames are not constant.

``label = clip(t + a + v + noise, -3, 3)`` with ``t, a, v`` drawn independently (balanced over a
few levels), so no single modality predicts the label well and a fusion model beats each one.

Three on-disk layouts are written, the ones ingest reads: ``manifest`` (CSV + JSONL),
``mmsa`` (``label.csv`` + ``Raw/<video_id>/<clip_id>.mp4``) and ``mosi`` (CMU-MOSI style long
videos with segment windows, ``.annotprocessed`` transcripts and folds). Whatever the layout, the
canonical clip id is ``<video_id>_<local_id>`` with a zero-padded ``local_id`` such as ``"0001"``
(read those columns as strings).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from features.base import Word

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "FRAME_SIZE",
    "LEXICON",
    "NEGATIVE_RGB",
    "POSITIVE_RGB",
    "GeneratedDataset",
    "Layout",
    "SynthClip",
    "background_rgb",
    "generate_dataset",
    "pitch_hz",
    "render_audio",
    "render_frames",
    "text_polarity",
    "truncate_file",
    "write_clip",
]

Layout = Literal["manifest", "mmsa", "mosi"]
Split = Literal["train", "valid", "test"]

AUDIO_SAMPLE_RATE = 16_000
FRAME_SIZE = (160, 120)  # (width, height)
NEGATIVE_RGB = np.array([30.0, 70.0, 190.0])  # blue background at v = -1
POSITIVE_RGB = np.array([235.0, 140.0, 30.0])  # warm orange background at v = +1
_SHAPE_GREY = 225  # R == G == B, so the moving shape never shifts the hue signal
_FILLER_GREY = 128  # mosi_gap filler frames

# Sentiment lexicon: slot score -> words. A sentence has two clause slots; its text polarity is the
# mean slot score (neutral clauses score 0), which equals the planted ``t`` (on a 0.25 grid).
LEXICON: dict[float, tuple[str, ...]] = {
    1.0: ("wonderful", "brilliant", "amazing", "fantastic", "excellent", "superb", "outstanding"),
    0.5: ("good", "nice", "pleasant", "enjoyable", "decent", "likeable"),
    -0.5: ("bad", "dull", "boring", "weak", "poor", "disappointing"),
    -1.0: ("terrible", "awful", "horrible", "dreadful", "atrocious", "pathetic", "disgusting"),
}
_WORD_SCORE = {w: s for s, words in LEXICON.items() for w in words}
_NOUNS = ("movie", "film", "story", "plot", "acting", "ending", "soundtrack", "script", "cast")
_VERBS = ("was", "felt", "seemed")
_NEUTRAL_CLAUSES = (
    "it lasted about two hours",
    "it came out last year",
    "i watched it on a friday",
    "it was filmed in canada",
    "i saw it with my brother",
    "it is based on a book",
    "the theater was on main street",
    "there were many people there",
)
_OPENERS = ("", "", "so", "well", "i think", "honestly", "you know", "to be honest", "basically")
_CONNECTORS = ("and", "and", "and also", "while")
_SLOT_SCORES = (-1.0, -0.5, 0.0, 0.5, 1.0)


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
        return tuple(float(np.clip(3.0 * c, -3.0, 3.0)) for c in self.components)  # type: ignore[return-value]


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
class _Scene:
    """What a clip's picture is: a static background plus one grey box per frame (x0, x1, y0, y1)."""

    background: np.ndarray  # [H, W, 3] uint8
    boxes: np.ndarray  # [n_frames, 4] int


def _scene(
    n_frames: int,
    fps: float,
    v: float,
    size: tuple[int, int],
    words: Sequence[Word],
    rng: np.random.Generator,
) -> _Scene:
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
    return _Scene(background, boxes)


def _scene_rgb(scene: _Scene) -> np.ndarray:
    frames = np.empty((len(scene.boxes), *scene.background.shape), dtype=np.uint8)
    frames[:] = scene.background
    for frame, (x0, x1, y0, y1) in zip(frames, scene.boxes, strict=True):
        frame[y0:y1, x0:x1] = _SHAPE_GREY
    return frames


def _scene_yuv(scene: _Scene) -> np.ndarray:
    """Same pixels as ``_rgb_to_yuv420p(_scene_rgb(scene))``, converting only each box's area."""
    height, width = scene.background.shape[:2]
    n = len(scene.boxes)
    base = _rgb_to_yuv420p(scene.background[None])[0]
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
        cy, cu, cv = _planes(_rgb_to_yuv420p(crop[None]), ey1 - ey0, ex1 - ex0)
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
    return _scene_rgb(_scene(n_frames, fps, v, size, words, rng or np.random.default_rng(0)))


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


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
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


# Constant QP, P-frames only, no lookahead. With CRF + mbtree + B-frames (x264's defaults), about
# 1 encode in 100 came out different in another process from identical input (always in the
# right-most macroblock column, i.e. something reads frame-border memory); with the lookahead off,
# 33 full 24-clip runs (several in parallel) were byte-identical. Files stay ~20-45 KB.
_X264_OPTIONS = {
    "preset": "veryfast",
    "x264-params": "bframes=0:scenecut=0:rc-lookahead=0:mbtree=0:sync-lookahead=0:weightp=0",
}


def _encode(
    path: Path,
    *,
    frames: np.ndarray | None = None,
    yuv: np.ndarray | None = None,
    fps: int | Fraction,
    audio: np.ndarray | None,
    sample_rate: int,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    qp: int = 30,
    audio_bitrate: int = 32_000,
) -> None:
    """Mux video and/or audio [samples] or [channels, samples] into one file with PyAV.

    Video is RGB ``frames`` [N, H, W, 3] or, cheaper, packed ``yuv`` 4:2:0 [N, H * 3 / 2, W].

    Single-threaded x264 and no timestamps in the header keep the bytes identical across runs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    fmt = {".m4a": "mp4", ".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}.get(path.suffix.lower())
    with av.open(str(tmp), mode="w", format=fmt) as container:
        container.metadata.clear()
        vstream = astream = None
        if frames is not None and yuv is None and video_codec == "libx264":
            if frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0:
                yuv = _rgb_to_yuv420p(frames)
        if yuv is not None:
            height, width = yuv.shape[1] * 2 // 3, yuv.shape[2]
        elif frames is not None:
            height, width = frames.shape[1:3]
        if frames is not None or yuv is not None:
            rate = Fraction(fps)
            options = _X264_OPTIONS | {"qp": str(qp)} if video_codec == "libx264" else {}
            vstream = container.add_stream(video_codec, rate=rate, options=options)
            vstream.width = int(width)
            vstream.height = int(height)
            vstream.pix_fmt = "yuv420p"
            vstream.codec_context.thread_count = 1
            vstream.codec_context.time_base = 1 / rate
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            aopts = {"aac_coder": "fast"} if audio_codec == "aac" else {}  # 3x faster than twoloop
            astream = container.add_stream(audio_codec, rate=sample_rate, layout=layout, options=aopts)
            astream.bit_rate = audio_bitrate
            astream.codec_context.thread_count = 1
        if vstream is not None:
            source = yuv if yuv is not None else frames
            assert source is not None
            for i, arr in enumerate(source):
                if yuv is not None:
                    frame = av.VideoFrame.from_ndarray(arr, format="yuv420p")
                else:  # other codecs: let PyAV convert
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
                frame.pts = i
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
        if astream is not None:
            assert audio is not None
            chunk = 1024
            for s0 in range(0, audio.shape[1], chunk):
                block = np.ascontiguousarray(audio[:, s0 : s0 + chunk])
                frame = av.AudioFrame.from_ndarray(
                    block, format="fltp", layout="mono" if block.shape[0] == 1 else "stereo"
                )
                frame.sample_rate = sample_rate
                frame.pts = s0
                frame.time_base = Fraction(1, sample_rate)
                container.mux(astream.encode(frame))
            container.mux(astream.encode(None))
    os.replace(tmp, path)


def write_clip(
    path: str | Path,
    *,
    seconds: float,
    fps: int | Fraction = 15,
    size: tuple[int, int] = FRAME_SIZE,
    audio: bool = True,
    video: bool = True,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    channels: int = 1,
    v: float = 0.0,
    a: float = 0.0,
    words: Sequence[Word] | None = None,
    seed: int = 0,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
) -> Path:
    """Write one synthetic media file (for tests: audio-only, video-only, odd rates/sizes, stereo).

    ``size`` is (width, height); ``v``/``a`` set the planted vision/audio signal; without ``words``
    one "word" per second is spoken. The container follows the suffix (.mp4, .m4a, .mov, .mkv).
    """
    if not (audio or video):
        raise ValueError("write_clip needs audio=True or video=True")
    if video and video_codec == "libx264" and (size[0] % 2 or size[1] % 2):
        raise ValueError(f"libx264 with yuv420p needs an even width and height, got {size}")
    path = Path(path)
    rng = np.random.default_rng(seed)
    if words is None:
        words = tuple(
            Word(f"w{i}", i + 0.2, min(seconds, i + 0.8)) for i in range(int(seconds)) if i + 0.3 < seconds
        )
    n_frames = max(1, int(round(seconds * float(fps))))
    scene = _scene(n_frames, float(fps), v, size, words, rng) if video else None
    use_yuv = video_codec == "libx264"  # even size checked above; other codecs get RGB
    yuv = _scene_yuv(scene) if scene is not None and use_yuv else None
    frames = _scene_rgb(scene) if scene is not None and not use_yuv else None
    samples = None
    if audio:
        n = max(1, int(round(seconds * sample_rate)))
        mono = render_audio(n, a, words, sample_rate=sample_rate, rng=rng)
        samples = np.repeat(mono[None, :], channels, axis=0)
    _encode(
        path,
        frames=frames,
        yuv=yuv,
        fps=fps,
        audio=samples,
        sample_rate=sample_rate,
        video_codec=video_codec,
        audio_codec=audio_codec,
    )
    return path


def truncate_file(path: str | Path, keep: float = 0.5) -> Path:
    """Cut a media file to ``keep`` of its bytes: a quick way to make corrupt media for tests."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


# --------------------------------------------------------------------------------------------
# Planning (all randomness happens here, from one seed)
# --------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    index: int
    t: float
    a: float
    v: float
    label: float
    text: str
    split: Split = "train"
    video: int = -1
    local: int = -1


def _sentence(t: float, rng: np.random.Generator) -> str:
    """A 5-14 word opinion whose two clause slots average to ``t`` (quantised to 0.25)."""
    q = round(float(np.clip(t, -1.0, 1.0)) * 4.0) / 4.0
    combos = [
        (s1, s2)
        for s1 in _SLOT_SCORES
        for s2 in _SLOT_SCORES
        if abs((s1 + s2) / 2.0 - q) < 1e-9 and s1 * s2 >= 0.0
    ]
    s1, s2 = combos[int(rng.integers(len(combos)))]
    for _ in range(100):
        clauses: list[str] = []
        nouns = list(rng.permutation(_NOUNS))
        neutrals = list(rng.permutation(_NEUTRAL_CLAUSES))
        for s in (s1, s2):
            if s == 0.0:
                clauses.append(str(neutrals.pop()))
            else:
                adj = LEXICON[s][int(rng.integers(len(LEXICON[s])))]
                verb = _VERBS[int(rng.integers(len(_VERBS)))]
                clauses.append(f"the {nouns.pop()} {verb} {adj}")
        opener = _OPENERS[int(rng.integers(len(_OPENERS)))]
        connector = _CONNECTORS[int(rng.integers(len(_CONNECTORS)))]
        text = " ".join(x for x in (opener, clauses[0], connector, clauses[1]) if x)
        if 5 <= len(text.split()) <= 14:
            return text
    raise RuntimeError("could not build a 5-14 word sentence")  # pragma: no cover


def _balanced(levels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws covering ``levels`` evenly, shuffled: balanced marginals, no chance imbalance."""
    reps = np.tile(levels, math.ceil(n / len(levels)))[:n]
    return rng.permutation(reps)


def _assign_splits(plans: list[_Plan], rng: np.random.Generator) -> None:
    """~60/20/20 split stratified by label sign, so every split sees both signs."""
    pattern: tuple[Split, ...] = ("train", "valid", "test", "train", "train")
    groups = (
        [p for p in plans if p.label < 0],
        [p for p in plans if p.label > 0],
        [p for p in plans if p.label == 0],
    )
    for group in groups:
        for j, idx in enumerate(rng.permutation(len(group))):
            group[int(idx)].split = pattern[j % len(pattern)]


def _assign_videos(plans: list[_Plan], clips_per_video: int, rng: np.random.Generator) -> int:
    """Group clips into videos within one split (MOSI folds split whole videos), signs mixed."""
    videos: list[list[_Plan]] = []
    for split in ("train", "valid", "test"):
        members = [p for p in plans if p.split == split]
        if not members:
            continue
        neg = [p for p in members if p.label < 0]
        pos = [p for p in members if p.label >= 0]
        order = [neg, pos] if len(neg) >= len(pos) else [pos, neg]
        mixed = [x for pair in zip(*order, strict=False) for x in pair]
        rest = order[0][len(order[1]) :]
        mixed += rest
        n_videos = max(1, math.ceil(len(mixed) / clips_per_video))
        # deal round-robin so each video gets alternating signs and sizes differ by at most one
        chunks: list[list[_Plan]] = [[] for _ in range(n_videos)]
        for j, p in enumerate(mixed):
            chunks[j % n_videos].append(p)
        videos.extend(chunks)
    for vid, idx in enumerate(rng.permutation(len(videos))):
        for local, p in enumerate(videos[int(idx)]):
            p.video, p.local = vid, local
    return len(videos)


def _plan(
    n_clips: int, seed: int, levels: int, label_noise: float, clips_per_video: int
) -> tuple[list[_Plan], int]:
    rng = np.random.default_rng([seed, 0x5EED])
    grid = np.linspace(-1.0, 1.0, levels)
    for _attempt in range(1000):
        comps = np.stack([_balanced(grid, n_clips, rng) for _ in range(3)], axis=1)
        noise = rng.normal(0.0, label_noise, n_clips)
        labels = np.round(np.clip(comps.sum(axis=1) + noise, -3.0, 3.0), 3)
        if n_clips < 6 or ((labels < 0).sum() >= 3 and (labels > 0).sum() >= 3):
            break
    plans = [
        _Plan(i, float(t), float(a), float(v), float(lab) + 0.0, _sentence(float(t), rng))
        for i, ((t, a, v), lab) in enumerate(zip(comps, labels, strict=True))
    ]
    _assign_splits(plans, rng)
    n_videos = _assign_videos(plans, clips_per_video, rng)
    return plans, n_videos


def _word_times(text: str, duration: float, rng: np.random.Generator) -> tuple[Word, ...]:
    """Spread words over a speech span inside the clip, longer words longer, short pauses between."""
    tokens = text.split()
    lead = min(float(rng.uniform(0.15, 0.45)), 0.15 * duration)  # caps only bite below 3 s
    tail = min(float(rng.uniform(0.15, 0.45)), 0.15 * duration)
    span = duration - lead - tail
    pause = min(0.12, 0.25 * span / len(tokens))
    weights = np.array([len(w) + 2.0 for w in tokens])
    lengths = (span - pause * (len(tokens) - 1)) * weights / weights.sum()
    words: list[Word] = []
    cursor = lead
    for tok, length in zip(tokens, lengths, strict=True):
        words.append(Word(tok, round(cursor, 3), round(cursor + float(length), 3)))
        cursor += float(length) + pause
    return tuple(words)


# --------------------------------------------------------------------------------------------
# Layout writers
# --------------------------------------------------------------------------------------------


def _words_json(words: Sequence[Word]) -> list[dict[str, float | str]]:
    return [{"word": w.word, "start": w.start, "end": w.end} for w in words]


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _fmt(x: float) -> str:
    """Shortest round-tripping float text, so CSVs are stable and exact."""
    return repr(float(x))


def _annotation(label: float) -> str:
    return "Positive" if label > 0 else "Negative" if label < 0 else "Neutral"


def generate_dataset(
    root: str | Path,
    n_clips: int = 24,
    seed: int = 0,
    layout: Layout = "manifest",
    *,
    clips_per_video: int = 3,
    levels: int = 5,
    label_noise: float = 0.05,
    min_seconds: float = 3.0,
    max_seconds: float = 8.0,
    fps_range: tuple[int, int] = (10, 25),
    size: tuple[int, int] = FRAME_SIZE,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    mosi_gap: float = 0.0,
) -> GeneratedDataset:
    """Write ``n_clips`` labelled clips under ``root`` in one of the layouts ingest reads.

    Everything is a function of ``seed`` (same seed, same tables and the same media bytes) and the
    clip contents do not depend on ``layout``. ``fps`` is drawn per video (a MOSI video has one frame
    rate), so it varies across videos. ``mosi_gap`` inserts that many seconds of neutral filler
    (grey frames, silence) before each segment of a ``mosi`` video, like the unlabelled parts of
    real MOSI videos. Returns what was written, including each clip's planted components.
    """
    if n_clips < 1:
        raise ValueError("n_clips must be >= 1")
    if layout not in ("manifest", "mmsa", "mosi"):
        raise ValueError(f"unknown layout {layout!r}; expected 'manifest', 'mmsa' or 'mosi'")
    if not (0 < min_seconds <= max_seconds):
        raise ValueError("need 0 < min_seconds <= max_seconds")
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"size must have an even width and height (H.264 4:2:0), got {size}")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    plans, n_videos = _plan(n_clips, seed, levels, label_noise, clips_per_video)

    rng = np.random.default_rng([seed, 0xF95])
    video_fps = [int(rng.integers(fps_range[0], fps_range[1] + 1)) for _ in range(n_videos)]
    video_ids = [f"v{i + 1:03d}" for i in range(n_videos)]

    # Per-clip timing, words and media, each from its own stream seeded by (seed, index).
    clips: list[SynthClip] = []
    yuv_of: dict[int, np.ndarray] = {}
    audio_of: dict[int, np.ndarray] = {}
    for p in sorted(plans, key=lambda p: (p.video, p.local)):
        crng = np.random.default_rng([seed, 0xC11, p.index])
        fps = video_fps[p.video]
        n_frames = max(1, int(round(float(crng.uniform(min_seconds, max_seconds)) * fps)))
        duration = n_frames / fps
        n_samples = int(round(n_frames * sample_rate / fps))
        words = _word_times(p.text, duration, crng)
        yuv_of[p.index] = _scene_yuv(_scene(n_frames, fps, p.v, size, words, crng))
        audio_of[p.index] = render_audio(n_samples, p.a, words, sample_rate=sample_rate, rng=crng)
        vid = video_ids[p.video]
        local = f"{p.local + 1:04d}"
        clips.append(
            SynthClip(
                clip_id=f"{vid}_{local}",
                video_id=vid,
                local_id=local,
                index=p.index,
                split=p.split,
                t=p.t,
                a=p.a,
                v=p.v,
                label=p.label,
                text=p.text,
                words=words,
                fps=fps,
                n_frames=n_frames,
                n_samples=n_samples,
                duration=duration,
                media=root,  # filled in by the layout writer
            )
        )

    writer = {"manifest": _write_manifest, "mmsa": _write_mmsa, "mosi": _write_mosi}[layout]
    clips, manifest, files = writer(root, clips, yuv_of, audio_of, sample_rate, mosi_gap)
    return GeneratedDataset(
        root=root, layout=layout, seed=seed, manifest=manifest, clips=tuple(clips), files=tuple(files)
    )


def _write_manifest(
    root: Path,
    clips: list[SynthClip],
    yuv_of: dict[int, np.ndarray],
    audio_of: dict[int, np.ndarray],
    sample_rate: int,
    _gap: float,
) -> tuple[list[SynthClip], Path, list[Path]]:
    """``manifest.csv`` + ``manifest.jsonl`` (same rows) + ``media/<clip_id>.mp4``."""
    out: list[SynthClip] = []
    files: list[Path] = []
    rows: list[list[object]] = []
    jsonl: list[str] = []
    for c in sorted(clips, key=lambda c: c.clip_id):
        rel = f"media/{c.clip_id}.mp4"
        path = root / rel
        _encode(path, yuv=yuv_of[c.index], fps=c.fps, audio=audio_of[c.index], sample_rate=sample_rate)
        files.append(path)
        out.append(replace(c, media=path))
        words = _words_json(c.words)
        rows.append([c.clip_id, rel, "", "", c.text, json.dumps(words), _fmt(c.label), c.split])
        record = {
            "clip_id": c.clip_id,
            "media": rel,
            "start": None,
            "end": None,
            "text": c.text,
            "words": words,
            "label": c.label,
            "split": c.split,
        }
        jsonl.append(json.dumps(record))
    header = ("clip_id", "media", "start", "end", "text", "words", "label", "split")
    manifest = _write_csv(root / "manifest.csv", header, rows)
    (root / "manifest.jsonl").write_text("\n".join(jsonl) + "\n", encoding="utf-8")
    files += [manifest, root / "manifest.jsonl"]
    return out, manifest, files


def _write_mmsa(
    root: Path,
    clips: list[SynthClip],
    yuv_of: dict[int, np.ndarray],
    audio_of: dict[int, np.ndarray],
    sample_rate: int,
    _gap: float,
) -> tuple[list[SynthClip], Path, list[Path]]:
    """MMSA: ``label.csv`` + ``Raw/<video_id>/<clip_id>.mp4`` with ``clip_id`` like ``0001``."""
    out: list[SynthClip] = []
    files: list[Path] = []
    rows: list[list[object]] = []
    for c in sorted(clips, key=lambda c: c.clip_id):
        path = root / "Raw" / c.video_id / f"{c.local_id}.mp4"
        _encode(path, yuv=yuv_of[c.index], fps=c.fps, audio=audio_of[c.index], sample_rate=sample_rate)
        files.append(path)
        out.append(replace(c, media=path))
        lt, la, lv = c.label_tav
        rows.append(
            [c.video_id, c.local_id, c.text, _fmt(c.label), _fmt(lt), _fmt(la), _fmt(lv),
             _annotation(c.label), c.split]
        )  # fmt: skip
    header = ("video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode")
    manifest = _write_csv(root / "label.csv", header, rows)
    files.append(manifest)
    return out, manifest, files


def _write_mosi(
    root: Path,
    clips: list[SynthClip],
    yuv_of: dict[int, np.ndarray],
    audio_of: dict[int, np.ndarray],
    sample_rate: int,
    gap: float,
) -> tuple[list[SynthClip], Path, list[Path]]:
    """CMU-MOSI style: long videos of back-to-back segments, windows in ``segments.csv``."""
    out: list[SynthClip] = []
    files: list[Path] = []
    seg_rows: list[list[object]] = []
    fold_rows: list[list[object]] = []
    by_video: dict[str, list[SynthClip]] = {}
    for c in sorted(clips, key=lambda c: c.clip_id):
        by_video.setdefault(c.video_id, []).append(c)
    for vid, segs in by_video.items():
        fps = segs[0].fps
        frame_parts: list[np.ndarray] = []
        audio_parts: list[np.ndarray] = []
        cum_frames = 0
        cum_samples = 0
        transcript: list[str] = []
        words_json: dict[str, list[dict[str, float | str]]] = {}
        for c in segs:
            if gap > 0:
                g_frames = int(round(gap * fps))
                height, width = yuv_of[c.index].shape[1] * 2 // 3, yuv_of[c.index].shape[2]
                grey = np.full((1, height, width, 3), _FILLER_GREY, np.uint8)
                frame_parts.append(np.repeat(_rgb_to_yuv420p(grey), g_frames, axis=0))
                cum_frames += g_frames
                g_end = int(round(cum_frames * sample_rate / fps))
                audio_parts.append(np.zeros(g_end - cum_samples, np.float32))
                cum_samples = g_end
            start = cum_frames / fps
            frame_parts.append(yuv_of[c.index])
            cum_frames += c.n_frames
            end = cum_frames / fps
            # keep audio on the video's frame grid: segment k ends at round(frames * sr / fps)
            a_end = int(round(cum_frames * sample_rate / fps))
            audio_parts.append(_fit(audio_of[c.index], a_end - cum_samples))
            cum_samples = a_end
            seg_rows.append([vid, c.local_id, _fmt(round(start, 6)), _fmt(round(end, 6)), _fmt(c.label)])
            transcript.append(f"{c.local_id}_DELIM_{c.text}")
            words_json[c.local_id] = _words_json(c.words)
            out.append(replace(c, start=round(start, 6), end=round(end, 6)))
        path = root / "Video" / "Full" / f"{vid}.mp4"
        _encode(
            path,
            yuv=np.concatenate(frame_parts),
            fps=fps,
            audio=np.concatenate(audio_parts),
            sample_rate=sample_rate,
        )
        tpath = root / "Transcript" / "Segmented" / f"{vid}.annotprocessed"
        tpath.parent.mkdir(parents=True, exist_ok=True)
        tpath.write_text("\n".join(transcript) + "\n", encoding="utf-8")
        wpath = root / "Transcript" / "Words" / f"{vid}.json"
        wpath.parent.mkdir(parents=True, exist_ok=True)
        wpath.write_text(json.dumps(words_json, indent=1) + "\n", encoding="utf-8")
        files += [path, tpath, wpath]
        fold_rows.append([vid, segs[0].split])
        out = [replace(c, media=path) if c.video_id == vid else c for c in out]
    manifest = _write_csv(root / "segments.csv", ("video_id", "segment_id", "start", "end", "label"), seg_rows)
    folds = _write_csv(root / "folds.csv", ("video_id", "split"), fold_rows)
    files += [manifest, folds]
    return out, manifest, files


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Pad with zeros or cut ``x`` to exactly ``n`` samples."""
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.zeros(n - len(x), x.dtype)])
