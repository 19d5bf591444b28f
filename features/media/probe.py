"""Probe media files with PyAV: which streams exist, their shapes, rates, and where they sit in time.

Probing before decoding keeps decord away from non-video input (it can dump file bytes to the
console) and lets ingest mark a clip's missing modalities instead of failing later.

**The media timeline.** Times are seconds from the start of the presentation as a player shows it:
``MediaInfo.start_time`` (the file's own clock) is the earliest start of an audio or video stream,
and every stream start/end, clip window and feature row is relative to it. An MPEG-TS file whose
streams start at 1.46 s therefore starts at 0; an mp4 edit list is already applied by the demuxer
to the stream start times. Subtitle and data streams never move the origin.

**Duration** is the latest end of an audio or video stream, never the container's: Matroska's
segment duration and FFmpeg's container duration include subtitle tracks, which often run past the
picture and sound. A stream's end is what its own header declares: the track duration of mp4/mov,
FLAC's sample count, WAV's data size, the ``DURATION`` tag FFmpeg/mkvmerge write per Matroska
track. Other stream durations FFmpeg reports are its guesses (the whole file's duration copied into
a Matroska track, a bit-rate estimate for raw AAC or MP3, the last timestamps of MPEG-TS), and a
guess longer than the data would call a good file truncated. Only when no audio/video stream
declares an end is it read from where their last packets end.

**Streams without a decoder** in this FFmpeg build are listed (``StreamInfo.codec`` is None), so the
clip has that modality and decoding it fails with ``UnsupportedMediaError`` rather than recording
it as absent; a file with no decodable audio or video at all is a ``CorruptMediaError``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from store.errors import CorruptMediaError

_TAG_DURATION = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")
# demuxers (FFmpeg names) whose stream durations come from each stream's own header
_STREAM_DURATION_DECLARED = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "flac", "wav"})
_MATROSKA = "matroska,webm"


@dataclass(frozen=True)
class StreamInfo:
    """One audio or video stream; ``index`` is the container stream index.

    ``start`` is its first timestamp and ``end`` the end its header declares (None: undeclared),
    both in seconds on the media timeline. ``codec``: the decoder's name, None when this FFmpeg
    build has no decoder for the stream (PyAV then exposes neither the codec nor its picture size).
    """

    index: int
    kind: str  # "video" | "audio"
    codec: str | None
    start: float
    end: float | None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True)
class MediaInfo:
    """Streams of a file on its media timeline. ``start_time``: where t=0 is on the file's clock
    (seconds); ``duration``: the latest end of an audio/video stream; ``format``: FFmpeg's
    demuxer name."""

    path: str
    start_time: float
    duration: float
    video: tuple[StreamInfo, ...]
    audio: tuple[StreamInfo, ...]
    format: str

    def best_video(self) -> StreamInfo | None:
        """The highest-resolution decodable video stream (ties: the first)."""
        decodable = (s for s in self.video if s.codec is not None)
        return max(decodable, key=lambda s: (s.width or 0) * (s.height or 0), default=None)

    def best_audio(self) -> StreamInfo | None:
        """The highest-sample-rate decodable audio stream (ties: the first)."""
        return max((s for s in self.audio if s.codec is not None), key=lambda s: s.sample_rate or 0, default=None)


def _declared_end(s: Any, start: float, fmt: str) -> float | None:
    """The end of stream ``s`` (starting at ``start``) on the file's clock as its own header
    declares it, if it does; ``fmt`` is the demuxer's name (see the module doc for which do)."""
    if fmt == _MATROSKA:  # FFmpeg's stream duration here is the segment's, subtitles included
        m = _TAG_DURATION.match(s.metadata.get("DURATION", ""))  # the track's end timestamp
        return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else None
    if fmt in _STREAM_DURATION_DECLARED and s.duration is not None and s.time_base is not None:
        return start + float(s.duration * s.time_base)
    return None


