"""Media decoding for the extractors: video frames with decord or PyAV, audio with PyAV.

Why these choices:

- **Probe first** (``features.probe``): decord can dump file bytes to the console on non-video input
  and cannot tell us which streams exist, so every decode starts from a PyAV probe; a clip whose
  media lacks a modality gets a recorded absence, an unreadable file a ``CorruptMediaError``.
- **One media timeline** for every stream and decoder: t=0 is the earliest start of an audio/video
  stream (``MediaInfo.start_time`` on the file's clock; see ``features.probe``), so an MPEG-TS file
  starting at 1.46 s or an mp4 whose edit list delays a track gives audio rows, PyAV frames and
  decord frames at the same times. PyAV maps ``frame.time - start_time``; decord reports
  ``pts - the stream's start_time``, so its times are shifted by the stream's start on the timeline.
  Before a stream starts, audio is silence and video shows the stream's first frame.
- **Upright pictures.** Frames are rotated by the stream's display matrix (``meta["rotation"]``,
  degrees counter-clockwise, in quarter turns) as a player does, then sized ``width`` x ``height``.
- **Explicit streams.** A container can hold several video/audio streams and the decoders disagree
  on the default (for ``nasa_webb_narration.mp4`` PyAV's first streams are the 320x180 video and the
  8 kHz audio, decord's VideoReader takes the 480x270 video and its AudioReader the 8 kHz audio).
  We pick the highest-resolution video and highest-sample-rate audio unless a stream index is
  configured, and record the choice in the result meta.
- **decord has no stream selector** in its Python API (0.6: ``VideoReader`` always opens
  ``av_find_best_stream``'s choice). We check which stream it opened (frame count + fps against the
  probe) and, when it is not the chosen one, remux the chosen stream alone (packet copy, no
  re-encode) into a temporary Matroska file that decord then reads. If decord cannot read a file
  that PyAV can, we decode the stream with PyAV instead. ``meta["video_decoder"]`` says which.
- **decord only where it is right.** decord 0.6 (its own FFmpeg 4.1) is used on mp4/mov and
  Matroska/WebM only: on MPEG-TS with B-frames its seeks return wrong frames (every frame of a clip
  white, or the picture 0.4 s early), and it applies an mp4 rotation but not a Matroska or codec
  one. Other containers and rotated streams are decoded with PyAV, for any ``decoder`` but
  ``"pyav"``, and ``meta["decord_skipped"]`` says why.
- **Bounded memory.** Frames are resized inside the decoder (``VideoReader(width=, height=)``,
  swscale for PyAV) and fetched in chunks of sampled indices (never ``next()``), so a 4K or
  hour-long input only ever holds ``chunk_size`` small frames.
- **Audio with PyAV**, resampled to 16 kHz mono float32 by swresample (librosa cannot read mp4 and
  its audioread fallback is deprecated; decord's AudioReader ignores stream choice).

Times of returned rows are seconds from the clip start; the clip is ``[start, end)`` of the media
timeline.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import decord  # imported here, not lazily in a decode thread
import numpy as np

from features.base import ClipFailure, ClipInput
from features.probe import MediaInfo, StreamInfo, probe_media
from store.errors import CorruptMediaError, MediaError, UnsupportedMediaError

log = logging.getLogger(__name__)

VideoDecoderChoice = Literal["auto", "decord", "pyav"]
_EPS = 1e-6
_AUDIO_PREROLL = 0.5  # seconds decoded before a clip start and dropped
_DECORD_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})  # demuxer names


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
    raises ``UnsupportedMediaError`` when ``index`` names no ``kind`` stream of this file.
    """
    streams = info.video if kind == "video" else info.audio
    if not streams:
        return None
    if index is None:
        return info.best_video() if kind == "video" else info.best_audio()
    for s in streams:
        if s.index == index:
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


def _seek_before(container: Any, st: Any, t: float, stream: StreamInfo, origin: float) -> None:
    """Position ``container`` so that decoding ``st`` yields the frame at media time ``t`` or an
    earlier one. A backward seek alone is not enough: demuxers without an index (MPEG-TS) land near
    the target, often after it and mid-GOP, so step back until the first keyframe is early enough
    (a target before the stream start lands at its beginning)."""
    if t <= stream.start:
        return
    margin = 0.0
    while True:
        ts = int((origin + t - margin) / st.time_base)
        container.seek(ts, stream=st, backward=True)
        if t - margin < stream.start:
            return
        key = next((p for p in container.demux(st) if p.is_keyframe and p.pts is not None), None)
        if key is None or float(key.pts * st.time_base) - origin <= t + _EPS:
            container.seek(ts, stream=st, backward=True)
            return
        margin = max(2 * margin, 1.0)


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
        for d in self._cleanup:
            shutil.rmtree(d, ignore_errors=True)
        self._cleanup.clear()

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
        try:
            reader, remuxed = _open_decord(path, info, chosen, width, height, cleanup, clip_id)
        except MediaError:
            for d in cleanup:
                shutil.rmtree(d, ignore_errors=True)
            raise
        except Exception as exc:  # decord refuses a file PyAV could probe: try PyAV below
            for d in cleanup:
                shutil.rmtree(d, ignore_errors=True)
            cleanup.clear()
            if decoder == "decord":
                raise CorruptMediaError(f"decord cannot read video stream {chosen.index}: {exc}",
                                        clip_id=clip_id, path=path) from exc
            log.info("decord failed on %s (%s); decoding stream %d with PyAV", path, exc, chosen.index)
            meta["decord_error"] = str(exc).strip().splitlines()[-1][:200]
            reader = None
        if reader is not None:
            name = "decord+remux" if remuxed else "decord"
            meta["video_decoder"] = name
            plan, last_end = _decord_plan(reader, chosen.start, offset, times)
            try:
                check_complete("video", chosen, last_end, offset + duration, info, clip_id)
            except MediaError:
                for d in cleanup:
                    shutil.rmtree(d, ignore_errors=True)
                raise
            times = times[plan >= 0]
            idx = plan[plan >= 0]
            chunks = _decord_chunks(reader, idx, times, chunk_size, path, clip_id)
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
            for frame in c.decode(c.streams[stream.index]):
                return round(frame.rotation / 90) % 4 * 90
    except av.FFmpegError as exc:
        raise CorruptMediaError(f"video decoding failed: {exc}", clip_id=clip_id, path=path) from exc
    raise CorruptMediaError(f"video stream {stream.index} has no decodable frames", clip_id=clip_id, path=path)


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


