"""Video frames of a clip on the media timeline, upright, resized in the decoder (decord or PyAV)."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import decord  # imported here, not lazily in a decode thread
import numpy as np

from features.media.probe import MediaInfo, StreamInfo, probe_media
from features.media.streams import (
    EPS,
    check_complete,
    clip_window,
    frame_sample_times,
    overlaps,
    seek_before,
    select_stream,
)
from store.errors import CorruptMediaError, MediaError

log = logging.getLogger(__name__)

VideoDecoderChoice = Literal["auto", "decord", "pyav"]
_DECORD_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})  # demuxer names
_DECORD_START_TOLERANCE = 0.001  # seconds: decord's times are float32


# --------------------------------------------------------------------------------------------- video


@dataclass
class VideoFrames:
    """Sampled, resized frames of one clip, produced lazily in chunks (bounded memory).

    ``times`` are the planned row spans (seconds from the clip start); ``chunks()`` yields
    ``(frames uint8 [n, H, W, 3], times [n, 2])`` covering them in order.
    """

    path: str
    stream: StreamInfo
    decoder: str
    times: np.ndarray
    meta: dict[str, Any]
    _chunks: Iterator[tuple[np.ndarray, np.ndarray]] = field(repr=False)
    _cleanup: list[str] = field(default_factory=list, repr=False)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        try:
            yield from self._chunks
        finally:
            self.close()

    def close(self) -> None:
        _remove(self._cleanup)

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        """All frames and times at once (small clips and tests)."""
        frames, times = [], []
        for f, t in self.chunks():
            frames.append(f)
            times.append(t)
        h, w = self.meta["size"][1], self.meta["size"][0]
        if not frames:
            return np.zeros((0, h, w, 3), np.uint8), np.zeros((0, 2), np.float64)
        return np.concatenate(frames), np.concatenate(times)


def open_video(
    path: str,
    *,
    fps: float = 2.0,
    width: int = 224,
    height: int = 224,
    start: float | None = None,
    end: float | None = None,
    stream: int | None = None,
    decoder: VideoDecoderChoice = "auto",
    chunk_size: int = 32,
    clip_id: str | None = None,
    info: MediaInfo | None = None,
) -> VideoFrames | None:
    """Plan the frame decode of one clip; ``None`` when the media has no video stream.

    Raises ``CorruptMediaError`` for unreadable media (or a first frame that does not decode),
    ``UnsupportedMediaError`` for a configured stream that does not exist. Later decoding errors
    surface while iterating ``chunks()``.
    """
    info = info or probe_media(path, clip_id=clip_id)
    chosen = select_stream(info, "video", stream, clip_id=clip_id)
    if chosen is None:
        return None
    offset, duration = clip_window(start, end, info.duration)
    times = frame_sample_times(duration, fps)
    rotation = display_rotation(path, chosen, clip_id)
    meta: dict[str, Any] = {
        "video_stream": chosen.index,
        "video_codec": chosen.codec,
        "source_size": [chosen.width, chosen.height],
        "source_fps": chosen.fps,
        "rotation": rotation,
        "n_video_streams": len(info.video),
        "fps": fps,
        "size": [width, height],
        "window": [offset, offset + duration],
    }
    cleanup: list[str] = []
    use_decord = decoder != "pyav"
    if use_decord and (unfit := _decord_unfit(info, rotation)):
        meta["decord_skipped"] = unfit
        use_decord = False
    if use_decord:
        reader: Any = None
        try:
            reader, remuxed = _open_decord(path, info, chosen, width, height, cleanup, clip_id)
            frame_times = _decord_frame_times(reader)
        except MediaError:
            _remove(cleanup)
            raise
        except Exception as exc:  # decord refuses a file PyAV could probe: try PyAV below
            _remove(cleanup)
            if decoder == "decord":
                raise CorruptMediaError(f"decord cannot read video stream {chosen.index}: {exc}",
                                        clip_id=clip_id, path=path) from exc
            log.info("decord failed on %s (%s); decoding stream %d with PyAV", path, exc, chosen.index)
            meta["decord_error"] = _last_line(exc)
            reader = None
        if reader is not None and (off := _off_timeline(frame_times)):
            _remove(cleanup)
            meta["decord_skipped"] = off
            reader = None
        if reader is not None:
            name = "decord+remux" if remuxed else "decord"
            meta["video_decoder"] = name
            plan, last_end = _decord_plan(frame_times + chosen.start, offset, times)
            try:
                check_complete("video", chosen, last_end, offset + duration, info, clip_id)
            except MediaError:
                _remove(cleanup)
                raise
            times = times[plan >= 0]
            idx = plan[plan >= 0]

            def pyav_rest(rest: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
                return _pyav_chunks(path, info, chosen, offset, rest, width, height, rotation, chunk_size, clip_id)

            chunks = _decord_chunks(reader, idx, times, chunk_size, path, clip_id,
                                    None if decoder == "decord" else pyav_rest, meta)
            return VideoFrames(path, chosen, name, times, meta, chunks, cleanup)
    meta["video_decoder"] = "pyav"
    chunks = _pyav_chunks(path, info, chosen, offset, times, width, height, rotation, chunk_size, clip_id)
    # the PyAV path learns the stream end while decoding: rows past it are dropped from the chunks
    return VideoFrames(path, chosen, "pyav", times, meta, chunks, cleanup)


def decode_video(path: str, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    """Convenience: ``open_video`` and read every sampled frame: ``(frames, times, meta)``."""
    video = open_video(path, **kwargs)
    if video is None:
        return None
    frames, times = video.read_all()
    return frames, times, video.meta


def display_rotation(path: str, stream: StreamInfo, clip_id: str | None = None) -> int:
    """The counter-clockwise rotation (0, 90, 180 or 270 degrees) a player gives ``stream``'s
    pictures: its first frame's display matrix (from the container or the codec), to the nearest
    quarter turn. PyAV exposes it on decoded frames only, so one frame is decoded."""
    try:
        with av.open(path) as c:
            st = c.streams[stream.index]
            assert isinstance(st, av.VideoStream)  # stream is one of this file's video streams
            for frame in c.decode(st):
                return round(frame.rotation / 90) % 4 * 90
    except av.FFmpegError as exc:
        raise CorruptMediaError(f"video decoding failed: {exc}", clip_id=clip_id, path=path) from exc
    raise CorruptMediaError(f"video stream {stream.index} has no decodable frames", clip_id=clip_id, path=path)


def _last_line(exc: BaseException) -> str:
    """decord's error for meta: the last line of its C++ trace, cut to 200 characters."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]


