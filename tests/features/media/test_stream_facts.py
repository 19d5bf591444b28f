"""Stream facts that decide whether a good file is used as it is: which stream ends are declared,
streams without a decoder, a mid-stream audio format change, and clip windows outside a stream's
data. Every file is written with PyAV (``tests.helpers.media``), as a muxer or a download makes it.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import av
import numpy as np
import pytest

from features.extractors.audio import MfccConfig, MfccExtractor, mfcc_frames
from features.extractors.base import ClipFailure, FeatureResult, create_extractor
from features.media.audio import decode_audio
from features.media.probe import probe_media
from features.media.video import decode_video
from store.errors import CorruptMediaError, UnsupportedMediaError
from tests.helpers.media import TONE_HZ, Audio, Video, clip_of, write_media

DECODERS = ("decord", "pyav")
SR = 16000


def mux(path: Path, *sources: tuple[Path, float]) -> Path:
    """Copy every packet of each ``(file, shift)`` into one file, its timestamps moved ``shift``
    seconds later (no re-encoding): streams of different lengths or starts in one container."""
    with ExitStack() as stack:
        out = stack.enter_context(av.open(str(path), "w"))
        copies = []
        for src_path, shift in sources:
            src = stack.enter_context(av.open(str(src_path)))
            for ist in src.streams:
                copies.append((src, ist, out.add_stream_from_template(ist), shift))
        for src, ist, ost, shift in copies:
            for pkt in src.demux(ist):
                if pkt.dts is None:  # the demuxer's end-of-stream flush packet
                    continue
                moved = round(shift / pkt.time_base)
                pkt.pts, pkt.dts = pkt.pts + moved, pkt.dts + moved
                pkt.stream = ost
                out.mux(pkt)
    return path


def dominant_hz(samples: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


# --------------------------------------------------------------------------------------- declared ends


def test_still_picture_with_longer_audio_in_matroska_is_used_as_in_mp4(tmp_path: Path) -> None:
    """One video frame and 5 s of sound (``ffmpeg -i cover.jpg -i song.mp3 out.mkv``): FFmpeg gives
    the Matroska video stream the segment's 5 s, which its 0.1 s of data must not be held to."""
    decoded = {}
    for suffix in (".mkv", ".mp4"):
        path = write_media(tmp_path / f"still{suffix}", seconds=5.0, video=Video(frame_times=(0.0,)))
        info = probe_media(path)
        assert info.video[0].end < 0.2 and info.duration == pytest.approx(5.0, abs=0.07)  # its own end, not 5 s
        audio = decode_audio(str(path))
        assert audio is not None and audio.duration == pytest.approx(info.duration, abs=0.07)
        decoded[suffix] = {dec: decode_video(str(path), decoder=dec) for dec in DECODERS}
    for dec in DECODERS:
        (mkv, mkv_times, _), (mp4, mp4_times, _) = decoded[".mkv"][dec], decoded[".mp4"][dec]
        assert len(mkv) == len(mp4) == 1 and mkv_times[0, 0] == mp4_times[0, 0] == 0.0, dec  # the one picture
        assert np.abs(mkv.astype(np.int16) - mp4).mean() < 3.0


