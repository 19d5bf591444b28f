"""``audio.mfcc``: librosa MFCCs of the clip's audio, decoded by PyAV to 16 kHz mono float32.

Frames are not centred (``center=False``): frame ``i`` covers samples ``[i*hop, i*hop + n_fft)``, so
its time span is exact and never reaches before the clip start; it is clipped to the clip's end.
A clip shorter than one window is zero-padded to one frame; a window outside the audio stream's
data (after it ends, before it starts) has no samples and is a recorded absence, never a made-up
frame. Silence gives finite values (librosa's ``power_to_db`` floors the power at ``amin``); NaN
and infinite samples are silence (``features.media.audio``), and samples so loud that the MFCC
overflows fail the clip (``_overflow_error``), so no row is ever NaN or infinite.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
from librosa.feature import delta as librosa_delta
from librosa.feature import (
    mfcc as librosa_mfcc,  # resolved now: librosa's lazy loader is not thread-safe
)
from librosa.version import version as librosa_version
from pydantic import Field, model_validator

from features.clips import ClipInput
from features.extractors.base import (
    ClipFailure,
    Extractor,
    ExtractorConfig,
    FeatureResult,
    clip_window_args,
    failure_from_exception,
    register_extractor,
)
from features.media.audio import DecodedAudio, decode_audio
from features.media.probe import probe_media
from features.media.streams import local_media_path
from store.errors import CorruptMediaError

log = logging.getLogger(__name__)


class MfccConfig(ExtractorConfig):
    """MFCC settings. Defaults: 40 coefficients over 40 mel bands, 25 ms windows (n_fft 400) with a
    10 ms hop (160) at 16 kHz. ``deltas``: 0 (MFCC only), 1 (+Δ) or 2 (+Δ+ΔΔ), computed along time
    with ``mode="nearest"`` so clips shorter than the delta width still work.
    ``audio_stream``: container stream index to use (None: the highest sample rate)."""

    sample_rate: int = Field(16000, ge=1000)
    n_mfcc: int = Field(40, ge=1)
    n_mels: int = Field(40, ge=1)
    n_fft: int = Field(400, ge=16)
    hop_length: int = Field(160, ge=1)
    fmin: float = Field(0.0, ge=0.0)
    fmax: float | None = None
    deltas: int = Field(0, ge=0, le=2)
    delta_width: int = Field(9, ge=3)
    audio_stream: int | None = None

    @property
    def dim(self) -> int:
        """Values per frame: the MFCCs and their deltas."""
        return self.n_mfcc * (1 + self.deltas)

    @model_validator(mode="after")
    def _check(self) -> MfccConfig:
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels})")
        if self.delta_width % 2 == 0:
            raise ValueError(f"delta_width must be odd, got {self.delta_width}")
        return self


def clip_audio(
    clip: ClipInput, sample_rate: int, stream: int | None, dim: int
) -> DecodedAudio | FeatureResult | ClipFailure:
    """The clip window's audio (mono, ``sample_rate``), or what ends the clip instead: an absence
    (no media file, no audio stream, no audio data in the window) or a decode failure. One decode
    path for every audio extractor."""
    if not clip.media_uri:
        return FeatureResult.empty(dim, "no media file")
    try:
        path = local_media_path(clip.media_uri)
        info = probe_media(path, clip_id=clip.clip_id)
        audio = decode_audio(path, sample_rate=sample_rate, stream=stream, clip_id=clip.clip_id, info=info,
                             **clip_window_args(clip))
    except Exception as exc:
        return failure_from_exception(clip, exc, "decode")
    if audio is None:
        return FeatureResult.empty(dim, "no audio stream", meta={"n_audio_streams": 0})
    if not len(audio.samples):
        return FeatureResult.empty(dim, "no audio in this window", meta=audio.meta)
    return audio


def mfcc_frames(samples: np.ndarray, cfg: MfccConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(values [frames, dim] float32, spans [frames, 2] float64)`` for mono samples at cfg.sample_rate."""
    y = np.asarray(samples, dtype=np.float32)
    if not len(y):  # no samples, no frames: padding would make one up
        return np.zeros((0, cfg.dim), np.float32), np.zeros((0, 2), np.float64)
    if len(y) < cfg.n_fft:
        y = np.pad(y, (0, cfg.n_fft - len(y)))
    m = librosa_mfcc(
        y=y,
        sr=cfg.sample_rate,
        n_mfcc=cfg.n_mfcc,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.n_fft,
        center=False,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
    )
    parts = [m]
    for order in range(1, cfg.deltas + 1):
        parts.append(librosa_delta(m, width=cfg.delta_width, order=order, mode="nearest"))
    values = np.concatenate(parts, axis=0).T.astype(np.float32)
    n = values.shape[0]
    starts = np.arange(n, dtype=np.float64) * cfg.hop_length / cfg.sample_rate
    spans = np.stack([starts, starts + cfg.n_fft / cfg.sample_rate], axis=1).reshape(n, 2)
    return values, spans


def _overflow_error(clip: ClipInput, audio: DecodedAudio) -> CorruptMediaError:
    """Why finite samples gave NaN/inf MFCCs: float PCM so far past full scale (1.0) that the float32
    power spectrum overflows (|x| past ~1e17; no decoder of sound gets near). Such a file holds no
    sound, and features made of it would be wrong, so the clip fails, naming its peak."""
    peak = float(np.abs(audio.samples).max())
    return CorruptMediaError(
        f"audio stream {audio.stream.index}: samples up to {peak:.3g} (full scale is 1.0) overflow the MFCC",
        clip_id=clip.clip_id, path=clip.media_uri,
    )


@register_extractor
class MfccExtractor(Extractor):
    """MFCC frames per clip; no audio stream (or no media) → a recorded absence."""

    name: ClassVar[str] = "audio.mfcc"
    version: ClassVar[str] = "2"  # 2: rows on the one media timeline (stream start offsets, A/V-only duration)
    modality: ClassVar[str] = "audio"
    config_cls: ClassVar[type[ExtractorConfig]] = MfccConfig
    cost_per_second: ClassVar[float] = 0.003
    config: MfccConfig

    @property
    def dim(self) -> int:
        return self.config.dim

    def model_identity(self) -> dict[str, Any]:
        return {"librosa": librosa_version}

    def extract(self, clips: list[ClipInput]) -> list[FeatureResult | ClipFailure]:
        return [self._one(clip) for clip in clips]

    def _one(self, clip: ClipInput) -> FeatureResult | ClipFailure:
        cfg = self.config
        audio = clip_audio(clip, cfg.sample_rate, cfg.audio_stream, self.dim)
        if not isinstance(audio, DecodedAudio):
            return audio
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, by clip
                values, spans = mfcc_frames(audio.samples, cfg)
        except Exception as exc:
            return failure_from_exception(clip, exc, "extract")
        if not np.isfinite(values).all():
            return failure_from_exception(clip, _overflow_error(clip, audio), "extract")
        limit = audio.meta["window"][1] - audio.meta["window"][0]
        spans = np.minimum(spans, limit)
        meta = dict(audio.meta)
        meta["n_samples"] = int(len(audio.samples))
        return FeatureResult(values=values, times=spans, meta=meta)
