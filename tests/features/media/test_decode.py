"""Decoding: every real clip, stream choice, clip windows, absences and per-clip failures."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from features.extractors.base import ClipFailure, FeatureResult, create_extractor
from features.media.audio import decode_audio
from features.media.probe import probe_media
from features.media.streams import clip_window, frame_sample_times
from features.media.video import decode_video, open_video
from store.errors import CorruptMediaError, UnsupportedMediaError
from tests.helpers.media import REAL_MEDIA, Video, write_media

NASA = "nasa_webb_narration.mp4"


def test_frame_sample_times_cover_the_clip() -> None:
    t = frame_sample_times(3.2, 2.0)
    assert t.shape == (7, 2)
    assert t[0, 0] == 0.0 and t[-1, 1] == pytest.approx(3.2)
    np.testing.assert_allclose(t[1:, 0], t[:-1, 1])
    assert frame_sample_times(0.0, 2.0).shape == (0, 2)
    assert clip_window(None, None, 10.0) == (0.0, 10.0)
    assert clip_window(2.0, 5.5, 10.0) == (2.0, 3.5)


@pytest.mark.parametrize("name", sorted(REAL_MEDIA))
def test_every_real_clip_decodes(clips_dir: Path, name: str) -> None:
    path = str(clips_dir / name)
    has_video, has_audio = REAL_MEDIA[name]
    info = probe_media(path)
    video = decode_video(path, info=info)
    if not has_video:
        assert video is None
    else:
        assert video is not None
        frames, times, meta = video
        assert frames.dtype == np.uint8 and frames.shape[1:] == (224, 224, 3)
        # one row per 1/fps of the probed duration, the last one clipped to the media end
        assert len(frames) == len(times) == math.ceil(info.duration * meta["fps"] - 1e-9)
        assert times[0, 0] == 0.0
        np.testing.assert_allclose(times[1:, 0], times[:-1, 1])
        assert times[-1, 1] == pytest.approx(info.duration)
        assert frames.std() > 1.0  # real pictures, not blank frames
        assert meta["size"] == [224, 224] and meta["fps"] == 2.0
        assert meta["video_decoder"] in {"decord", "decord+remux", "pyav"}
    audio = decode_audio(path, info=info)
    assert audio is not None and has_audio
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.sample_rate == 16000
    assert np.isfinite(audio.samples).all()
    assert audio.duration == pytest.approx(info.duration, abs=0.05)
    assert np.sqrt(np.mean(audio.samples**2)) > 1e-3  # speech, not silence
    assert audio.meta["source_sample_rate"] == info.best_audio().sample_rate


def test_multi_stream_mp4_uses_best_streams_and_records_them(clips_dir: Path) -> None:
    path = str(clips_dir / NASA)
    frames, times, meta = decode_video(path)
    assert meta["video_stream"] == 3 and meta["source_size"] == [480, 270]
    assert meta["n_video_streams"] == 2
    assert meta["video_decoder"] == "decord"  # decord's own pick is that stream: no remux needed
    audio = decode_audio(path)
    assert audio.meta["audio_stream"] == 4 and audio.meta["source_sample_rate"] == 16000
    assert audio.meta["n_audio_streams"] == 2


def test_non_default_stream_is_remuxed_for_decord_and_matches_pyav(clips_dir: Path) -> None:
    path = str(clips_dir / NASA)
    frames, times, meta = decode_video(path, stream=0)
    assert meta["video_stream"] == 0 and meta["source_size"] == [320, 180]
    assert meta["video_decoder"] == "decord+remux"
    frames_av, times_av, meta_av = decode_video(path, stream=0, decoder="pyav")
    assert meta_av["video_decoder"] == "pyav"
    np.testing.assert_allclose(times, times_av)
    # same pictures; only the two scalers' rounding differs
    assert np.abs(frames.astype(np.int16) - frames_av).mean() < 3.0
    best, _, _ = decode_video(path)
    assert np.abs(frames.astype(np.int16) - best[:26]).mean() > np.abs(frames.astype(np.int16) - frames_av).mean()
    low = decode_audio(path, stream=1)
    assert low.meta["audio_stream"] == 1 and low.meta["source_sample_rate"] == 8000


def test_unknown_stream_index_is_a_clear_error(clips_dir: Path) -> None:
    with pytest.raises(UnsupportedMediaError, match="video stream 7 does not exist"):
        open_video(str(clips_dir / NASA), stream=7)
    with pytest.raises(UnsupportedMediaError, match="audio stream 3 does not exist"):
        decode_audio(str(clips_dir / NASA), stream=3)


def test_clip_window_is_honoured(clips_dir: Path) -> None:
    path = str(clips_dir / NASA)
    full, full_t, _ = decode_video(path)
    part, part_t, meta = decode_video(path, start=4.0, end=7.0)
    assert meta["window"] == [4.0, 7.0]
    assert part_t.shape == (6, 2) and part_t[0, 0] == 0.0 and part_t[-1, 1] == pytest.approx(3.0)
    np.testing.assert_array_equal(part, full[8:14])  # rows at 4.0 ... 6.5 s of the media
    a_full = decode_audio(path).samples
    a_part = decode_audio(path, start=4.0, end=7.0).samples
    assert len(a_part) == 3 * 16000
    np.testing.assert_allclose(a_part, a_full[4 * 16000 : 7 * 16000], atol=1e-3)


def test_window_on_pyav_decoder_matches_decord_rows(clips_dir: Path) -> None:
    path = str(clips_dir / NASA)
    a, ta, _ = decode_video(path, start=2.0, end=5.0, decoder="pyav")
    b, tb, _ = decode_video(path, start=2.0, end=5.0)
    np.testing.assert_allclose(ta, tb)
    assert np.abs(a.astype(np.int16) - b).mean() < 3.0


def test_frames_come_in_bounded_chunks_at_4k(tmp_path: Path) -> None:
    src = write_media(tmp_path / "uhd.mp4", seconds=1.0, video=Video(size=(3840, 2160), fps=8), audio=())
    video = open_video(str(src), fps=8.0, chunk_size=3)
    sizes = [len(f) for f, _ in video.chunks()]
    assert sizes == [3, 3, 2]
    frames, _, meta = decode_video(str(src), fps=8.0, width=112, height=64)
    assert frames.shape == (8, 64, 112, 3) and meta["source_size"] == [3840, 2160]


def test_absent_modalities_are_none(synth_media) -> None:
    assert open_video(str(synth_media.audio_only)) is None
    assert decode_audio(str(synth_media.video_only)) is None
    frames, times, _ = decode_video(str(synth_media.video_only))
    assert frames.shape == (4, 224, 224, 3)


@pytest.mark.parametrize(
    "which, problem",
    [
        ("corrupt", "cannot be opened"),
        ("truncated", "cannot be opened"),  # moov atom at the end: cut off
        ("truncated_faststart", "truncated|cannot be decoded"),  # header intact, media data cut
        ("empty", "zero-byte"),
    ],
)
def test_bad_media_fails_only_its_clip(synth_media, make_clip, which: str, problem: str) -> None:
    bad_path = getattr(synth_media, which)
    good = make_clip(synth_media.av_mp4, "good")
    bad = make_clip(synth_media.av_mp4, f"bad-{which}")
    bad = type(bad)(bad.clip_id, str(bad_path), None, None, "", 3.0)
    for name in ("audio.mfcc", "vision.cnn"):
        ex = create_extractor(name, {"device": "cpu"} if name == "vision.cnn" else {})
        res = ex.extract([bad, good, bad])
        assert len(res) == 3
        for r in (res[0], res[2]):
            assert isinstance(r, ClipFailure), (name, r)
            assert r.stage == "decode" and r.error_type == "CorruptMediaError"
            assert r.clip_id == bad.clip_id and bad.clip_id in r.message
            assert not r.transient
            assert re.search(problem, r.message), r.message
        assert isinstance(res[1], FeatureResult) and res[1].absent is None and len(res[1].values) > 0


def test_corrupt_media_raises_typed_error(synth_media) -> None:
    with pytest.raises(CorruptMediaError, match="zero-byte"):
        decode_audio(str(synth_media.empty), clip_id="c1")
    with pytest.raises(CorruptMediaError, match="clip 'c2'"):
        open_video(str(synth_media.corrupt), clip_id="c2")
