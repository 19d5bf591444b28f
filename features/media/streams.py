"""The media timeline, stream choice and the checks every decoder shares (see ``features.media``)."""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np

from features.media.probe import MediaInfo, StreamInfo, no_decoder
from store.errors import CorruptMediaError, UnsupportedMediaError

log = logging.getLogger(__name__)

EPS = 1e-6


# --------------------------------------------------------------------------------------------- paths


def local_media_path(uri: str) -> str:
    """A local filesystem path for ``uri`` (plain path, ``file://``, or any fsspec URL, cached locally).

    Decoders need a seekable local file; remote media is fetched once through fsspec's simplecache.
    """
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if "://" not in uri:
        return uri
    import fsspec  # only needed for remote media

    return str(fsspec.open_local(f"simplecache::{uri}"))


# --------------------------------------------------------------------------------------------- streams


def select_stream(
    info: MediaInfo, kind: Literal["video", "audio"], index: int | None = None, *, clip_id: str | None = None
) -> StreamInfo | None:
    """The stream to decode: ``index`` (a container stream index) if given, else the best one.

    Returns ``None`` when the media has no stream of that kind (a recorded absence, not an error);
    raises ``UnsupportedMediaError`` when ``index`` names no ``kind`` stream of this file, or when
    the stream to decode has no decoder in this FFmpeg build (the modality exists: not an absence).
    """
    streams = info.video if kind == "video" else info.audio
    if not streams:
        return None
    if index is None:
        best = info.best_video() if kind == "video" else info.best_audio()
        if best is None:  # every stream of this kind lacks a decoder
            raise UnsupportedMediaError(no_decoder(streams[0]), clip_id=clip_id, path=info.path)
        return best
    for s in streams:
        if s.index == index:
            if s.codec is None:
                raise UnsupportedMediaError(no_decoder(s), clip_id=clip_id, path=info.path)
            return s
    have = ", ".join(str(s.index) for s in streams)
    raise UnsupportedMediaError(
        f"configured {kind} stream {index} does not exist ({kind} streams: {have})",
        clip_id=clip_id,
        path=info.path,
    )


def clip_window(start: float | None, end: float | None, media_duration: float) -> tuple[float, float]:
    """``(offset, duration)`` of the clip in the media; ``end=None`` means the media end."""
    offset = max(float(start or 0.0), 0.0)
    stop = media_duration if end is None else float(end)
    return offset, max(stop - offset, 0.0)


def overlaps(first: float, end: float, offset: float, stop: float) -> bool:
    """Whether a stream's data ``[first, end)`` reaches into the clip window ``[offset, stop)`` (both
    on the media timeline). A window outside the data gets no rows from that stream: silence or a
    repeated frame is only ever padding next to real data, never made up from none."""
    return first < stop - EPS and end > offset + EPS


def frame_sample_times(duration: float, fps: float) -> np.ndarray:
    """Row spans ``[k/fps, (k+1)/fps)`` clipped to ``[0, duration]``: ``ceil(duration * fps)`` rows."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n = max(math.ceil(duration * fps - 1e-9), 0)
    t = np.arange(n, dtype=np.float64) / fps
    return np.stack([t, np.minimum(t + 1.0 / fps, duration)], axis=1).reshape(n, 2)


def check_complete(
    kind: str, stream: StreamInfo, decoded_end: float, stop: float, info: MediaInfo, clip_id: str | None
) -> None:
    """Raise ``CorruptMediaError`` when a stream's data ends well before the end its own header
    declares (a truncated file: the header survived, the media data did not) and before the clip
    end. Other streams (a subtitle track outlasting the picture) do not count; a stream that
    declares no end cannot be judged."""
    declared = stream.end
    if declared is None:
        return
    expected = min(stop, declared)
    if decoded_end < expected - max(0.5, 0.05 * (declared - stream.start)):
        raise CorruptMediaError(
            f"truncated: {kind} stream {stream.index} has data up to {decoded_end:.2f} s "
            f"but its header declares {declared:.2f} s",
            clip_id=clip_id,
            path=info.path,
        )


def seek_before(container: Any, st: Any, t: float, stream: StreamInfo, origin: float) -> None:
    """Position ``container`` so that decoding ``st`` yields the frame at media time ``t`` or an
    earlier one. A backward seek alone is not enough: demuxers without an index (MPEG-TS) land near
    the target, often after it and mid-GOP, so step back until the first keyframe is early enough
    (a target before the stream start lands at its beginning). Landing after the stream's last
    packet (a target past its end) also steps back, so decoding shows where the stream's data ends."""
    if t <= stream.start:
        return
    margin = 0.0
    while True:
        ts = int((origin + t - margin) / st.time_base)
        container.seek(ts, stream=st, backward=True)
        if t - margin < stream.start:
            return
        key = next((p for p in container.demux(st) if p.is_keyframe and p.pts is not None), None)
        if key is not None and float(key.pts * st.time_base) - origin <= t + EPS:
            container.seek(ts, stream=st, backward=True)
            return
        margin = max(2 * margin, 1.0)


