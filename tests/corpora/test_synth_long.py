"""The long demo video: one decodable file of back-to-back planted segments, an .srt that lines up
with them, known labels of both signs, and the sample dataset's signal rules inside every segment."""

from __future__ import annotations

from pathlib import Path

import av
import decord
import numpy as np
import pytest
import srt

from corpora.synth import (
    AUDIO_SAMPLE_RATE,
    FRAME_SIZE,
    LongVideo,
    PlantedSegment,
    background_rgb,
    generate_long_video,
    pitch_hz,
    text_polarity,
)
from corpora.synth.long import _spread_targets, write_srt
from features.clips import Word
from features.media.probe import probe_media


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> LongVideo:
    return generate_long_video(tmp_path_factory.mktemp("long-short"), seed=7, n_segments=3)


def _cues(video: LongVideo) -> list[srt.Subtitle]:
    return list(srt.parse(video.srt.read_text(encoding="utf-8")))


def _decode_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as f:
        return np.concatenate([fr.to_ndarray()[0] for fr in f.decode(audio=0)])


def _f0(y: np.ndarray, words: tuple[Word, ...], rate: int) -> float:
    """Dominant pitch: peak (60-400 Hz) of the summed magnitude spectra of the spoken words."""
    nfft = 1 << 15
    spec = np.zeros(nfft // 2 + 1)
    for w in words:
        seg = y[int(w.start * rate) : int(w.end * rate)]
        if len(seg) > 256:
            spec += np.abs(np.fft.rfft(seg * np.hanning(len(seg)), nfft))
    freqs = np.fft.rfftfreq(nfft, 1.0 / rate)
    band = (freqs > 60) & (freqs < 400)
    return float(freqs[band][np.argmax(spec[band])])


# ---------------------------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------------------------


def test_default_video_lasts_a_minute_and_decodes_with_both_streams(tmp_path: Path) -> None:
    video = generate_long_video(tmp_path, seed=0)
    assert video.media == tmp_path.resolve() / "long.mp4" and video.srt == video.media.with_suffix(".srt")
    info = probe_media(video.media)
    assert info.duration >= 60.0 and video.duration >= 60.0
    assert info.duration == pytest.approx(video.duration, abs=0.07)
    assert len(video.segments) == 12
    labels = video.labels
    assert labels.min() < -2.0 and labels.max() > 2.0 and np.all(np.abs(labels) <= 3.0)  # spread, both signs
    assert len(_cues(video)) >= len(video.segments)


def test_streams_use_the_sample_clips_codecs_and_end_together(short: LongVideo) -> None:
    info = probe_media(short.media)
    (vs,), (aus,) = info.video, info.audio
    assert (vs.codec, vs.width, vs.height, vs.fps) == ("h264", *FRAME_SIZE, short.fps)
    assert (aus.codec, aus.sample_rate, aus.channels) == ("aac", AUDIO_SAMPLE_RATE, 1)
    assert vs.start == aus.start == 0.0
    assert vs.end is not None and aus.end is not None
    assert vs.end == pytest.approx(short.duration) and abs(aus.end - vs.end) < 1.0 / short.fps
    with av.open(str(short.media)) as f:
        assert f.streams.video[0].format.name == "yuv420p"
        assert sum(1 for _ in f.decode(video=0)) == round(short.duration * short.fps)


def test_segments_are_contiguous_and_cover_the_video(short: LongVideo) -> None:
    segs = short.segments
    assert segs[0].start == 0.0 and segs[-1].end == short.duration
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))  # same frame grid: exactly equal
    assert all(5.0 <= s.end - s.start <= 6.0 for s in segs)
    assert all(s.start <= w.start < w.end <= s.end for s in segs for w in s.words)
    mid = segs[1]
    assert short.segment_at((mid.start + mid.end) / 2) is mid and short.segment_at(short.duration) is None


# ---------------------------------------------------------------------------------------------
# subtitles
# ---------------------------------------------------------------------------------------------


def test_srt_cues_lie_inside_their_segments_and_carry_its_text(short: LongVideo) -> None:
    cues = _cues(short)
    assert [c.index for c in cues] == list(range(1, len(cues) + 1))
    by_segment: dict[int, list[srt.Subtitle]] = {}
    for cue in cues:
        start, end = cue.start.total_seconds(), cue.end.total_seconds()
        owner = [i for i, s in enumerate(short.segments) if s.start <= start < end <= s.end]
        assert len(owner) == 1, cue
        by_segment.setdefault(owner[0], []).append(cue)
        assert all(len(line) <= 42 for line in cue.content.splitlines()) and len(cue.content.splitlines()) <= 2
    assert sorted(by_segment) == list(range(len(short.segments)))  # every segment has a cue
    for i, seg in enumerate(short.segments):
        mine = by_segment[i]
        assert " ".join(" ".join(c.content.splitlines()) for c in mine) == seg.text
        # a cue spans its words (ms resolution): first word start to last word end
        assert mine[0].start.total_seconds() == pytest.approx(seg.words[0].start, abs=1e-3)
        assert mine[-1].end.total_seconds() == pytest.approx(seg.words[-1].end, abs=1e-3)


