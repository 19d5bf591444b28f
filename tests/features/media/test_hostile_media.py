"""Hostile but plausible media, each class found by the hostile-media probe (docs/reliability.md,
"Hostile media"): every clip ends as finite rows inside the clip, a recorded absence, or a failure
that names the clip and the problem. Files are written with PyAV into ``tmp_path``, as an encoder
or a broken exporter writes them (no ffmpeg binary, no shared data).
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.extractors.audio import MfccExtractor
from features.extractors.base import ClipFailure, FeatureResult, create_extractor
from features.extractors.vision import frame_events
from features.media.audio import decode_audio
from features.media.video import decode_video
from tests.helpers.media import clip_of

TB = Fraction(1, 1000)


def float_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """An IEEE-float WAV of exactly these samples ([frames, channels]): the one common format that
    stores NaN, infinities and values far past full scale, as a DSP tool's export can."""
    data = np.ascontiguousarray(samples, "<f4").tobytes()
    channels = samples.shape[1]
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * 4 * channels, 4 * channels, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.repeat((0.5 * np.sin(2 * np.pi * 440 * t))[:, None], channels, axis=1).astype(np.float32)


def h264_aac(path: Path, frame_times: list[float], *, size: tuple[int, int] = (32, 32), fps: int = 10,
             audio_rate: int | None = 16000, audio_seconds: float = 0.0) -> Path:
    """h264 (yuv444p: any frame size) whose frame k is grey level 40 * k % 256 at ``frame_times``,
    plus AAC fed from timestamp 0 as an encoder does, so its priming packet sits before 0 (in
    Matroska: a CodecDelay and a first packet at -64 ms)."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv444p"
        vs.time_base = vs.codec_context.time_base = TB
        vs.options = {"preset": "ultrafast", "bf": "0"}
        a = None
        if audio_rate:
            a = c.add_stream("aac", rate=audio_rate)
            a.layout = "mono"
        for k, t in enumerate(frame_times):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 40 * k % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(t / TB), TB
            c.mux(vs.encode(frame))
        c.mux(vs.encode(None))
        if a is not None and audio_rate:
            y = tone(audio_seconds, audio_rate)[:, 0]
            for lo in range(0, len(y), 1024):
                af = av.AudioFrame.from_ndarray(y[None, lo : lo + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = audio_rate, lo, Fraction(1, audio_rate)
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return path


def grey(frames: np.ndarray) -> list[int]:
    return [int(round(float(f.mean()))) for f in frames]


# ------------------------------------------------------------------------------------- audio values


def test_nan_and_infinite_float_pcm_samples_are_silence_counted_in_meta(tmp_path: Path, mfcc: MfccExtractor) -> None:
    """A float WAV with 100 NaN samples and a few infinite ones: librosa refuses the buffer (the clip
    failed with "ParameterError: Audio buffer is not finite everywhere"); they are silence now, counted."""
    y = tone(2.0, 16000)
    y[8000:8100] = np.nan
    y[1000:1010], y[20000] = np.inf, -np.inf
    path = float_wav(tmp_path / "nan.wav", y, 16000)
    audio = decode_audio(str(path))
    assert audio is not None and np.isfinite(audio.samples).all() and audio.meta["nonfinite_samples"] >= 111
    assert len(audio.samples) == 32000 and np.abs(audio.samples[8000:8100]).max() == 0.0
    (r,) = mfcc.extract([clip_of(path)])
    assert isinstance(r, FeatureResult) and np.isfinite(r.values).all() and len(r.values) == 198
    assert r.meta["nonfinite_samples"] == audio.meta["nonfinite_samples"]


def test_float_pcm_of_nan_only_fails_naming_the_clip_instead_of_features_of_made_up_silence(
    tmp_path: Path, mfcc: MfccExtractor
) -> None:
    path = float_wav(tmp_path / "all_nan.wav", np.full((16000, 1), np.nan, np.float32), 16000)
    (r,) = mfcc.extract([clip_of(path, "c1")])
    assert isinstance(r, ClipFailure) and r.error_type == "CorruptMediaError" and not r.transient
    assert "clip 'c1'" in r.message and "all 16000 samples of the clip window are NaN or infinite" in r.message


@pytest.mark.parametrize("peak", [1e30, float(np.finfo(np.float32).max)])
def test_float_pcm_so_loud_the_mfcc_overflows_fails_naming_its_peak_instead_of_infinite_rows(
    tmp_path: Path, mfcc: MfccExtractor, peak: float
) -> None:
    """Finite samples past ~1e17 overflow the float32 power spectrum: the rows were committed as inf."""
    path = float_wav(tmp_path / "loud.wav", np.sign(tone(1.0, 16000)) * np.float32(peak), 16000)
    (r,) = mfcc.extract([clip_of(path, "c1")])
    assert isinstance(r, ClipFailure) and r.error_type == "CorruptMediaError", r
    assert "clip 'c1'" in r.message and f"samples up to {peak:.3g}" in r.message and "overflow the MFCC" in r.message


@settings(max_examples=15, deadline=None)
@given(
    rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]),
    channels=st.integers(1, 8),
    bad=st.sampled_from([np.nan, np.inf, -np.inf, 1e30, None]),
    n_bad=st.integers(1, 500),
    at=st.floats(0.0, 0.9),
)
def test_float_pcm_at_any_rate_and_channel_count_gives_finite_rows_or_a_named_media_failure(
    tmp_path_factory: pytest.TempPathFactory, rate: int, channels: int, bad: float | None, n_bad: int, at: float
) -> None:
    y = tone(1.0, rate, channels)
    if bad is not None:
        lo = int(at * len(y))
        y[lo : lo + n_bad, np.arange(channels) % 2 == 0] = bad
    path = float_wav(tmp_path_factory.mktemp("pcm") / "x.wav", y, rate)
    (r,) = create_extractor("audio.mfcc").extract([clip_of(path, "c1")])
    if isinstance(r, ClipFailure):
        assert bad == 1e30 and r.error_type == "CorruptMediaError" and "clip 'c1'" in r.message, r
        return
    assert r.absent is None and len(r.values) == 98 and np.isfinite(r.values).all()
    assert r.times.min() >= 0 and r.times.max() <= 1.0 + 1e-9
    assert (r.meta.get("nonfinite_samples", 0) > 0) == (bad is not None and not np.isfinite(bad))


# ------------------------------------------------------------------------------------- video timing


def test_matroska_h264_with_aac_priming_is_not_decoded_64_ms_late_by_decord(tmp_path: Path) -> None:
    """h264 whose frames come slower than its declared 10 fps + AAC in Matroska (the AAC track's
    first packet at -64 ms): decord (its FFmpeg 4.1) counted the video from there, so every frame
    came 64 ms late and a row at a frame's time showed the frame before it."""
    stamps = [0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8]
    path = h264_aac(tmp_path / "vfr.mkv", stamps, audio_seconds=2.0)
    rows = {dec: decode_video(str(path), fps=10.0, width=32, height=32, decoder=dec) for dec in ("decord", "pyav")}
    (fd, td, meta), (fp, tp, _) = rows["decord"], rows["pyav"]
    assert meta["video_decoder"] == "pyav" and "0.064 s" in meta["decord_skipped"]
    shown = [max(k for k, t in enumerate(stamps) if t <= row + 1e-6) for row in tp[:, 0]]  # the frame on screen
    assert grey(fp) == [40 * k % 256 for k in shown]
    np.testing.assert_array_equal(td, tp)
    np.testing.assert_array_equal(fd, fp)


