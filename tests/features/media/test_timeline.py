"""Media timing and stream facts on a crafted corpus (issue 12 §4).

Each crafted file (``tests.helpers.media.write_media``, written with PyAV) turns white and starts
a 1 kHz tone at a known second of the media timeline. The real extractor path must put that event at the same time
in the MFCC rows and in the frame rows of both video decoders, whatever the container does with
time: an MPEG-TS start offset, an mp4 edit list hiding an encoded lead-in, a late audio stream,
irregular frame times, a display rotation, a subtitle track that outlasts the picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import decord
import numpy as np
import pytest

from features.extractors.audio import MfccExtractor
from features.extractors.base import FeatureResult
from features.media.audio import decode_audio
from features.media.probe import probe_media
from features.media.video import decode_video
from tests.helpers.media import Audio, Video, clip_of, write_media

HOP = 0.01  # MFCC hop: 160 samples at 16 kHz
SOURCE_FPS = Video().fps  # the writer's frame rate (10): one frame period is 0.1 s
ROW_FPS = 20.0  # rows sampled twice per source frame
SIZE = (32, 24)
DECODERS = ("decord", "pyav")


@dataclass(frozen=True)
class Case:
    name: str  # file name; its suffix picks the container
    event: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)


TS_OFFSET = Case("ts_start_offset.ts", kwargs={"options": {"output_ts_offset": "1.46"}, "video": Video(bframes=2)})
EDIT_LIST = Case("edit_list_lead_in.mp4", kwargs={"lead_in": 0.5, "video": Video(bframes=2)})
LONG_SUBTITLE = Case("long_subtitle.mkv", kwargs={"subtitle_until": 9.0})
ROTATED = Case("rotated.mp4", kwargs={"video": Video(rotation=90), "corner": True})
VFR = Case("vfr.mp4", kwargs={"video": Video(frame_times=(0, 0.04, 0.3, 0.33, 0.7, 0.95, 1.0, 1.02, 1.5, 2.2, 2.9))})
AUDIO_LATE = Case("audio_late.mp4", event=2.0, kwargs={"audio": Audio(start=1.0)})
CASES = [TS_OFFSET, EDIT_LIST, LONG_SUBTITLE, ROTATED, VFR, AUDIO_LATE]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Case], Path]:
    """Writes each case once per module, on first use."""
    d = tmp_path_factory.mktemp("crafted")
    made: dict[str, Path] = {}

    def get(case: Case) -> Path:
        if case.name not in made:
            made[case.name] = write_media(d / case.name, event=case.event, **case.kwargs)
        return made[case.name]

    return get


def tone_onset(r: FeatureResult) -> float:
    """Where the tone starts in MFCC rows: the end of the first window that hears it (c0, the
    log energy, jumps from the silence floor). The onset lies in that window's last hop."""
    c0 = r.values[:, 0]
    loud = np.flatnonzero(c0 > (c0.min() + c0.max()) / 2)
    assert len(loud), "no tone found"
    return float(r.times[loud[0], 1])


def white_from(frames: np.ndarray, times: np.ndarray) -> float:
    """Start time of the first mostly-white row."""
    white = np.flatnonzero(frames.reshape(len(frames), -1).mean(axis=1) > 128)
    assert len(white), "no white frame found"
    return float(times[white[0], 0])