def test_a_sentence_too_long_for_two_lines_is_split_into_cues_at_word_boundaries(tmp_path: Path) -> None:
    text = "to be honest the soundtrack seemed disappointing and also the acting felt outstanding today"
    words = tuple(Word(w, 10.0 + 0.4 * i, 10.3 + 0.4 * i) for i, w in enumerate(text.split()))
    seg = PlantedSegment(9.5, 16.0, 0.0, text, 0.0, 0.0, 0.0, words)
    cues = list(srt.parse(write_srt(tmp_path / "x.srt", [seg]).read_text(encoding="utf-8")))
    assert len(cues) == 2
    assert " ".join(" ".join(c.content.splitlines()) for c in cues) == text
    counts = [len(c.content.split()) for c in cues]
    assert abs(counts[0] - counts[1]) <= 1  # balanced, no one-word tail cue
    assert cues[0].start.total_seconds() == 10.0 and cues[-1].end.total_seconds() == pytest.approx(words[-1].end)
    assert cues[0].end <= cues[1].start


# ---------------------------------------------------------------------------------------------
# labels and planted signals
# ---------------------------------------------------------------------------------------------


def test_labels_spread_over_both_signs_for_any_length_and_seed() -> None:
    for n in range(2, 25):
        for seed in range(10):
            targets = _spread_targets(n, np.random.default_rng(seed))
            assert targets.min() < 0 < targets.max() and np.all(np.abs(targets) <= 3.0)
            assert np.all(targets * 2 == np.round(targets * 2))  # on the components' 0.5 grid


def test_every_segment_follows_the_sample_datasets_signal_rules(short: LongVideo) -> None:
    y = _decode_audio(short.media)
    vr = decord.VideoReader(str(short.media))
    assert len({s.label > 0 for s in short.segments}) == 2  # both signs
    for seg in short.segments:
        assert text_polarity(seg.text) == pytest.approx(seg.t)
        assert abs(seg.label - np.clip(sum(seg.components), -3, 3)) < 0.25  # only the small label noise
        assert _f0(y, seg.words, AUDIO_SAMPLE_RATE) == pytest.approx(pitch_hz(seg.a), rel=0.06)
        spoken = np.zeros(len(y), bool)
        for w in seg.words:
            spoken[int(w.start * AUDIO_SAMPLE_RATE) : int(w.end * AUDIO_SAMPLE_RATE)] = True
        inside = slice(int(seg.start * AUDIO_SAMPLE_RATE), int(seg.end * AUDIO_SAMPLE_RATE))
        quiet = ~spoken[inside]
        assert np.sqrt(np.mean(y[inside][~quiet] ** 2)) > 10 * np.sqrt(np.mean(y[inside][quiet] ** 2))
        expected = background_rgb(seg.v)[0] - background_rgb(seg.v)[2]
        # the first and last frame of the segment: the background switches exactly at its boundaries
        for k in (round(seg.start * short.fps), round(seg.end * short.fps) - 1):
            frame = vr[k].asnumpy().astype(np.float64)
            assert np.median(frame[..., 0] - frame[..., 2]) == pytest.approx(expected, abs=12)


# ---------------------------------------------------------------------------------------------
# determinism and length control
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path: Path, short: LongVideo) -> None:
    again = generate_long_video(tmp_path / "again", seed=7, n_segments=3)
    other = generate_long_video(tmp_path / "other", seed=8, n_segments=3)
    assert again.media.read_bytes() == short.media.read_bytes()
    assert again.srt.read_bytes() == short.srt.read_bytes()
    assert again.segments == short.segments
    assert other.media.read_bytes() != short.media.read_bytes() and other.segments != short.segments


def test_minutes_sets_the_length_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    video = generate_long_video(tmp_path, seed=1, minutes=0.25, segment_seconds=4.0, fps=10, name="quarter")
    assert video.media.name == "quarter.mp4" and video.fps == 10
    assert 15.0 <= video.duration < 19.0 and [s.end - s.start for s in video.segments] == [4.0] * 4
    with pytest.raises(ValueError, match="not both"):
        generate_long_video(tmp_path, n_segments=3, minutes=1)
    with pytest.raises(ValueError):
        generate_long_video(tmp_path, n_segments=0)
    with pytest.raises(ValueError, match="segment_seconds"):
        generate_long_video(tmp_path, segment_seconds=(6.0, 5.0))
    with pytest.raises(ValueError, match="even"):
        generate_long_video(tmp_path, size=(161, 120))