def _remove(folders: list[str]) -> None:
    """Delete the temporary folders of a decode that will not happen (a remux decord cannot use)."""
    for d in folders:
        shutil.rmtree(d, ignore_errors=True)
    folders.clear()


def _decord_unfit(info: MediaInfo, rotation: int) -> str | None:
    """Why decord would not give this stream's frames on the media timeline (None: it would)."""
    if info.format not in _DECORD_FORMATS:
        return f"container {info.format!r}: decord is used on mp4/mov and Matroska/WebM only"
    if rotation:
        return f"rotated {rotation} degrees: decord applies mp4 rotations only, PyAV applies all"
    return None


def _open_decord(
    path: str, info: MediaInfo, chosen: StreamInfo, width: int, height: int, cleanup: list[str], clip_id: str | None
) -> tuple[Any, bool]:
    """A decord VideoReader on the chosen stream: the file itself when decord's own pick is that
    stream, else a temporary single-stream remux of it."""
    if len(info.video) == 1:
        return decord.VideoReader(path, width=width, height=height), False
    reader = decord.VideoReader(path, width=width, height=height)
    if _decord_reads(reader, path, chosen, info):
        return reader, False
    del reader
    tmp = tempfile.mkdtemp(prefix="emoflow-remux-")
    cleanup.append(tmp)
    single = _remux_stream(path, chosen.index, os.path.join(tmp, "video.mkv"), clip_id)
    return decord.VideoReader(single, width=width, height=height), True


