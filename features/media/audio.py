"""Audio of a clip on the media timeline: PyAV decode, resampled to mono float32 by swresample."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from features.media.probe import MediaInfo, StreamInfo, probe_media
from features.media.streams import (
    check_complete,
    clip_window,
    overlaps,
    seek_before,
    select_stream,
)
from store.errors import CorruptMediaError

log = logging.getLogger(__name__)
_AUDIO_PREROLL = 0.5  # seconds decoded before a clip start and dropped


# --------------------------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples of one clip at ``sample_rate``; sample 0 is the clip start. No samples:
    the clip window overlaps none of the stream's data."""

    samples: np.ndarray
    sample_rate: int
    stream: StreamInfo
    meta: dict[str, Any]

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def decode_audio(
    path: str,
    *,
    sample_rate: int = 16000,
    start: float | None = None,
    end: float | None = None,
    stream: int | None = None,
    clip_id: str | None = None,
    info: MediaInfo | None = None,
) -> DecodedAudio | None:
    """Decode the clip window of the chosen audio stream to mono float32 at ``sample_rate``.

    ``None`` when the media has no audio stream; no samples when the window overlaps none of the
    stream's data (it ends before the window or starts after it), silence before the stream's start
    when the window overlaps part of it. A mid-stream change of sample rate, layout or sample format
    (joined MPEG-TS segments) is resampled like the rest, so the output stays one continuous signal.
    NaN and infinite samples (float PCM) are silence, counted in ``meta["nonfinite_samples"]``.
    Raises ``CorruptMediaError`` when the stream cannot be decoded, ends well before the duration
    its header declares (a truncated file), or has only NaN/infinite samples in the window.
    """
    info = info or probe_media(path, clip_id=clip_id)
    chosen = select_stream(info, "audio", stream, clip_id=clip_id)
    if chosen is None:
        return None
    offset, duration = clip_window(start, end, info.duration)
    stop = offset + duration
    origin = info.start_time
    pieces: list[np.ndarray] = []
    t0: float | None = None
    last_end = offset
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    source: tuple[str, av.AudioLayout, int] | None = None  # what `resampler` was built for
    changes: list[list[float | int]] = []  # [time, sample rate, channels] of each change of source
    try:
        with av.open(path) as c:
            st = c.streams[chosen.index]
            assert isinstance(st, av.AudioStream)  # chosen is one of this file's audio streams
            # start early: codecs with overlapping frames (AAC, Opus) need a frame to warm up
            seek_before(c, st, offset - _AUDIO_PREROLL, chosen, origin)
            for frame in c.decode(st):
                at = last_end
                if frame.time is not None:
                    if t0 is None:
                        t0 = frame.time - origin
                    at = frame.time - origin
                    last_end = at + frame.samples / frame.sample_rate
                elif t0 is None:
                    t0 = 0.0
                else:
                    last_end += frame.samples / frame.sample_rate
                here = (frame.format.name, frame.layout, frame.sample_rate)
                if here != source:  # a resampler takes one input format: flush it, start another
                    if source is not None:
                        pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
                        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                        changes.append([round(at, 6), frame.sample_rate, frame.layout.nb_channels])
                    source = here
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
                if frame.time is not None and frame.time - origin > stop + 0.5:
                    break
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise CorruptMediaError(
            f"audio stream {chosen.index} cannot be decoded: {exc}", clip_id=clip_id, path=path
        ) from exc
    if t0 is None:
        raise CorruptMediaError(f"audio stream {chosen.index} has no decodable frames", clip_id=clip_id, path=path)
    check_complete("audio", chosen, last_end, stop, info, clip_id)
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if overlaps(t0, t0 + len(audio) / sample_rate, offset, stop):
        # sample 0 of `audio` is at t0 on the media timeline; realign so sample 0 is the clip start
        lead = int(round((offset - t0) * sample_rate))
        if lead < 0:  # the stream starts after the clip start: pad the gap with silence
            audio = np.concatenate([np.zeros(-lead, np.float32), audio])
            lead = 0
        audio = np.ascontiguousarray(audio[lead : lead + int(round(duration * sample_rate))], dtype=np.float32)
    else:  # the window lies outside the stream's data: no samples, not a window of silence
        audio = np.zeros(0, np.float32)
    audio, nonfinite = _finite_samples(audio, chosen, path, clip_id)
    meta: dict[str, Any] = {
        "audio_stream": chosen.index,
        "audio_codec": chosen.codec,
        "source_sample_rate": chosen.sample_rate,
        "source_channels": chosen.channels,
        "n_audio_streams": len(info.audio),
        "sample_rate": sample_rate,
        "audio_decoder": "pyav",
        "window": [offset, stop],
    }
    if changes:
        meta["source_changes"] = changes
    if nonfinite:
        meta["nonfinite_samples"] = nonfinite
    return DecodedAudio(audio, sample_rate, chosen, meta)


def _finite_samples(
    audio: np.ndarray, stream: StreamInfo, path: str, clip_id: str | None
) -> tuple[np.ndarray, int]:
    """``audio`` with its NaN and infinite samples (float PCM can store them; no sound is made of
    them, and one turns every feature frame it touches into NaN) replaced by silence, and how many
    there were. A clip window holding nothing else is not audio: ``CorruptMediaError``."""
    bad = ~np.isfinite(audio)
    n = int(bad.sum())
    if not n:
        return audio, 0
    if n == len(audio):
        raise CorruptMediaError(
            f"audio stream {stream.index}: all {n} samples of the clip window are NaN or infinite",
            clip_id=clip_id, path=path,
        )
    log.warning("clip %s: %s: %d NaN or infinite audio samples of %d read as silence", clip_id, path, n, len(audio))
    return np.where(bad, np.float32(0), audio), n
