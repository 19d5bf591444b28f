"""audio.mfcc: shapes, exact frame spans, silence, deltas, windows, absences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from features.clips import ClipInput
from features.extractors.audio import MfccConfig, MfccExtractor, mfcc_frames
from features.extractors.base import FeatureResult, create_extractor
from store.errors import ConfigError
from tests.helpers.media import REAL_MEDIA


def _check_frames(r: FeatureResult, duration: float, dim: int = 40) -> None:
    assert r.absent is None
    assert r.values.dtype == np.float32 and r.values.shape[1] == dim
    assert np.isfinite(r.values).all()
    n = len(r.values)
    assert r.times.shape == (n, 2)
    np.testing.assert_allclose(r.times[:, 0], np.arange(n) * 0.01, atol=1e-9)
    assert (r.times[:, 1] <= duration + 1e-9).all()
    assert r.times[-1, 1] == pytest.approx(duration, abs=0.03)  # the frames reach the clip end


def test_registered_with_defaults(mfcc: MfccExtractor) -> None:
    assert mfcc.name == "audio.mfcc" and mfcc.modality == "audio" and mfcc.dim == 40
    cfg = mfcc.config
    assert (cfg.n_mfcc, cfg.n_fft, cfg.hop_length, cfg.sample_rate) == (40, 400, 160, 16000)


@pytest.mark.parametrize("name", sorted(REAL_MEDIA))
def test_real_audio(clips_dir: Path, make_clip, mfcc: MfccExtractor, name: str) -> None:
    clip = make_clip(clips_dir / name)
    (r,) = mfcc.extract([clip])
    _check_frames(r, clip.duration)
    assert len(r.values) == (r.meta["n_samples"] - 400) // 160 + 1
    assert r.meta["sample_rate"] == 16000


def test_multi_stream_mp4_uses_16k_stream(clips_dir: Path, make_clip, mfcc: MfccExtractor) -> None:
    (r,) = mfcc.extract([make_clip(clips_dir / "nasa_webb_narration.mp4")])
    assert r.meta["audio_stream"] == 4 and r.meta["source_sample_rate"] == 16000
    (low,) = create_extractor("audio.mfcc", {"audio_stream": 1}).extract(
        [make_clip(clips_dir / "nasa_webb_narration.mp4")]
    )
    assert low.meta["audio_stream"] == 1 and low.meta["source_sample_rate"] == 8000
    # 8 kHz audio has no energy above 4 kHz: the two streams give different features
    assert not np.allclose(low.values[:100], r.values[:100], atol=1.0)


def test_window_is_honoured(clips_dir: Path, make_clip, mfcc: MfccExtractor) -> None:
    path = clips_dir / "nasa_webb_narration.mp4"
    full, part = mfcc.extract([make_clip(path), make_clip(path, start=4.0, end=6.5)])
    _check_frames(part, 2.5)
    assert len(part.values) == (40000 - 400) // 160 + 1
    # the window's frame k is the full clip's frame 400 + k (4 s / 10 ms), up to the first frame's codec warm-up
    np.testing.assert_allclose(part.values[5:50], full.values[405:450], atol=0.05, rtol=1e-3)


def test_silence_gives_finite_values(synth_media, make_clip, mfcc: MfccExtractor) -> None:
    (r,) = mfcc.extract([make_clip(synth_media.silent)])
    _check_frames(r, 1.5)
    assert np.ptp(r.values, axis=0).max() < 1e-3  # constant over time


def test_deltas_and_short_clips() -> None:
    cfg = MfccConfig(deltas=2)
    y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    values, spans = mfcc_frames(y, cfg)
    assert values.shape == ((16000 - 400) // 160 + 1, 120) and np.isfinite(values).all()
    short, short_spans = mfcc_frames(y[:300], cfg)  # shorter than one window and the delta width
    assert short.shape == (1, 120) and np.isfinite(short).all()
    np.testing.assert_allclose(short_spans, [[0.0, 0.025]])


def test_absences(synth_media, make_clip, mfcc: MfccExtractor) -> None:
    no_audio, no_media = mfcc.extract(
        [make_clip(synth_media.video_only), ClipInput("text-only", None, None, None, "hi there", 2.0)]
    )
    assert no_audio.absent == "no audio stream" and no_audio.values.shape == (0, 40)
    assert no_media.absent == "no media file"


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="n_mfcc"):
        MfccConfig(n_mfcc=64, n_mels=40)
    with pytest.raises(ConfigError, match="hop"):  # unknown field, named in one line
        create_extractor("audio.mfcc", {"hop": 10})
    a = create_extractor("audio.mfcc", {"deltas": 1})
    assert a.dim == 80 and a.identity_hash() != create_extractor("audio.mfcc").identity_hash()
