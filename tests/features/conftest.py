"""Fixtures for the feature tests: real clips (skipped when the shared data folder is absent),
synthetic media written with PyAV into tmp dirs, and models loaded once per session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from features.base import ClipInput


# name → (has video, has audio)
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


@pytest.fixture(scope="session")
def clips_dir(shared_data: Path) -> Path:
    """``../shared/data/clips`` (the session skips these tests when the folder is absent)."""
    d = shared_data / "clips"
    if not d.is_dir():
        pytest.skip(f"shared real media not available at {d}")
    return d


def clip_of(path: str | Path, clip_id: str | None = None, start: float | None = None,
            end: float | None = None, duration: float | None = None, text: str = "") -> ClipInput:
    """A ClipInput for a media file; duration defaults to the window or the media duration."""
    from features.probe import probe_media

    if duration is None:
        if end is not None:
            duration = end - (start or 0.0)
        else:
            duration = probe_media(path).duration - (start or 0.0)
    return ClipInput(clip_id or Path(path).name, str(path), start, end, text, duration)


def write_media(
    path: Path,
    *,
    seconds: float = 3.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    video: bool = True,
    audio: bool = True,
    sample_rate: int = 16000,
    still: bool = False,
    faststart: bool = False,
) -> Path:
    """Write a small real media file with PyAV: a moving bright square (or a still picture) on a
    coloured background, and a 440 Hz tone whose loudness ramps up."""
    options = {"movflags": "faststart"} if faststart else {}
    w, h = size
    with av.open(str(path), "w", options=options) as c:
        vs = c.add_stream("libx264", rate=fps) if video else None
        if vs is not None:
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.options = {"preset": "ultrafast", "g": str(fps)}
            if still:  # lossless, so every decoded frame of the still picture is bit-identical
                vs.options = {**vs.options, "qp": "0"}
        ast = c.add_stream("aac", rate=sample_rate) if audio else None
        if ast is not None:
            ast.layout = "mono"
        if vs is not None:
            for i in range(int(seconds * fps)):
                img = np.zeros((h, w, 3), np.uint8)
                img[..., 0] = 40
                img[..., 2] = 120
                x = 10 if still else int((w - 30) * i / max(seconds * fps - 1, 1))
                img[h // 2 - 15 : h // 2 + 15, x : x + 30] = 255
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                for pkt in vs.encode(frame):
                    c.mux(pkt)
            for pkt in vs.encode(None):
                c.mux(pkt)
        if ast is not None:
            n = int(seconds * sample_rate)
            t = np.arange(n) / sample_rate
            y = (0.5 * (t / seconds) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            hop = 1024
            for lo in range(0, n, hop):
                frame = av.AudioFrame.from_ndarray(y[None, lo : lo + hop], format="flt", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = lo
                frame.time_base = Fraction(1, sample_rate)
                for pkt in ast.encode(frame):
                    c.mux(pkt)
            for pkt in ast.encode(None):
                c.mux(pkt)
    return path


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = 16000) -> Path:
    """A mono PCM WAV written with PyAV (audio-only media that needs no shared data)."""
    with av.open(str(path), "w", format="wav") as c:
        st = c.add_stream("pcm_s16le", rate=sample_rate)
        st.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None], format="s16", layout="mono"
        )
        frame.sample_rate = sample_rate
        frame.pts = 0
        for pkt in st.encode(frame):
            c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)
    return path


@dataclass(frozen=True)
class SyntheticMedia:
    av_mp4: Path  # 3 s, 160x120 @ 10 fps h264 + 16 kHz AAC mono
    video_only: Path  # 2 s, video stream only
    audio_only: Path  # 2 s WAV
    silent: Path  # 1.5 s of digital silence, WAV
    still: Path  # 4 s of one still picture (lossless h264: identical decoded frames)
    truncated: Path  # first half of av_mp4's bytes (moov atom at the end → lost)
    truncated_faststart: Path  # first half of a faststart mp4 (moov up front, media data cut)
    corrupt: Path  # random bytes
    empty: Path  # zero bytes


@pytest.fixture(scope="session")
def synth_media(tmp_path_factory: pytest.TempPathFactory) -> SyntheticMedia:
    d = tmp_path_factory.mktemp("media")
    av_mp4 = write_media(d / "av.mp4")
    fast = write_media(d / "fast.mp4", seconds=4.0, faststart=True)
    truncated = d / "truncated.mp4"
    truncated.write_bytes(av_mp4.read_bytes()[: av_mp4.stat().st_size // 2])
    truncated_fast = d / "truncated_faststart.mp4"
    truncated_fast.write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    t = np.arange(32000) / 16000
    return SyntheticMedia(
        av_mp4=av_mp4,
        video_only=write_media(d / "video_only.mp4", seconds=2.0, audio=False),
        audio_only=write_wav(d / "audio_only.wav", 0.3 * np.sin(2 * np.pi * 220 * t)),
        silent=write_wav(d / "silent.wav", np.zeros(24000)),
        still=write_media(d / "still.mp4", seconds=4.0, still=True, audio=False),
        truncated=truncated,
        truncated_faststart=truncated_fast,
        corrupt=corrupt,
        empty=empty,
    )


@pytest.fixture(scope="session")
def make_clip() -> Callable[..., ClipInput]:
    return clip_of
