"""Fixtures for the feature tests: real clips (skipped when the shared data folder is absent),
synthetic media written with ``tests.helpers.media`` into a session tmp dir, the MFCC extractor."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from corpora.synth import truncate_file
from features.clips import ClipInput
from features.extractors.audio import MfccExtractor
from features.extractors.base import create_extractor
from tests.helpers.media import Video, clip_of, write_media, write_wav


@pytest.fixture(scope="session")
def clips_dir(shared_data: Path) -> Path:
    """``../shared/data/clips`` (the session skips these tests when the folder is absent)."""
    d = shared_data / "clips"
    if not d.is_dir():
        pytest.skip(f"shared real media not available at {d}")
    return d


@dataclass(frozen=True)
class SyntheticMedia:
    av_mp4: Path  # 3 s, 160x120 @ 10 fps h264 + 16 kHz AAC mono: white and a tone from 1 s on
    video_only: Path  # 2 s, 160x120 video stream only
    audio_only: Path  # 2 s WAV
    silent: Path  # 1.5 s of digital silence, WAV
    still: Path  # 4 s of one still picture (lossless h264: identical decoded frames), no audio
    truncated: Path  # first half of av_mp4's bytes (moov atom at the end → lost)
    truncated_faststart: Path  # first half of a faststart mp4 (moov up front, media data cut)
    corrupt: Path  # random bytes
    empty: Path  # zero bytes


@pytest.fixture(scope="session")
def synth_media(tmp_path_factory: pytest.TempPathFactory) -> SyntheticMedia:
    d = tmp_path_factory.mktemp("media")
    sd = Video(size=(160, 120))
    av_mp4 = write_media(d / "av.mp4", video=sd)
    fast = write_media(d / "fast.mp4", seconds=4.0, video=sd, options={"movflags": "faststart"})
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    t = np.arange(32000) / 16000
    return SyntheticMedia(
        av_mp4=av_mp4,
        video_only=write_media(d / "video_only.mp4", seconds=2.0, video=sd, audio=()),
        audio_only=write_wav(d / "audio_only.wav", 0.3 * np.sin(2 * np.pi * 220 * t)),
        silent=write_wav(d / "silent.wav", np.zeros(24000)),
        still=write_media(d / "still.mp4", seconds=4.0, event=None, corner=True,
                          video=Video(size=(160, 120), lossless=True), audio=()),
        truncated=truncate_file(shutil.copy(av_mp4, d / "truncated.mp4")),
        truncated_faststart=truncate_file(shutil.copy(fast, d / "truncated_faststart.mp4")),
        corrupt=corrupt,
        empty=empty,
    )


@pytest.fixture(scope="session")
def make_clip() -> Callable[..., ClipInput]:
    """``clip_of`` for tests that take their helpers as fixtures."""
    return clip_of


@pytest.fixture(scope="module")
def mfcc() -> MfccExtractor:
    """The default audio.mfcc extractor, built once per module."""
    ex = create_extractor("audio.mfcc")
    assert isinstance(ex, MfccExtractor)
    return ex