def _decord_reads(reader: Any, path: str, chosen: StreamInfo, info: MediaInfo) -> bool:
    """Whether decord opened ``chosen``: its frame count and fps must match that stream and no other."""
    sig = (len(reader), round(float(reader.get_avg_fps()), 2))
    with av.open(path) as c:
        sigs = {
            s.index: (s.frames, round(float(s.average_rate or s.guessed_rate or 0), 2))
            for s in c.streams.video
        }
    matches = [i for i, s in sigs.items() if s == sig]
    return matches == [chosen.index]


def _remux_stream(path: str, index: int, dst: str, clip_id: str | None) -> str:
    """Copy stream ``index``'s packets alone into a Matroska file (no re-encoding)."""
    try:
        with av.open(path) as src, av.open(dst, "w", format="matroska") as out:
            ist = src.streams[index]
            ost = out.add_stream_from_template(ist)
            for pkt in src.demux(ist):
                if pkt.dts is None:  # the demuxer's end-of-stream flush packet
                    continue
                pkt.stream = ost
                out.mux(pkt)
    except av.FFmpegError as exc:
        raise CorruptMediaError(f"cannot remux video stream {index}: {exc}", clip_id=clip_id, path=path) from exc
    return dst


def _decord_frame_times(reader: Any) -> np.ndarray:
    """decord's ``[start, end)`` of every frame, in seconds from the stream's own start."""
    n = len(reader)
    return np.asarray(reader.get_frame_timestamp(list(range(n))), dtype=np.float64).reshape(n, 2)


def _off_timeline(frame_times: np.ndarray) -> str | None:
    """Why decord's frame times are not the stream's (None: they are). decord (its own FFmpeg 4.1)
    counts from the stream's start, so its first frame starts at 0; on some Matroska files it counts
    from another stream's start (an AAC track's encoder delay: every frame 64 ms late) or from no
    start at all (times near 2^63 ns: every row dropped as past the end), and its times must rise."""
    if not len(frame_times):
        return "decord reads no frames"
    starts = frame_times[:, 0]
    if not np.isfinite(frame_times).all() or (np.diff(starts) < -EPS).any():
        return "decord's frame times are not finite and rising"
    if abs(starts[0]) > _DECORD_START_TOLERANCE:
        return f"decord puts the stream's first frame at {starts[0]:.3f} s, not at its start"
    return None


def _decord_plan(frame_times: np.ndarray, offset: float, times: np.ndarray) -> tuple[np.ndarray, float]:
    """Frame index shown at each row's start time (-1: past the end of the video stream, or every
    row when the window ends before the stream starts), and the end time of the stream's last frame.
    ``frame_times``: decord's frame spans on the media timeline."""
    n = len(frame_times)
    starts, last_end = frame_times[:, 0], float(frame_times[-1, 1])
    media_t = offset + times[:, 0]
    idx = np.searchsorted(starts, media_t + EPS, side="right") - 1
    idx = np.clip(idx, 0, n - 1)
    idx[media_t >= last_end - EPS] = -1
    if len(times) and not overlaps(starts[0], last_end, offset, offset + float(times[-1, 1])):
        idx[:] = -1
    return idx.astype(np.int64), last_end


