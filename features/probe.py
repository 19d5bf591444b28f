"""Probe media files with PyAV: which streams exist, their shapes, rates and durations.

Probing before decoding keeps decord away from non-video input (it can dump file bytes to the
console) and lets ingest mark a clip's missing modalities instead of failing later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av

from store.errors import CorruptMediaError


@dataclass(frozen=True)
class StreamInfo:
    """One audio or video stream; ``index`` is the container stream index."""

    index: int
    kind: str  # "video" | "audio"
    codec: str
    duration: float | None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: float
    video: tuple[StreamInfo, ...]
    audio: tuple[StreamInfo, ...]

    def best_video(self) -> StreamInfo | None:
        """The highest-resolution video stream (ties: the first)."""
        return max(self.video, key=lambda s: (s.width or 0) * (s.height or 0), default=None)

    def best_audio(self) -> StreamInfo | None:
        """The highest-sample-rate audio stream (ties: the first)."""
        return max(self.audio, key=lambda s: s.sample_rate or 0, default=None)


def _seconds(value: int | None, time_base: object) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def probe_media(path: str | os.PathLike[str], clip_id: str | None = None) -> MediaInfo:
    """Open ``path`` with PyAV and describe its streams.

    Raises ``CorruptMediaError`` for a missing, zero-byte or undecodable file, or one with neither
    audio nor video.
    """
    p = Path(path)
    if not p.exists():
        raise CorruptMediaError("file does not exist", clip_id=clip_id, path=str(p))
    if p.stat().st_size == 0:
        raise CorruptMediaError("zero-byte file", clip_id=clip_id, path=str(p))
    try:
        with av.open(str(p)) as container:
            video, audio = [], []
            for s in container.streams:
                if s.codec_context is None:  # unknown codec, no decoder in this FFmpeg build: unusable
                    continue
                duration = _seconds(s.duration, s.time_base)
                if s.type == "video" and not s.disposition & av.stream.Disposition.attached_pic:
                    rate = s.average_rate or s.guessed_rate
                    video.append(
                        StreamInfo(
                            index=s.index,
                            kind="video",
                            codec=s.codec_context.name,
                            duration=duration,
                            width=s.codec_context.width,
                            height=s.codec_context.height,
                            fps=float(rate) if rate else None,
                        )
                    )
                elif s.type == "audio":
                    audio.append(
                        StreamInfo(
                            index=s.index,
                            kind="audio",
                            codec=s.codec_context.name,
                            duration=duration,
                            sample_rate=s.codec_context.sample_rate,
                            channels=s.codec_context.channels,
                        )
                    )
            if container.duration is not None:
                total = container.duration / av.time_base
            else:
                total = max((s.duration or 0.0 for s in (*video, *audio)), default=0.0)
    except av.FFmpegError as exc:
        raise CorruptMediaError(f"cannot be opened by the decoder: {exc}", clip_id=clip_id, path=str(p)) from exc
    if not video and not audio:
        raise CorruptMediaError("has no audio or video stream", clip_id=clip_id, path=str(p))
    if total <= 0:
        raise CorruptMediaError("has zero duration", clip_id=clip_id, path=str(p))
    return MediaInfo(path=str(p), duration=float(total), video=tuple(video), audio=tuple(audio))
