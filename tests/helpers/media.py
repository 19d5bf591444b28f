"""Media files written with PyAV for tests (no ffmpeg binary), each with exactly the property a test
names; the product's ``corpora.synth.write_clip`` covers clips that only need to be ordinary.

``write_media`` shows black frames and silence until ``event`` seconds of the media timeline (t=0 is
the earliest start of its audio/video streams), then white frames and a 1 kHz tone, so a test can
find the event in decoded rows. A file can hold several video and audio streams, start its audio
late, sit behind a container start offset, carry an encoded lead-in that only an edit list hides
(white and loud, so a decoder that shows it fails), have irregular frame times, a display rotation,
a still lossless picture or a subtitle track that outlasts its picture and sound.

Encoder delay is kept out of the way: the AAC encoder emits a priming packet 1024 samples before
its first input sample, and MPEG-TS has no way to say so (an mp4 edit list and Matroska's
CodecDelay do). The audio frames are therefore fed ``AAC_PRIMING`` samples late, so the priming
packet starts exactly at the audio start in every container and the tone's position is given by
its own timestamps, not by how a container treats encoder delay.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from features.clips import ClipInput
from features.media.probe import probe_media

SAMPLE_RATE = 16000
TONE_HZ = 1000.0
AAC_PRIMING = 1024  # samples FFmpeg's AAC encoder emits before the first input sample
VIDEO_TB = Fraction(1, 1000)
FRAME_SIZE = (64, 48)
_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".ts": "mpegts"}


@dataclass(frozen=True)
class Video:
    """One h264 stream. ``frame_times``: explicit frame start times (a variable frame rate) instead
    of ``k / fps``; ``rotation``: display matrix rotation, degrees counter-clockwise; ``lossless``:
    qp 0, so every decoded frame of a still picture is bit-identical."""

    size: tuple[int, int] = FRAME_SIZE  # (width, height)
    fps: int = 10
    frame_times: Sequence[float] | None = None
    bframes: int = 0
    rotation: int = 0
    lossless: bool = False


@dataclass(frozen=True)
class Audio:
    """One mono AAC stream that starts ``start`` seconds into the media timeline."""

    sample_rate: int = SAMPLE_RATE
    start: float = 0.0


def picture(t: float, event: float, corner: bool, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """The frame at stream time ``t``: white from ``event`` on and in a lead-in (``t < 0``), else
    black, with a white top-left quadrant when ``corner`` (to see orientation)."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    if t >= event or t < 0:
        img[:] = 255
    elif corner:
        img[: h // 2, : w // 2] = 255
    return img


def sound(t: np.ndarray, event: float) -> np.ndarray:
    """The audio at stream times ``t``: a 1 kHz tone from ``event`` on and in a lead-in, else silence."""
    on = (t >= event) | (t < 0)
    return np.where(on, 0.5 * np.sin(2 * np.pi * TONE_HZ * t), 0.0).astype(np.float32)


def write_media(
    path: Path,
    *,
    seconds: float = 3.0,
    event: float | None = 1.0,
    video: Video | Sequence[Video] = Video(),
    audio: Audio | Sequence[Audio] = Audio(),
    lead_in: float = 0.0,
    corner: bool = False,
    subtitle_until: float | None = None,
    live: bool = False,
    options: dict[str, str] | None = None,
) -> Path:
    """Write h264 + AAC streams that end at ``seconds`` of the media timeline; the suffix picks the
    container (.mp4, .mkv, .ts).

    ``event``: when picture and sound turn on (None: never, so a still picture and digital silence);
    ``video``/``audio``: one stream spec, several, or ``()`` for none; ``lead_in``: seconds encoded
    before each stream's start with negative timestamps (mp4 hides them with an edit list);
    ``subtitle_until``: add a SubRip track whose last cue ends there; ``live``: write through a
    non-seekable stream, as a live recorder does (Matroska then has no duration headers);
    ``options``: muxer options (e.g. ``output_ts_offset``, ``movflags=faststart``).
    """
    videos = [video] if isinstance(video, Video) else list(video)
    audios = [audio] if isinstance(audio, Audio) else list(audio)
    on = math.inf if event is None else event
    path.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        fh = stack.enter_context(open(path, "wb"))
        out = _Unseekable(fh) if live else fh
        c = stack.enter_context(av.open(out, "w", format=_FORMATS[path.suffix], options=options or {}))
        srt = stack.enter_context(_srt(path.with_suffix(".srt"), subtitle_until)) if subtitle_until else None
        vstreams = [_add_video(c, v) for v in videos]
        astreams = []
        for a in audios:
            st = c.add_stream("aac", rate=a.sample_rate)
            st.layout = "mono"
            astreams.append(st)
        subtitle = (srt, c.add_stream_from_template(srt.streams[0])) if srt is not None else None

        for vs, v in zip(vstreams, videos):
            regular = np.arange(round(-lead_in * v.fps), round(seconds * v.fps)) / v.fps
            times = np.asarray(v.frame_times if v.frame_times is not None else regular, dtype=np.float64)
            for t in times[(times >= -lead_in - 1e-9) & (times < seconds - 1e-9)]:
                vframe = av.VideoFrame.from_ndarray(picture(t, on, corner, v.size), format="rgb24")
                vframe.pts, vframe.time_base = round(t / VIDEO_TB), VIDEO_TB
                c.mux(vs.encode(vframe))
            c.mux(vs.encode(None))

        for st, a in zip(astreams, audios):
            rate = a.sample_rate
            first = round((a.start - lead_in) * rate)
            n = round(seconds * rate) - first - AAC_PRIMING
            pts = first + AAC_PRIMING + np.arange(n)
            y = sound(pts / rate - a.start, on - a.start)
            for lo in range(0, n, 1024):
                aframe = av.AudioFrame.from_ndarray(y[None, lo : lo + 1024], format="flt", layout="mono")
                aframe.sample_rate, aframe.pts, aframe.time_base = rate, int(pts[lo]), Fraction(1, rate)
                c.mux(st.encode(aframe))
            c.mux(st.encode(None))

        if subtitle is not None:
            src, sub = subtitle
            for pkt in src.demux(src.streams[0]):
                if pkt.dts is not None:  # not the demuxer's end-of-stream flush packet
                    pkt.stream = sub
                    c.mux(pkt)
    return path


def _add_video(c: av.container.OutputContainer, v: Video) -> av.VideoStream:
    """An x264 stream on a millisecond clock, so any frame time fits; the fast preset except where
    B-frames (reordered timestamps) are the point of the file."""
    vs = c.add_stream("libx264", rate=v.fps)
    vs.width, vs.height, vs.pix_fmt = v.size[0], v.size[1], "yuv420p"
    vs.time_base = vs.codec_context.time_base = VIDEO_TB
    vs.options = {"preset": "medium" if v.bframes else "ultrafast", "g": str(v.fps), "bf": str(v.bframes)}
    if v.lossless:
        vs.options = {**vs.options, "qp": "0"}
    if v.rotation:
        vs.set_display_rotation(v.rotation)
    return vs


def cut_between_packets(path: Path, keep: float = 0.5) -> Path:
    """Cut a file after the last whole packet within its first ``keep`` of bytes, as a download cut
    off between packets: with the header up front (faststart) every stream just ends early, and no
    decoder sees a partial packet (``corpora.synth.truncate_file`` cuts anywhere)."""
    with av.open(str(path)) as c:
        ends = [p.pos + p.size for p in c.demux() if p.pos is not None and p.pos >= 0 and p.size]
    limit = int(path.stat().st_size * keep)
    path.write_bytes(path.read_bytes()[: max(e for e in ends if e <= limit)])
    return path


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """A mono PCM WAV of exactly these samples (digital silence stays exactly zero)."""
    with av.open(str(path), "w", format="wav") as c:
        st = c.add_stream("pcm_s16le", rate=sample_rate)
        st.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None], format="s16", layout="mono"
        )
        frame.sample_rate = sample_rate
        frame.pts = 0
        c.mux(st.encode(frame))
        c.mux(st.encode(None))
    return path


