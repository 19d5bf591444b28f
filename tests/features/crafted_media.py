"""Crafted media with known event times, written with PyAV (no ffmpeg binary).

Every file shows black frames and silence until ``event`` seconds of the media timeline (t=0 is the
earliest start of its audio/video streams), then white frames and a 1 kHz tone. A file can start
its audio late, sit behind a container start offset, carry an encoded lead-in that only an edit
list hides (white and loud, so a decoder that shows it fails), have irregular frame times, a
display rotation or a subtitle track that outlasts its picture and sound.

Encoder delay is kept out of the way: the AAC encoder emits a priming packet 1024 samples before
its first input sample, and MPEG-TS has no way to say so (an mp4 edit list and Matroska's
CodecDelay do). The audio frames are therefore fed ``AAC_PRIMING`` samples late, so the priming
packet starts exactly at the audio start in every container and the tone's position is given by
its own timestamps, not by how a container treats encoder delay.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16000
TONE_HZ = 1000.0
AAC_PRIMING = 1024  # samples FFmpeg's AAC encoder emits before the first input sample
VIDEO_TB = Fraction(1, 1000)
FRAME_SIZE = (64, 48)


def picture(t: float, event: float, corner: bool) -> np.ndarray:
    """The frame at stream time ``t``: white from ``event`` on and in a lead-in (``t < 0``), else
    black, with a white top-left quadrant when ``corner`` (to see orientation)."""
    w, h = FRAME_SIZE
    img = np.zeros((h, w, 3), np.uint8)
    if t >= event or t < 0:
        img[:] = 255
    elif corner:
        img[: h // 2, : w // 2] = 255
    return img


def signal(t: np.ndarray, event: float) -> np.ndarray:
    """The audio at stream times ``t``: a 1 kHz tone from ``event`` on and in a lead-in, else silence."""
    on = (t >= event) | (t < 0)
    return np.where(on, 0.5 * np.sin(2 * np.pi * TONE_HZ * t), 0.0).astype(np.float32)


def write_crafted(
    path: Path,
    *,
    seconds: float = 3.0,
    event: float = 1.0,
    fps: int = 10,
    audio_start: float = 0.0,
    lead_in: float = 0.0,
    frame_times: Sequence[float] | None = None,
    bframes: int = 0,
    rotation: int = 0,
    corner: bool = False,
    subtitle_until: float | None = None,
    live: bool = False,
    options: dict[str, str] | None = None,
) -> Path:
    """Write an h264 + AAC file whose streams end at ``seconds`` of the media timeline.

    ``audio_start``: where the audio stream starts (video starts at 0); ``lead_in``: seconds encoded
    before each stream's start with negative timestamps (mp4 hides them with an edit list);
    ``frame_times``: explicit frame start times (variable frame rate) instead of ``k / fps``;
    ``rotation``: display matrix rotation, degrees counter-clockwise; ``subtitle_until``: add a
    SubRip track whose last cue ends there; ``live``: write through a non-seekable stream, as a
    live recorder does (Matroska then has no duration headers); ``options``: muxer options (e.g.
    ``output_ts_offset``).
    """
    with ExitStack() as stack:
        fh = stack.enter_context(open(path, "wb"))
        out = _Unseekable(fh) if live else fh
        c = stack.enter_context(av.open(out, "w", format=_FORMATS[path.suffix], options=options or {}))
        srt = stack.enter_context(_srt(path.with_suffix(".srt"), subtitle_until)) if subtitle_until else None
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = FRAME_SIZE[0], FRAME_SIZE[1], "yuv420p"
        vs.time_base = vs.codec_context.time_base = VIDEO_TB
        vs.options = {"preset": "ultrafast", "g": str(fps), "bf": str(bframes)}
        if bframes:
            vs.options = {**vs.options, "preset": "medium"}
        if rotation:
            vs.set_display_rotation(rotation)
        ast = c.add_stream("aac", rate=SAMPLE_RATE)
        ast.layout = "mono"
        if srt is not None:
            sub = c.add_stream_from_template(srt.streams[0])

        regular = np.arange(round(-lead_in * fps), round(seconds * fps)) / fps
        times = np.asarray(frame_times if frame_times is not None else regular, dtype=np.float64)
        for t in times[(times >= -lead_in - 1e-9) & (times < seconds - 1e-9)]:
            frame = av.VideoFrame.from_ndarray(picture(t, event, corner), format="rgb24")
            frame.pts, frame.time_base = round(t / VIDEO_TB), VIDEO_TB
            for pkt in vs.encode(frame):
                c.mux(pkt)
        for pkt in vs.encode(None):
            c.mux(pkt)

        first = round((audio_start - lead_in) * SAMPLE_RATE)
        n = round(seconds * SAMPLE_RATE) - first - AAC_PRIMING
        pts = first + AAC_PRIMING + np.arange(n)
        y = signal(pts / SAMPLE_RATE - audio_start, event - audio_start)
        for lo in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(y[None, lo : lo + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, int(pts[lo]), Fraction(1, SAMPLE_RATE)
            for pkt in ast.encode(frame):
                c.mux(pkt)
        for pkt in ast.encode(None):
            c.mux(pkt)

        if srt is not None:
            for pkt in srt.demux(srt.streams[0]):
                if pkt.dts is not None:  # not the demuxer's end-of-stream flush packet
                    pkt.stream = sub
                    c.mux(pkt)
    return path


_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".ts": "mpegts"}


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