def video_rows(path: Path, decoder: str, **window: float) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    out = decode_video(str(path), fps=ROW_FPS, width=SIZE[0], height=SIZE[1], decoder=decoder, **window)
    assert out is not None
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_tone_and_white_frame_land_at_their_known_time(corpus, mfcc: MfccExtractor, case: Case) -> None:
    path = corpus(case)
    (r,) = mfcc.extract([clip_of(path)])
    assert isinstance(r, FeatureResult) and r.absent is None, r
    assert abs(tone_onset(r) - case.event) <= HOP + 1e-6
    rows = {dec: video_rows(path, dec) for dec in DECODERS}
    for dec, (frames, times, _) in rows.items():
        assert abs(white_from(frames, times) - case.event) < 1 / SOURCE_FPS, dec
        assert times[-1, 1] == pytest.approx(3.0, abs=1 / ROW_FPS)  # every row of the 3 s clip
    (fd, td, _), (fp, tp, _) = rows["decord"], rows["pyav"]
    np.testing.assert_array_equal(td, tp)  # one timeline for both decoders
    assert np.abs(fd.astype(np.int16) - fp).mean() < 3.0


def test_ts_start_offset_is_the_origin_and_decord_is_not_trusted_on_it(corpus) -> None:
    path = corpus(TS_OFFSET)
    with av.open(str(path)) as c:
        assert c.start_time / av.time_base == pytest.approx(1.46)  # the file's own clock
    info = probe_media(path)
    assert info.start_time == pytest.approx(1.46) and info.duration == pytest.approx(3.0, abs=0.02)
    assert info.video[0].start == pytest.approx(0.0)
    assert info.video[0].end is None  # MPEG-TS declares no stream ends: the duration is where packets end
    # decord 0.6 returns wrong frames on MPEG-TS with B-frames: such files decode with PyAV
    _, _, meta = video_rows(path, "decord")
    assert meta["video_decoder"] == "pyav" and "mpegts" in meta["decord_skipped"]


def test_clip_window_is_on_the_media_timeline(corpus, mfcc: MfccExtractor) -> None:
    """A manifest window [0.5, 2.0) of the TS file: the event at 1.0 is 0.5 s into the clip."""
    path = corpus(TS_OFFSET)
    (r,) = mfcc.extract([clip_of(path, start=0.5, end=2.0)])
    assert abs(tone_onset(r) - 0.5) <= HOP + 1e-6 and r.times[-1, 1] == pytest.approx(1.5, abs=HOP)
    for dec in DECODERS:
        frames, times, meta = video_rows(path, dec, start=0.5, end=2.0)
        assert white_from(frames, times) == pytest.approx(0.5) and meta["window"] == [0.5, 2.0]
        assert len(times) == 30


def test_edit_list_hides_the_encoded_lead_in(corpus) -> None:
    """The mp4 carries 0.5 s of white, loud lead-in before t=0 that only its edit list hides."""
    path = corpus(EDIT_LIST)
    audio = decode_audio(str(path))
    assert audio is not None and np.abs(audio.samples[: int(0.9 * 16000)]).max() < 0.01
    for dec in DECODERS:
        frames, times, _ = video_rows(path, dec)
        assert frames[times[:, 0] < 1.0].max() < 40, dec  # black until the event


def test_late_audio_is_silence_until_its_stream_starts(corpus) -> None:
    path = corpus(AUDIO_LATE)
    info = probe_media(path)
    assert info.audio[0].start == pytest.approx(1.0, abs=0.07) and info.duration == pytest.approx(3.0)
    audio = decode_audio(str(path))
    assert audio is not None and audio.duration == pytest.approx(3.0, abs=0.01)
    assert np.abs(audio.samples[: int(1.9 * 16000)]).max() < 0.01  # padded, not pulled forward


def test_subtitle_track_past_the_end_neither_sets_duration_nor_truncates(corpus, mfcc: MfccExtractor) -> None:
    path = corpus(LONG_SUBTITLE)
    with av.open(str(path)) as c:
        assert c.duration / av.time_base == pytest.approx(9.0)  # the container counts the subtitle
    info = probe_media(path)
    # Matroska's per-track DURATION tags: FFmpeg writes the AAC track's on its CodecDelay-shifted clock
    assert info.duration == pytest.approx(3.0, abs=0.07)
    (r,) = mfcc.extract([clip_of(path)])
    assert isinstance(r, FeatureResult) and r.times[-1, 1] == pytest.approx(3.0, abs=0.03)