def test_decord_failing_on_a_good_file_hands_the_rows_to_pyav_instead_of_failing_the_clip(tmp_path: Path) -> None:
    """decord cannot resize to under 32 pixels wide ("Check failed: from_size == to_size (2304 vs.
    1728)"): a ``vision.cnn`` with ``width: 24``, or ``vision.face`` on a video under 32 pixels wide
    (never upscaled), failed every clip with that message."""
    path = h264_aac(tmp_path / "av.mp4", [k / 10 for k in range(20)], size=(64, 48), audio_seconds=2.0)
    frames, times, meta = decode_video(str(path), fps=10.0, width=24, height=24)
    reference, ref_times, _ = decode_video(str(path), fps=10.0, width=24, height=24, decoder="pyav")
    assert meta["video_decoder"] == "pyav" and "from_size == to_size" in meta["decord_error"]
    assert grey(frames) == [40 * k % 256 for k in range(20)]
    np.testing.assert_array_equal(frames, reference)
    np.testing.assert_array_equal(times, ref_times)


def test_matroska_video_decord_finds_no_start_for_is_decoded_not_zero_rows(tmp_path: Path) -> None:
    """One h264 frame (or frames minutes apart) in Matroska, no audio: decord's frame times are
    ~9.2e15 s (no stream start), so every row was dropped as past the end: zero rows, no absence."""
    for name, times, rows in (("one.mkv", [0.0], 1), ("sparse.mkv", [0.0, 1.0, 60.0], 121)):
        path = h264_aac(tmp_path / name, times, audio_rate=None)
        frames, spans, meta = decode_video(str(path))
        assert len(frames) == rows and meta["video_decoder"] == "pyav" and "decord_skipped" in meta, name
        assert spans[0, 0] == 0.0 and frames.std(axis=(1, 2, 3)).max() < 1.0