def test_bit_rate_estimate_of_raw_aac_is_not_a_declared_end(tmp_path: Path) -> None:
    """Raw ADTS AAC declares no duration; FFmpeg guesses one from the first frames' bit rate (here
    quiet, so too long), and a good file must not be held to that guess."""
    path = tmp_path / "speech.aac"
    noise = np.random.default_rng(0).standard_normal(4 * SR).astype(np.float32) * 0.5
    y = np.concatenate([np.zeros(SR, np.float32), noise])
    with av.open(str(path), "w", format="adts") as c:
        st = c.add_stream("aac", rate=SR)
        st.layout = "mono"
        for lo in range(0, len(y), 1024):
            frame = av.AudioFrame.from_ndarray(y[None, lo : lo + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = SR, lo
            c.mux(st.encode(frame))
        c.mux(st.encode(None))
    with av.open(str(path)) as c:
        assert c.duration / av.time_base > 5.5  # FFmpeg's guess: longer than the 5 s of data
    info = probe_media(path)
    assert info.audio[0].end is None and info.duration == pytest.approx(5.0, abs=0.15)
    audio = decode_audio(str(path))
    assert audio is not None and audio.duration == pytest.approx(info.duration, abs=0.01)


# --------------------------------------------------------------------------------------- no decoder


def undecodable(tmp_path: Path, codec_ids: tuple[bytes, ...]) -> Path:
    """An h264 + AAC Matroska file whose tracks ``codec_ids`` name a codec no FFmpeg knows (same
    length, so the file stays well formed): as a file with a codec this build has no decoder for."""
    path = write_media(tmp_path / "src.mkv")
    data = path.read_bytes()
    for cid in codec_ids:
        assert data.count(cid) == 1
        data = data.replace(cid, cid[:-1] + b"X")
    out = tmp_path / "undecodable.mkv"
    out.write_bytes(data)
    return out


@pytest.mark.parametrize("kind, codec_id", [("video", b"V_MPEG4/ISO/AVC"), ("audio", b"A_AAC")])
def test_stream_without_a_decoder_fails_its_modality_instead_of_being_absent(
    tmp_path: Path, mfcc: MfccExtractor, kind: str, codec_id: bytes
) -> None:
    path = undecodable(tmp_path, (codec_id,))
    info = probe_media(path)
    assert info.video and info.audio  # ingest's has_video/has_audio: the clip has both modalities
    (bad,) = [s for s in (*info.video, *info.audio) if s.kind == kind]
    assert bad.codec is None
    clip = clip_of(path)
    vision = create_extractor("vision.cnn", {"device": "cpu"})
    results = {"audio": mfcc.extract([clip])[0], "video": vision.extract([clip])[0]}
    failed = results.pop(kind)
    assert isinstance(failed, ClipFailure) and failed.error_type == "UnsupportedMediaError", failed
    assert f"{kind} stream {bad.index}: its codec has no decoder in this FFmpeg build" in failed.message
    assert clip.clip_id in failed.message
    (other,) = results.values()
    assert isinstance(other, FeatureResult) and other.absent is None and len(other.values) > 0
    with pytest.raises(UnsupportedMediaError, match="has no decoder"):  # a configured stream index too
        (decode_audio if kind == "audio" else decode_video)(str(path), stream=bad.index)


def test_file_with_no_decodable_stream_is_corrupt_and_says_why(tmp_path: Path) -> None:
    path = undecodable(tmp_path, (b"V_MPEG4/ISO/AVC", b"A_AAC"))
    with pytest.raises(CorruptMediaError, match="no audio or video stream this FFmpeg build can decode: "
                       "video stream 0: .* no decoder .*; audio stream 1"):
        probe_media(path)


# --------------------------------------------------------------------------------------- format change


def ts_segment(path: Path, rate: int, layout: str, at: float, seconds: float = 2.0) -> bytes:
    """An MPEG-TS segment of h264 and a 1 kHz AAC tone, its clock starting at ``at`` seconds (as the
    next segment of a stream is)."""
    with av.open(str(path), "w", format="mpegts", options={"output_ts_offset": str(at)}) as c:
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("aac", rate=rate)
        a.layout = layout
        for i in range(int(seconds * 10)):
            picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, np.uint8), format="rgb24")
            picture.pts = i
            c.mux(v.encode(picture))
        c.mux(v.encode(None))
        n = int(seconds * rate)
        tone = (0.3 * np.sin(2 * np.pi * TONE_HZ * np.arange(n) / rate)).astype(np.float32)
        channels = av.AudioLayout(layout).nb_channels
        for lo in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(np.tile(tone[lo : lo + 1024], (channels, 1)), format="fltp",
                                               layout=layout)
            frame.sample_rate, frame.pts = rate, lo
            c.mux(a.encode(frame))
        c.mux(a.encode(None))
    return path.read_bytes()


@pytest.mark.parametrize("rate, layout", [(48000, "stereo"), (16000, "stereo"), (48000, "mono")])
def test_audio_format_change_mid_stream_is_resampled_continuously(
    tmp_path: Path, mfcc: MfccExtractor, rate: int, layout: str
) -> None:
    """Two MPEG-TS segments joined byte-wise (an HLS download): the sound switches from 16 kHz mono
    to another rate and/or layout at 2 s. Both halves come out as the same 1 kHz tone at 16 kHz."""
    path, second = tmp_path / "joined.ts", tmp_path / "b.ts"
    path.write_bytes(ts_segment(tmp_path / "a.ts", SR, "mono", 0.0) + ts_segment(second, rate, layout, 2.0))
    with av.open(str(second)) as c:
        change = float(c.streams.audio[0].start_time * c.streams.audio[0].time_base)  # on the file's clock
    info = probe_media(path)
    audio = decode_audio(str(path), info=info)
    assert audio is not None and audio.sample_rate == SR
    assert audio.duration == pytest.approx(info.duration, abs=0.01) and info.duration == pytest.approx(4.0, abs=0.1)
    ((at, new_rate, new_channels),) = audio.meta["source_changes"]  # where and to what it changed
    assert at == pytest.approx(change - info.start_time, abs=1e-3)
    assert (new_rate, new_channels) == (rate, av.AudioLayout(layout).nb_channels)
    for lo, hi in ((0.2, 1.8), (2.3, 3.8)):  # the same tone on both sides: nothing mistaken for 16 kHz mono
        part = audio.samples[int(lo * SR) : int(hi * SR)]
        assert dominant_hz(part) == pytest.approx(TONE_HZ, abs=5) and np.sqrt(np.mean(part**2)) > 0.1
    (r,) = mfcc.extract([clip_of(path)])
    assert isinstance(r, FeatureResult) and r.absent is None and r.times[-1, 1] == pytest.approx(4.0, abs=0.1)