def _decord_plan(
    reader: Any, stream_start: float, offset: float, times: np.ndarray
) -> tuple[np.ndarray, float]:
    """Frame index shown at each row's start time (-1: past the end of the video stream), and the
    end time of the stream's last frame. decord's timestamps count from the stream's own start,
    which sits at ``stream_start`` on the media timeline."""
    n = len(reader)
    ts = np.asarray(reader.get_frame_timestamp(list(range(n))), dtype=np.float64).reshape(n, 2)
    ts += stream_start
    starts, last_end = ts[:, 0], float(ts[-1, 1])
    media_t = offset + times[:, 0]
    idx = np.searchsorted(starts, media_t + _EPS, side="right") - 1
    idx = np.clip(idx, 0, n - 1)
    idx[media_t >= last_end - _EPS] = -1
    return idx.astype(np.int64), last_end


def _decord_chunks(
    reader: Any, idx: np.ndarray, times: np.ndarray, chunk_size: int, path: str, clip_id: str | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Fetch sampled frames with ``get_batch`` (each distinct index decoded once), chunk by chunk."""
    for lo in range(0, len(idx), chunk_size):
        part = idx[lo : lo + chunk_size]
        uniq, inverse = np.unique(part, return_inverse=True)
        try:
            frames = reader.get_batch(uniq.tolist()).asnumpy()
        except Exception as exc:
            raise CorruptMediaError(
                f"video decoding failed near frame {int(uniq[0])}: {exc}", clip_id=clip_id, path=path
            ) from exc
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
    origin = info.start_time
    turns = rotation // 90
    size = {"width": height, "height": width} if turns % 2 else {"width": width, "height": height}
    k = 0
    buf: list[np.ndarray] = []
    buf_times: list[np.ndarray] = []

    def emit(frame: av.VideoFrame) -> None:
        img = frame.to_ndarray(format="rgb24", interpolation="BICUBIC", **size)
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
            st.thread_type = "AUTO"
            _seek_before(c, st, offset, chosen, origin)
            prev: av.VideoFrame | None = None
            prev_end = 0.0
            for frame in c.decode(st):
                t = frame.time - origin if frame.time is not None else prev_end
                while k < len(targets) and targets[k] < t - _EPS:
                    emit(prev if prev is not None else frame)
                    k += 1
                    if len(buf) == chunk_size:
                        yield flush()
                if k >= len(targets):
                    break
                prev = frame
                dur = float(frame.duration * st.time_base) if frame.duration else 1.0 / (chosen.fps or 25.0)
                prev_end = t + dur
            if k < len(targets):  # the stream ended before the last row: was it cut short?
                if prev is None:
                    raise CorruptMediaError(
                        f"video stream {chosen.index} has no decodable frames", clip_id=clip_id, path=path
                    )
                check_complete("video", chosen, prev_end, offset + float(times[-1, 1]), info, clip_id)
            while prev is not None and k < len(targets) and targets[k] < prev_end - _EPS:
                emit(prev)
                k += 1
                if len(buf) == chunk_size:
                    yield flush()
    except av.FFmpegError as exc:
        raise CorruptMediaError(f"video decoding failed: {exc}", clip_id=clip_id, path=path) from exc
    if buf:
        yield flush()


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
            # start early: codecs with overlapping frames (AAC, Opus) need a frame to warm up
            _seek_before(c, st, offset - _AUDIO_PREROLL, chosen, origin)
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


# --------------------------------------------------------------------------------------------- failures


def clip_window_args(clip: ClipInput) -> dict[str, float | None]:
    """``start``/``end`` for the decoders from a clip row (``end`` falls back to start + duration)."""
    end = clip.end
    if end is None and clip.start is not None and clip.duration > 0:
        end = clip.offset + clip.duration
    return {"start": clip.start, "end": end}


def failure_from_exception(clip: ClipInput, exc: BaseException, stage: str = "decode") -> ClipFailure:
    """A ``ClipFailure`` whose message names the clip, the media and the problem.

    Media errors are deterministic (not retried); plain I/O errors are marked transient.
    """
    if isinstance(exc, MediaError):
        message = str(exc)
        if clip.clip_id not in message:
            message = f"clip {clip.clip_id!r}: {message}"
        return ClipFailure(clip.clip_id, stage, type(exc).__name__, message, transient=False)
    transient = isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, IsADirectoryError))
    message = f"clip {clip.clip_id!r}: {clip.media_uri}: {type(exc).__name__}: {exc}"
    return ClipFailure(clip.clip_id, stage, type(exc).__name__, message, transient=transient)
