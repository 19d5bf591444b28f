"""Segmentation of media time into scored clips: cue segments within bounds that keep every cue's
text once, fixed windows that tile the media; checked on examples and as properties (hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from corpora.segments import Segment, SegmentConfig, segment_media, window_spans
from corpora.sidecars.cues import Cue, Transcript, words_to_cues
from corpora.sidecars.reading import read_transcript
from features.clips import Word
from tests.helpers.paths import SHARED_DATA

CLIPS = SHARED_DATA / "clips"
EPS = 1e-6
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _srt(cues: list[Cue]) -> Transcript:
    return Transcript(Path("t.srt"), "srt", cues, " ".join(c.text for c in cues))


def _cue(start: float, end: float, text: str) -> Cue:
    return Cue(start, end, text)


# -- examples ---------------------------------------------------------------------------------
def test_default_config_is_3_to_12_second_cue_segments_and_5_second_windows_every_2_5() -> None:
    c = SegmentConfig()
    assert (c.mode, c.min_seconds, c.max_seconds, c.max_gap, c.window, c.hop) == ("auto", 3.0, 12.0, 2.0, 5.0, 2.5)
    assert all(f.description for f in SegmentConfig.model_fields.values())


@pytest.mark.parametrize("bad", [{"min_seconds": 13, "max_seconds": 12}, {"hop": 6, "window": 5},
                                 {"window": 0}, {"max_gap": -1}, {"unknown": 1}, {"mode": "sentences"}])
def test_inconsistent_or_unknown_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SegmentConfig.model_validate(bad)


def test_short_cues_merge_until_min_seconds_but_never_across_a_long_silence() -> None:
    cues = [_cue(0, 1, "a"), _cue(1.2, 2, "b"), _cue(2.5, 4, "c"),  # 4 s together: a segment
            _cue(4.5, 5.5, "d"),  # too short alone: joins the segment before it
            _cue(8.0, 9.0, "e")]  # 2.5 s of silence before it (max_gap 2): stays short, alone
    segs = segment_media(_srt(cues), 10.0, SegmentConfig())
    assert [(s.start, s.end, s.text) for s in segs] == [(0, 5.5, "a b c d"), (8.0, 9.0, "e")]


def test_a_short_leftover_joins_its_previous_neighbour_when_that_stays_within_max() -> None:
    cues = [_cue(0, 4, "a"), _cue(4.5, 5.5, "b"), _cue(9, 13, "c")]
    segs = segment_media(_srt(cues), 20.0, SegmentConfig())
    assert [s.text for s in segs] == ["a b", "c"] and segs[0].end == 5.5


def test_merging_stops_before_max_seconds() -> None:
    cues = [_cue(0, 2, "a"), _cue(2, 12.5, "b")]  # together 12.5 s > 12
    segs = segment_media(_srt(cues), 13.0, SegmentConfig())
    assert [s.text for s in segs] == ["a", "b"]


def test_a_long_cue_is_split_evenly_between_its_words() -> None:
    words = " ".join(f"w{i}" for i in range(30))
    segs = segment_media(_srt([_cue(0, 30, words)]), 30.0, SegmentConfig())  # 30 s, max 12 -> 3 pieces of 10 s
    assert [(s.start, s.end) for s in segs] == [(0, 10), (10, 20), (20, 30)]
    assert " ".join(s.text for s in segs) == words and all(s.words is None for s in segs)


def test_a_single_word_longer_than_max_cannot_be_split_and_stays_one_segment() -> None:
    segs = segment_media(_srt([_cue(0, 20, "Aaaaaah")]), 25.0, SegmentConfig())
    assert [(s.start, s.end, s.text) for s in segs] == [(0, 20, "Aaaaaah")]


def test_word_timed_segments_split_in_pauses_and_carry_words_from_their_own_start() -> None:
    words = [Word(f"w{i}", i * 1.0, i * 1.0 + 0.8) for i in range(20)]  # 20 s without a pause > 0.5 s
    t = Transcript(Path("t.words.json"), "words", words_to_cues(words), "", words=words)
    segs = segment_media(t, 20.0, SegmentConfig())
    assert len(segs) == 2 and segs[0].end == segs[1].start == pytest.approx(9.9)  # middle of the 0.2 s pause
    assert [w.word for s in segs for w in s.words or ()] == [w.word for w in words]
    second = segs[1].words or ()
    assert second[0] == Word("w10", pytest.approx(0.1), pytest.approx(0.9))


def test_overlapping_cues_stay_in_one_segment() -> None:
    cues = [_cue(0, 3, "a"), _cue(2, 4, "b"), _cue(3.5, 6, "c"), _cue(7, 10, "d")]
    segs = segment_media(_srt(cues), 10.0, SegmentConfig(min_seconds=1))
    assert [(s.start, s.end, s.text) for s in segs] == [(0, 6, "a b c"), (7, 10, "d")]


def test_cue_segments_are_clamped_to_the_media_and_cues_past_its_end_stay_past_it() -> None:
    segs = segment_media(_srt([_cue(0, 4, "a"), _cue(9.9, 10.4, "b"), _cue(11, 14, "c")]), 10.0,
                         SegmentConfig(max_gap=0.5))
    assert [(s.start, s.end) for s in segs] == [(0, 4), (9.9, 10.0), (11, 14)]  # ingest rejects the last


def test_an_instantaneous_cue_alone_gets_a_short_span_up_to_the_next_segment() -> None:
    segs = segment_media(_srt([_cue(1, 1, "tick"), _cue(1.5, 5, "later")]), 10.0, SegmentConfig(max_gap=0.1))
    assert [(s.start, s.end) for s in segs] == [(1, 1.5), (1.5, 5)]


def test_no_transcript_gives_fixed_windows_without_text() -> None:
    segs = segment_media(None, 11.0, SegmentConfig())
    assert [(s.start, s.end) for s in segs] == [(0, 5), (2.5, 7.5), (5, 10), (7.5, 11)]
    assert all(s.text == "" and s.words is None for s in segs)


def test_windows_mode_gives_each_window_the_text_of_overlapping_cues() -> None:
    cues = [_cue(0, 3, "first"), _cue(4, 6, "second")]
    segs = segment_media(_srt(cues), 7.0, SegmentConfig(mode="windows", window=4, hop=2))
    assert [(s.start, s.end, s.text) for s in segs] == [(0, 4, "first"), (2, 6, "first second"), (4, 7, "second")]


def test_windows_mode_with_word_timings_gives_words_relative_to_the_window() -> None:
    words = [Word("a", 0.5, 1.0), Word("b", 3.0, 3.5), Word("c", 4.8, 5.6)]
    t = Transcript(Path("t.words.json"), "words", words_to_cues(words), "a b c", words=words)
    segs = segment_media(t, 6.0, SegmentConfig(mode="windows", window=5, hop=5))
    assert [s.text for s in segs] == ["a b c", "c"]
    assert segs[1].words == (Word("c", 0.0, pytest.approx(0.6)),)  # clipped to the window
    assert segs[0].words is not None and segs[0].words[2] == Word("c", 4.8, 5.0)


def test_untimed_text_on_short_media_is_one_segment_with_the_whole_text() -> None:
    t = Transcript(Path("a.txt"), "txt", [], "ask not what your country can do", timed=False)
    assert segment_media(t, 11.0, SegmentConfig()) == [Segment(0, 0.0, 11.0, "ask not what your country can do")]


def test_untimed_text_on_long_media_gives_windows_without_text() -> None:
    t = Transcript(Path("a.txt"), "txt", [], "a long speech", timed=False)
    segs = segment_media(t, 30.0, SegmentConfig())
    assert len(segs) == 11 and all(s.text == "" for s in segs)


def test_untimed_text_without_media_has_no_time_span() -> None:
    with pytest.raises(ValueError, match="untimed transcript without media"):
        segment_media(Transcript(Path("a.txt"), "txt", [], "x", timed=False), None, SegmentConfig())


@pytest.mark.skipif(not CLIPS.is_dir(), reason=f"shared real media absent at {CLIPS}")
def test_manifesto_srt_gives_3_to_12_second_segments_holding_all_37_cues() -> None:
    t = read_transcript(CLIPS / "manifesto_audiobook.srt")
    segs = segment_media(t, 88.0, SegmentConfig())
    assert 7 <= len(segs) <= 30
    assert all(3.0 - EPS <= s.duration <= 12.0 + EPS for s in segs)
    assert " ".join(s.text for s in segs) == t.text


# -- properties -------------------------------------------------------------------------------
@st.composite
def _cues(draw: st.DrawFn, overlapping: bool) -> tuple[list[Cue], float]:
    """Cues sorted by start inside ``[0, duration]``, each with its own words (``c3w0 c3w1``);
    some instantaneous, some longer than any max; overlapping only when asked."""
    n = draw(st.integers(0, 25))
    t, cues = 0.0, []
    for i in range(n):
        gap = draw(st.sampled_from([0.0, 0.1, 0.5, 1.9, 2.1, 4.0, 15.0]))
        length = draw(st.sampled_from([0.0, 0.3, 1.0, 2.5, 4.0, 7.0, 11.9, 13.0, 30.0]))
        start = t + gap
        if overlapping and cues and draw(st.booleans()):
            start = max(cues[-1].start, cues[-1].end - draw(st.sampled_from([0.1, 1.0, 5.0])))
        nwords = draw(st.integers(1, 6))
        cues.append(Cue(start, start + length, " ".join(f"c{i}w{k}" for k in range(nwords))))
        t = max(t, start + length)
    duration = t + draw(st.sampled_from([0.0, 0.01, 3.0]))
    return cues, max(duration, 0.01)


_configs = st.builds(
    lambda lo, span, gap: SegmentConfig(min_seconds=lo, max_seconds=lo + span, max_gap=gap),
    st.sampled_from([0.5, 1.0, 3.0, 5.0]), st.sampled_from([0.0, 2.0, 9.0, 20.0]), st.sampled_from([0.0, 0.5, 2.0]),
)


def _assert_ordered_within(segs: list[Segment], duration: float) -> None:
    assert [s.index for s in segs] == list(range(len(segs)))
    for s in segs:
        assert -EPS <= s.start <= s.end <= duration + EPS, s
    for a, b in zip(segs, segs[1:]):
        assert a.end <= b.start + EPS, (a, b)


@PROPERTY
@given(_cues(overlapping=False), _configs)
def test_cue_segments_are_ordered_disjoint_in_bounds_and_hold_every_cue_once(
    drawn: tuple[list[Cue], float], config: SegmentConfig
) -> None:
    cues, duration = drawn
    segs = segment_media(_srt(cues), duration, config)
    if not cues:  # no timed text: windows
        assert segs[0].start == 0 and segs[-1].end == pytest.approx(duration)
        return
    _assert_ordered_within(segs, duration)
    tokens = [s.text.split() for s in segs]
    assert [w for ws in tokens for w in ws] == [w for c in cues for w in c.text.split()]  # all words, in order, once
    where = {w: i for i, ws in enumerate(tokens) for w in ws}
    for c in cues:
        holders = {where[w] for w in c.text.split()}
        if c.end - c.start <= config.max_seconds:
            assert len(holders) == 1, (c, segs)  # a cue within max is never split
        first, last = segs[min(holders)], segs[max(holders)]
        assert first.start <= c.start + EPS and c.end <= last.end + EPS  # segments cover their cues
    for s in segs:
        if s.duration > config.max_seconds + EPS:
            assert len(s.text.split()) == 1, s  # only one word too long to cut makes a segment too long


@PROPERTY
@given(_cues(overlapping=False), _configs)
def test_a_segment_shorter_than_min_seconds_could_join_neither_neighbour(
    drawn: tuple[list[Cue], float], config: SegmentConfig
) -> None:
    cues, duration = drawn
    if not cues:
        return
    segs = segment_media(_srt(cues), duration, config)
    split = {w for c in cues if c.end - c.start > config.max_seconds for w in c.text.split()}
    instants = {w for c in cues if c.end == c.start for w in c.text.split()}  # widened after merging
    for i, s in enumerate(segs):
        words = set(s.text.split())
        if s.duration >= config.min_seconds - EPS or words & split or words <= instants:
            continue
        neighbours = ([(segs[i - 1], s)] if i else []) + ([(s, segs[i + 1])] if i + 1 < len(segs) else [])
        for a, b in neighbours:
            if set(a.text.split()) <= instants or set(b.text.split()) <= instants:
                continue
            assert b.start - a.end > config.max_gap - EPS or b.end - a.start > config.max_seconds - EPS, (a, b)


@PROPERTY
@given(_cues(overlapping=True), _configs)
def test_overlapping_cues_still_give_ordered_disjoint_segments_with_every_word_once(
    drawn: tuple[list[Cue], float], config: SegmentConfig
) -> None:
    cues, duration = drawn
    segs = segment_media(_srt(cues), duration, config)
    _assert_ordered_within(segs, duration)
    if cues:
        assert sorted(w for s in segs for w in s.text.split()) == sorted(w for c in cues for w in c.text.split())


@PROPERTY
@given(st.floats(0.05, 500), st.sampled_from([1.0, 2.5, 5.0, 7.0]), st.sampled_from([0.25, 0.5, 1.0]))
def test_windows_tile_the_media_without_gaps_and_overlap_at_most_window_minus_hop(
    duration: float, window: float, hop_fraction: float
) -> None:
    hop = window * hop_fraction
    spans = window_spans(duration, window, hop)
    assert spans[0][0] == 0 and spans[-1][1] == duration
    for a, b in zip(spans, spans[1:]):
        assert b[0] <= a[1] + EPS and a[1] - b[0] <= window - hop + EPS
    for start, end in spans:
        assert 0 < end - start <= window + EPS
    if len(spans) > 1:
        assert spans[-1][1] - spans[-1][0] >= window - hop - EPS  # no sliver of a last window