def test_frames_stamped_back_in_time_are_dropped_not_reported_as_truncation(tmp_path: Path) -> None:
    """MJPEG (no reordering) whose timestamps jump back: 0, 500, 100, 400, 200, 300, 1900, 50 ms.
    PyAV showed the last frame decoded before a row (stamped 300 ms) at rows 0.5-1.5 s, and took
    the last one (50 ms) for the stream's end: at 10 fps the clip failed as "truncated: video
    stream 0 has data up to 0.15 s". A player drops frames stamped before the one it shows; so do we."""
    pts = [0, 500, 100, 400, 200, 300, 1900, 50]
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height, enc.pix_fmt, enc.time_base = 32, 32, "yuvj420p", TB
    packets = []
    for k in range(len(pts)):
        img = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 30 * k, np.uint8), format="rgb24")
        frame = img.reformat(format="yuvj420p")
        frame.pts, frame.time_base = k, TB
        packets += enc.encode(frame)
    packets += enc.encode(None)
    path = tmp_path / "back_in_time.mkv"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mjpeg", rate=10)
        vs.width, vs.height, vs.pix_fmt, vs.time_base = 32, 32, "yuvj420p", TB
        for k, (pkt, t) in enumerate(zip(packets, pts)):
            pkt.stream, pkt.time_base, pkt.pts, pkt.dts = vs, TB, t, k
            c.mux(pkt)
    frames, times, _ = decode_video(str(path), fps=2.0, decoder="pyav")
    np.testing.assert_allclose(times[:, 0], [0.0, 0.5, 1.0, 1.5])
    assert [abs(g - want) <= 3 for g, want in zip(grey(frames), [0, 30, 30, 30])] == [True] * 4, grey(frames)


def test_window_after_the_only_video_frame_is_an_absence_not_zero_rows(tmp_path: Path) -> None:
    """One picture and 2 s of sound (a cover with a song): the window 1-2 s has no frame. The
    vision extractors committed zero rows with no absence; now "no video in this window", as audio."""
    path = h264_aac(tmp_path / "cover.mp4", [0.0], audio_seconds=2.0)
    clip = clip_of(path, "tail", start=1.0, end=2.0)
    events = list(frame_events([clip], 1280, fps=2.0, frame_size=(32, 32), video_stream=None,
                               decoder="auto", chunk_size=32))
    assert [e[0] for e in events] == ["result"]
    result = events[0][2]
    assert isinstance(result, FeatureResult) and result.absent == "no video in this window"
    assert result.values.shape == (0, 1280) and result.meta["window"] == [1.0, 2.0]


@settings(max_examples=12, deadline=None)
@given(
    suffix=st.sampled_from([".mkv", ".mp4"]),
    size=st.tuples(st.integers(1, 48), st.integers(1, 48)) | st.sampled_from([(1, 1), (2000, 8), (8, 2000)]),
    fps=st.sampled_from([1, 5, 10, 25, 60]),
    audio_rate=st.sampled_from([None, 8000, 16000, 44100, 48000]),
)
def test_decord_and_pyav_give_the_same_rows_for_any_frame_size_rate_and_container(
    tmp_path_factory: pytest.TempPathFactory, suffix: str, size: tuple[int, int], fps: int, audio_rate: int | None
) -> None:
    """Odd, tiny and extreme frame sizes, frame rates and audio tracks: both decoders put the same
    frame at every row (decord gave some Matroska files no rows, or rows 64 ms late, before the fix)."""
    n = max(2 * fps, 2)
    path = h264_aac(tmp_path_factory.mktemp("v") / f"x{suffix}", [k / fps for k in range(n)], size=size, fps=fps,
                    audio_rate=audio_rate, audio_seconds=n / fps)
    rows = {dec: decode_video(str(path), fps=4.0, width=40, height=24, decoder=dec) for dec in ("auto", "pyav")}
    (fa, ta, _), (fp, tp, _) = rows["auto"], rows["pyav"]
    assert len(tp) >= 1 and ta.shape == tp.shape and fa.shape == fp.shape == (len(tp), 24, 40, 3)
    np.testing.assert_allclose(ta, tp)
    assert np.abs(fa.astype(np.int16) - fp).mean(axis=(1, 2, 3)).max() < 3.0