def test_duration_without_headers_comes_from_audio_video_packets(tmp_path: Path, mfcc: MfccExtractor) -> None:
    """A live-written Matroska file declares no durations; its subtitle still must not count."""
    path = write_media(tmp_path / "live.mkv", subtitle_until=9.0, live=True)
    info = probe_media(path)
    assert info.video[0].end is None and info.audio[0].end is None
    assert info.duration == pytest.approx(3.0, abs=0.02)
    (r,) = mfcc.extract([clip_of(path)])
    assert isinstance(r, FeatureResult) and abs(tone_onset(r) - 1.0) <= HOP + 1e-6
    for dec in ("auto", "pyav"):  # decord refuses Matroska without a duration; auto falls back to PyAV
        frames, times, _ = video_rows(path, dec)
        assert white_from(frames, times) == pytest.approx(1.0) and times[-1, 1] == pytest.approx(3.0)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_video_is_upright_through_both_decoders(tmp_path: Path, rotation: int) -> None:
    """Both paths turn the picture as a player does: the same as decord's own mp4 rotation."""
    path = write_media(tmp_path / "rotated.mp4", video=Video(rotation=rotation), corner=True, seconds=1.0)
    w, h = SIZE
    reference = decord.VideoReader(str(path), width=w, height=h)[0].asnumpy()
    corner = {90: (slice(h // 2, None), slice(None, w // 2)),  # top-left turned counter-clockwise
              -90: (slice(None, h // 2), slice(w // 2, None)),
              180: (slice(h // 2, None), slice(w // 2, None))}[rotation]
    assert reference[corner].mean() > 200
    for dec in DECODERS:
        frames, _, meta = video_rows(path, dec)
        assert frames.shape[1:] == (h, w, 3) and meta["rotation"] == rotation % 360
        assert meta["video_decoder"] == "pyav"  # decord leaves Matroska and codec rotations alone
        assert dec == "pyav" or "rotated" in meta["decord_skipped"]
        assert frames[0][corner].mean() > 200 and frames[0].mean() < 100, dec
        assert np.abs(frames[0].astype(np.int16) - reference).mean() < 6.0


def test_real_mkv_with_a_longer_subtitle_track_extracts_cleanly(
    clips_dir: Path, tmp_path: Path, mfcc: MfccExtractor
) -> None:
    """nasa_webb_narration as h264 + aac + srt in Matroska: the subtitles run to 16.6 s, the
    picture and sound to 13.1 s (the ``.h264_aac_srt.mkv`` report)."""
    src = clips_dir / "nasa_webb_narration.mp4"
    path = tmp_path / "nasa_webb_narration.h264_aac_srt.mkv"
    with av.open(str(src)) as a, av.open(str(clips_dir / "nasa_webb_narration.en.srt")) as s, \
            av.open(str(path), "w") as out:
        copies = {a.streams[i]: out.add_stream_from_template(a.streams[i]) for i in (3, 4)}
        copies[s.streams[0]] = out.add_stream_from_template(s.streams[0])
        for pkt in [*a.demux(a.streams[3], a.streams[4]), *s.demux()]:
            if pkt.dts is not None:  # skip the demuxers' end-of-stream flush packets
                pkt.stream = copies[pkt.stream]
                out.mux(pkt)
    with av.open(str(path)) as c:
        assert c.duration / av.time_base > 16.5
    info = probe_media(path)
    assert info.duration == pytest.approx(probe_media(src).duration, abs=0.1)
    (r,) = mfcc.extract([clip_of(path)])
    assert isinstance(r, FeatureResult) and r.times[-1, 1] == pytest.approx(info.duration, abs=0.03)
    for dec in DECODERS:
        frames, times, _ = decode_video(str(path), decoder=dec)
        assert times[-1, 1] == pytest.approx(info.duration) and frames.std() > 1.0
