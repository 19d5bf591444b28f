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
    seek_before,
    select_stream,
)
from store.errors import CorruptMediaError

log = logging.getLogger(__name__)
_AUDIO_PREROLL = 0.5  # seconds decoded before a clip start and dropped


# --------------------------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples of one clip at ``sample_rate``; sample 0 is the clip start."""

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

    ``None`` when the media has no audio stream. Raises ``CorruptMediaError`` when the stream cannot
    be decoded or ends well before the duration its header declares (a truncated file).
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
    try:
        with av.open(path) as c:
            st = c.streams[chosen.index]
            assert isinstance(st, av.AudioStream)  # chosen is one of this file's audio streams
            # start early: codecs with overlapping frames (AAC, Opus) need a frame to warm up
            seek_before(c, st, offset - _AUDIO_PREROLL, chosen, origin)
            for frame in c.decode(st):
                if frame.time is not None:
                    if t0 is None:
                        t0 = frame.time - origin
                    last_end = frame.time - origin + frame.samples / frame.sample_rate
                elif t0 is None:
                    t0 = 0.0
                else:
                    last_end += frame.samples / frame.sample_rate
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
    # sample 0 of `audio` is at t0 on the media timeline; realign so sample 0 is the clip start
    lead = int(round((offset - t0) * sample_rate))
    if lead < 0:  # the stream starts after the clip start: pad the gap with silence
        audio = np.concatenate([np.zeros(-lead, np.float32), audio])
        lead = 0
    n = int(round(duration * sample_rate))
    audio = np.ascontiguousarray(audio[lead : lead + n], dtype=np.float32)
    meta = {
        "audio_stream": chosen.index,
        "audio_codec": chosen.codec,
        "source_sample_rate": chosen.sample_rate,
        "source_channels": chosen.channels,
        "n_audio_streams": len(info.audio),
        "sample_rate": sample_rate,
        "audio_decoder": "pyav",
        "window": [offset, stop],
    }
    return DecodedAudio(audio, sample_rate, chosen, meta)