def _decord_chunks(
    reader: Any,
    idx: np.ndarray,
    times: np.ndarray,
    chunk_size: int,
    path: str,
    clip_id: str | None,
    pyav_rest: Callable[[np.ndarray], Iterator[tuple[np.ndarray, np.ndarray]]] | None,
    meta: dict[str, Any],
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Fetch sampled frames with ``get_batch`` (each distinct index decoded once), chunk by chunk.
    decord can fail where the file is fine (frames resized to under 32 pixels wide: "Check failed:
    from_size == to_size"), so a failed batch hands its rows and the rest to ``pyav_rest`` (PyAV on
    the same timeline, whose error names the problem when the data is bad); None: raise
    (``decoder: decord``). ``meta`` records the switch (``decord_error``, ``video_decoder``)."""
    for lo in range(0, len(idx), chunk_size):
        part = idx[lo : lo + chunk_size]
        uniq, inverse = np.unique(part, return_inverse=True)
        try:
            frames = reader.get_batch(uniq.tolist()).asnumpy()
        except Exception as exc:
            if pyav_rest is None:
                raise CorruptMediaError(
                    f"video decoding failed near frame {int(uniq[0])}: {exc}", clip_id=clip_id, path=path
                ) from exc
            log.info("decord failed on %s near frame %d (%s); PyAV decodes the rest", path, int(uniq[0]), exc)
            meta["decord_error"] = _last_line(exc)
            meta["video_decoder"] = "pyav" if lo == 0 else f"{meta['video_decoder']}+pyav"
            yield from pyav_rest(times[lo:])
            return
        yield frames[inverse], times[lo : lo + chunk_size]


def _pyav_chunks(
    path: str,
    info: MediaInfo,
    chosen: StreamInfo,
    offset: float,
    times: np.ndarray,
    width: int,
    height: int,
    rotation: int,
    chunk_size: int,
    clip_id: str | None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decode the chosen stream with PyAV: the frame shown at each row's start, resized by swscale
    and turned upright (a quarter turn swaps the size it is resized to)."""
    targets = offset + times[:, 0]
    stop = offset + float(times[-1, 1]) if len(times) else offset
    origin = info.start_time
    turns = rotation // 90
    size = {"width": height, "height": width} if turns % 2 else {"width": width, "height": height}
    k = 0
    buf: list[np.ndarray] = []
    buf_times: list[np.ndarray] = []

    def emit(frame: av.VideoFrame) -> None:
        img = frame.to_ndarray(format="rgb24", interpolation="BICUBIC", width=size["width"], height=size["height"])
        buf.append(np.rot90(img, turns) if turns else img)
        buf_times.append(times[k])

    def flush() -> tuple[np.ndarray, np.ndarray]:
        out = (np.stack(buf), np.stack(buf_times))
        buf.clear()
        buf_times.clear()
        return out

    try:
        with av.open(path) as c:
            st = c.streams[chosen.index]
            assert isinstance(st, av.VideoStream)  # chosen is one of this file's video streams
            st.thread_type = "AUTO"
            seek_before(c, st, float(targets[0]) if len(targets) else offset, chosen, origin)
            prev: av.VideoFrame | None = None
            prev_t = prev_end = 0.0
            for frame in c.decode(st):
                t = frame.time - origin if frame.time is not None else prev_end
                if prev is not None and t < prev_t - EPS:
                    continue  # stamped before the frame shown (broken timestamps): a player drops it too
                if prev is None and not overlaps(t, math.inf, offset, stop):
                    return  # the stream starts after the window: no rows, not its first frame repeated
                while k < len(targets) and targets[k] < t - EPS:
                    emit(prev if prev is not None else frame)
                    k += 1
                    if len(buf) == chunk_size:
                        yield flush()
                if k >= len(targets):
                    break
                prev, prev_t = frame, t
                if frame.duration and st.time_base is not None:
                    dur = float(frame.duration * st.time_base)
                else:
                    dur = 1.0 / (chosen.fps or 25.0)
                prev_end = t + dur
            if k < len(targets):  # the stream ended before the last row: was it cut short?
                if prev is None:
                    raise CorruptMediaError(
                        f"video stream {chosen.index} has no decodable frames", clip_id=clip_id, path=path
                    )
                check_complete("video", chosen, prev_end, offset + float(times[-1, 1]), info, clip_id)
            while prev is not None and k < len(targets) and targets[k] < prev_end - EPS:
                emit(prev)
                k += 1
                if len(buf) == chunk_size:
                    yield flush()
    except av.FFmpegError as exc:
        raise CorruptMediaError(f"video decoding failed: {exc}", clip_id=clip_id, path=path) from exc
    if buf:
        yield flush()