def clip_of(path: str | Path, clip_id: str | None = None, start: float | None = None,
            end: float | None = None, duration: float | None = None, text: str = "") -> ClipInput:
    """A ClipInput for a media file; duration defaults to the window or the probed media duration."""
    if duration is None:
        if end is not None:
            duration = end - (start or 0.0)
        else:
            duration = probe_media(path).duration - (start or 0.0)
    return ClipInput(clip_id or Path(path).name, str(path), start, end, text, duration)


class _Unseekable(io.RawIOBase):
    """A write-only file wrapper that cannot seek, like a pipe or a live upload."""

    def __init__(self, fh: io.BufferedWriter) -> None:
        self._fh = fh

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]  # RawIOBase takes any buffer
        return self._fh.write(b)


def _srt(path: Path, until: float) -> av.container.InputContainer:
    """A two-cue SubRip file ending at ``until`` seconds, opened for packet copy (PyAV cannot
    encode subtitles without an ASS header, but it can copy a parsed .srt file's packets)."""
    def stamp(s: float) -> str:
        ms = round(s * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    path.write_text(f"1\n{stamp(0.5)} --> {stamp(1.5)}\nfirst cue\n\n2\n{stamp(1.5)} --> {stamp(until)}\nlong cue\n")
    return av.open(str(path))


# The shared real clips (../shared/data/clips): name -> (has video, has audio).
REAL_MEDIA = {
    "nasa_webb_narration.mp4": (True, True),
    "nasa_webb_narration.vp9_opus.webm": (True, True),
    "manifesto_audiobook.mp4": (True, True),
    "jfk_inaugural.flac": (False, True),
    "apollo11.mp3": (False, True),
    "librispeech_2412-153948-0000.flac": (False, True),
    "librispeech_198-209-0000.ogg": (False, True),
    "commonvoice_en_651325.mp3": (False, True),
}