def no_decoder(s: StreamInfo) -> str:
    """The problem with a stream this FFmpeg build cannot decode, for error messages."""
    return f"{s.kind} stream {s.index}: its codec has no decoder in this FFmpeg build ({av.ffmpeg_version_info})"


def _packet_end(container: Any, indexes: set[int]) -> float | None:
    """Where the last packets of the streams ``indexes`` end on the file's clock, read from the
    file's tail (from the start when the demuxer cannot seek)."""
    if container.duration is not None:
        try:
            container.seek((container.start_time or 0) + container.duration, backward=True)
        except av.FFmpegError:
            container.seek(0)
    end: float | None = None
    for pkt in container.demux():
        if pkt.stream.index in indexes and pkt.pts is not None and pkt.time_base is not None:
            stop = float((pkt.pts + (pkt.duration or 0)) * pkt.time_base)
            end = stop if end is None else max(end, stop)
    return end


def probe_media(path: str | os.PathLike[str], clip_id: str | None = None) -> MediaInfo:
    """Open ``path`` with PyAV and describe its audio and video streams on the media timeline.

    Raises ``CorruptMediaError`` for a missing, zero-byte or undecodable file, or one with no audio
    or video stream that this FFmpeg build can decode.
    """
    p = Path(path)
    if not p.exists():
        raise CorruptMediaError("file does not exist", clip_id=clip_id, path=str(p))
    if p.stat().st_size == 0:
        raise CorruptMediaError("zero-byte file", clip_id=clip_id, path=str(p))
    try:
        with av.open(str(p)) as container:
            fmt = container.format.name
            usable = [  # audio and video (no cover art), decodable by this FFmpeg build or not
                s for s in container.streams
                if s.type == "audio" or (s.type == "video" and not s.disposition & av.stream.Disposition.attached_pic)
            ]
            starts = {
                s.index: float(s.start_time * s.time_base)
                for s in usable
                if s.start_time is not None and s.time_base is not None
            }
            if starts:
                origin = min(starts.values())
            else:
                origin = container.start_time / av.time_base if container.start_time is not None else 0.0
            ends = {s.index: _declared_end(s, starts.get(s.index, origin), fmt) for s in usable}
            declared = [e for e in ends.values() if e is not None]
            last = max(declared) if declared else _packet_end(container, {s.index for s in usable})
            video, audio = [], []
            for s in usable:
                start = starts.get(s.index, origin) - origin
                declared_end = ends[s.index]
                end = None if declared_end is None else declared_end - origin
                if s.type == "video":
                    assert isinstance(s, av.VideoStream)
                    vc: av.VideoCodecContext | None = s.codec_context  # None: no decoder
                    rate = s.average_rate or s.guessed_rate
                    video.append(StreamInfo(
                        s.index, "video", vc.name if vc else None, start, end,
                        width=vc.width if vc else None, height=vc.height if vc else None,
                        fps=float(rate) if rate else None,
                    ))
                else:
                    assert isinstance(s, av.AudioStream)
                    ac: av.AudioCodecContext | None = s.codec_context
                    audio.append(StreamInfo(
                        s.index, "audio", ac.name if ac else None, start, end,
                        sample_rate=ac.sample_rate if ac else None, channels=ac.channels if ac else None,
                    ))
    except av.FFmpegError as exc:
        raise CorruptMediaError(f"cannot be opened by the decoder: {exc}", clip_id=clip_id, path=str(p)) from exc
    if not video and not audio:
        raise CorruptMediaError("has no audio or video stream", clip_id=clip_id, path=str(p))
    if all(s.codec is None for s in (*video, *audio)):
        raise CorruptMediaError(
            "has no audio or video stream this FFmpeg build can decode: "
            + "; ".join(no_decoder(s) for s in (*video, *audio)),
            clip_id=clip_id, path=str(p),
        )
    total = 0.0 if last is None else last - origin
    if total <= 0:
        raise CorruptMediaError("has zero duration", clip_id=clip_id, path=str(p))
    return MediaInfo(str(p), origin, float(total), tuple(video), tuple(audio), fmt)