# --------------------------------------------------------------------------------------- windows


@pytest.fixture(params=[".mp4", ".ts"])
def short_audio(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """4 s of video with 1 s of sound that then stops (its track ends), in mp4 and MPEG-TS."""
    suffix = request.param
    video = write_media(tmp_path / f"v{suffix}", seconds=4.0, audio=())
    audio = write_media(tmp_path / f"a{suffix}", seconds=1.0, video=(), event=0.0)
    return mux(tmp_path / f"short_audio{suffix}", (video, 0.0), (audio, 0.0))


def test_window_after_the_audio_ends_is_absent_not_a_made_up_row(short_audio: Path, mfcc: MfccExtractor) -> None:
    after, partial = mfcc.extract([clip_of(short_audio, start=2.0, end=4.0), clip_of(short_audio, start=0.5, end=2.0)])
    assert after.absent == "no audio in this window" and after.values.shape == (0, mfcc.dim)
    audio = decode_audio(str(short_audio), start=2.0, end=4.0)
    assert audio is not None and len(audio.samples) == 0
    # partly inside: the rows of the half second of sound, none made up past its end
    assert partial.absent is None and partial.meta["n_samples"] == pytest.approx(0.5 * SR, abs=0.07 * SR)
    for dec in DECODERS:  # the picture goes on: its rows are unaffected
        _, times, _ = decode_video(str(short_audio), start=2.0, end=4.0, decoder=dec)
        assert len(times) == 4, dec


def test_window_before_late_audio_is_absent_and_a_partial_one_is_padded(tmp_path: Path, mfcc: MfccExtractor) -> None:
    path = write_media(tmp_path / "late_audio.mp4", seconds=4.0, audio=Audio(start=2.0), event=0.0)
    before, partial = mfcc.extract([clip_of(path, start=0.0, end=1.5), clip_of(path, start=1.0, end=4.0)])
    assert before.absent == "no audio in this window" and len(before.values) == 0
    assert partial.absent is None and partial.times[-1, 1] == pytest.approx(3.0, abs=0.03)
    audio = decode_audio(str(path), start=1.0, end=4.0)
    assert audio is not None and len(audio.samples) == 3 * SR
    assert np.abs(audio.samples[: int(0.9 * SR)]).max() < 0.01 < np.abs(audio.samples[int(1.1 * SR) :]).max()


@pytest.mark.parametrize("suffix", [".mp4", ".ts"])
def test_window_outside_the_video_stream_gets_no_frames(tmp_path: Path, suffix: str) -> None:
    """Video from 2 s to 3 s of 4 s of sound: a window before it or after it has no picture rows
    (not its first or last frame made up); a window overlapping it repeats the first frame before it."""
    video = write_media(tmp_path / f"v{suffix}", seconds=1.0, audio=(), event=0.0)
    audio = write_media(tmp_path / f"a{suffix}", seconds=4.0, video=())
    path = mux(tmp_path / f"late_video{suffix}", (video, 2.0), (audio, 0.0))
    info = probe_media(path)
    assert info.video[0].start == pytest.approx(2.0, abs=0.05) and info.duration == pytest.approx(4.0, abs=0.1)
    for dec in DECODERS:
        for window in ((0.0, 1.5), (3.2, 4.0)):
            _, times, _ = decode_video(str(path), fps=4.0, decoder=dec, start=window[0], end=window[1])
            assert len(times) == 0, (dec, window)
        frames, times, _ = decode_video(str(path), fps=4.0, decoder=dec, start=1.5, end=2.5)
        assert len(times) == 4 and frames.min() > 200, dec  # white from the first frame on


def test_mfcc_of_no_samples_has_no_rows() -> None:
    values, spans = mfcc_frames(np.zeros(0, np.float32), MfccConfig(deltas=1))
    assert values.shape == (0, 80) and spans.shape == (0, 2)
