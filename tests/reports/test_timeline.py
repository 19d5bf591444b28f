"""The predictions report (``reports.timeline``): per-media summaries with exact numbers, turning
points of the smoothed score, top/bottom segments, failed segments, escaping of untrusted text,
and the self-contained HTML with one timeline per media. Tables are built with pyarrow directly
against ``store.schema.PREDICTIONS``."""

from __future__ import annotations

import datetime as dt
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reports.tables import md_text
from reports.timeline import (
    NEUTRAL,
    TEXT_LIMIT,
    MediaSummary,
    clip_text,
    clock,
    render_predictions,
    summarize_predictions,
)
from store.fs import StoreFS
from store.schema import PREDICTIONS

WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)


def _row(media: str | None, i: int, score: float | None, *, start: float | None = None, end: float | None = None,
         text: str | None = None, error: str | None = None, std: float = 0.0, run: str = "r1",
         modalities: tuple[str, ...] = ("text", "audio", "vision"), **extra: Any) -> dict[str, Any]:
    """Segment ``i`` of ``media``: 5 s apart and 4 s long unless ``start``/``end`` say otherwise."""
    row = {
        "media": media, "video_id": None if media is None else Path(media).stem, "segment_id": f"{media}:{i}",
        "start": 5.0 * i if start is None else start, "end": 5.0 * i + 4.0 if end is None else end,
        "text": f"sentence {i}" if text is None else text, "modalities": list(modalities),
        "score": None if error else score, "score_std": std, "score_text": None, "score_audio": None,
        "score_vision": None, "error": error, "run": run, "run_fingerprint": "f" * 16, "view_fingerprint": "v" * 16,
        "predicted_at": WHEN,
    }
    row.update(extra)
    return row


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=PREDICTIONS)


def _series(media: str, scores: list[float], **kw: Any) -> list[dict[str, Any]]:
    return [_row(media, i, v, **kw) for i, v in enumerate(scores)]


def _one(rows: list[dict[str, Any]]) -> MediaSummary:
    (s,) = summarize_predictions(_table(rows))
    return s


class _Collect(HTMLParser):
    """Tags, data: references and figure ids of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []
        self.figures: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "data", "action") and v
                      and not v.startswith("#")]
        if tag == "figure":
            self.figures += [v or "" for k, v in attrs if k == "id"]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _read(path: str) -> str:
    return Path(path).read_text()


def _parse(path: str) -> _Collect:
    p = _Collect()
    p.feed(_read(path))
    p.close()
    return p


# -- summaries ----------------------------------------------------------------------------------

def test_summary_numbers_are_exact() -> None:
    rows = _series("talk.mp4", [2.0, 1.0, 0.5, 0.25, -0.5, -1.0, 0.0, -0.25])
    rows[1]["modalities"] = ["text"]
    for r, h in zip(rows, [1.0, 2.0, 3.0]):
        r["score_text"] = h
    s = _one(rows)
    assert (s.media, s.video_id, s.run) == ("talk.mp4", "talk", "r1")
    assert (s.segments, s.scored, s.failed) == (8, 8, 0)
    assert s.mean_score == 0.25  # 2.0 / 8
    assert (s.positive, s.negative, s.neutral) == (3, 2, 3)  # 0.5 is positive, -0.5 negative, |x| < 0.5 neutral
    assert (s.share_positive, s.share_negative, s.share_neutral) == (3 / 8, 2 / 8, 3 / 8)
    assert s.modalities == {"text": 8, "audio": 7, "vision": 7}
    assert s.head_means == {"text": 2.0}
    assert (s.start, s.end, s.duration, s.timed) == (0.0, 39.0, 39.0, True)
    assert s.describe() == "talk.mp4: 8 segments, mean +0.25, 38% positive / 25% negative, 00:00–00:39"


def test_head_means_use_only_segments_that_have_the_heads_modality(tmp_path: Path) -> None:
    rows = _series("screen.mp4", [1.0, 1.0, 1.0, 1.0], modalities=("audio",),
                   score_text=-3.0, score_vision=-3.0)  # padding-only heads, as parts written before the fix hold
    for r, v in zip(rows, [2.0, 0.0, 1.0, 1.0]):
        r["score_audio"] = v
    rows[0]["modalities"] = ["audio", "vision"]
    rows[0]["score_vision"] = 0.5
    s = _one(rows)
    assert s.head_means == {"audio": 1.0, "vision": 0.5}  # no text at all: no text head mean
    md = _read(render_predictions(_table(rows), tmp_path, title="t").markdown)
    assert "**unimodal heads (mean)**: audio +1.00, vision +0.50\n" in md


def test_neutral_band_is_one_constant_with_closed_outer_bounds() -> None:
    s = _one(_series("a.mp4", [NEUTRAL, -NEUTRAL, NEUTRAL - 1e-9, -NEUTRAL + 1e-9, 0.0]))
    assert (s.positive, s.negative, s.neutral) == (1, 1, 3)


def test_failed_segments_are_listed_with_their_error_and_left_out_of_means_and_shares() -> None:
    rows = _series("clip.mp4", [3.0, -1.0, 1.0, 2.0])
    rows[1] = _row("clip.mp4", 1, None, error="CorruptMediaError: bad packet")
    rows[2]["score"] = float("nan")  # no error, but no usable score: failed too
    s = _one(rows)
    assert (s.segments, s.scored, s.failed) == (4, 2, 2)
    assert s.mean_score == 2.5
    assert (s.positive, s.negative, s.neutral) == (2, 0, 0) and s.share_positive == 1.0
    assert [(f.segment_id, f.error) for f in s.failures] == [("clip.mp4:1", "CorruptMediaError: bad packet"),
                                                             ("clip.mp4:2", "non-finite score nan")]
    assert [seg.smoothed is None for seg in s.timeline] == [False, True, True, False]
    assert s.describe().startswith("clip.mp4: 4 segments, 2 failed, mean +2.50")


def test_media_with_every_segment_failed_has_no_mean_and_no_shares() -> None:
    s = _one([_row("gone.mp4", i, None, error="decode failed") for i in range(3)])
    assert (s.scored, s.failed, s.mean_score, s.share_positive, s.share_neutral) == (0, 3, None, None, None)
    assert s.story == "no scored segments" and s.most_positive == () and s.turning_points == ()


def test_most_positive_and_negative_segments_are_ordered_and_capped_at_three() -> None:
    s = _one(_series("v.mp4", [0.6, -2.9, 2.8, -0.1, 1.4, -1.5, 2.8, 0.2, -2.0, 3.0]))
    assert [(seg.segment_id, seg.score) for seg in s.most_positive] == [("v.mp4:9", 3.0), ("v.mp4:2", 2.8),
                                                                        ("v.mp4:6", 2.8)]  # ties: earlier first
    assert [seg.score for seg in s.most_negative] == [-2.9, -2.0, -1.5]
    assert s.most_positive[0].span == "00:45–00:49"


def test_top_lists_only_hold_segments_of_their_sign() -> None:
    s = _one(_series("sad.mp4", [-1.0, -2.0, -0.2, 0.0]))
    assert s.most_positive == ()
    assert [seg.score for seg in s.most_negative] == [-2.0, -1.0, -0.2]


def test_segments_are_ordered_by_media_time_not_table_order() -> None:
    rows = _series("m.mp4", [1.0, 2.0, 3.0])
    s = _one([rows[2], rows[0], rows[1]])
    assert [seg.segment_id for seg in s.timeline] == ["m.mp4:0", "m.mp4:1", "m.mp4:2"]


def test_each_media_and_run_gets_its_own_summary_sorted_by_media() -> None:
    rows = (_series("b.mp4", [1.0]) + _series("a.mp4", [1.0], run="r2") + _series("a.mp4", [-1.0], run="r1")
            + _series(None, [0.0], video_id="vid7"))
    keys = [(s.media, s.run, s.mean_score) for s in summarize_predictions(_table(rows))]
    assert keys == [("a.mp4", "r1", -1.0), ("a.mp4", "r2", 1.0), ("b.mp4", "r1", 1.0), ("vid7", "r1", 0.0)]


def test_a_table_without_prediction_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="score"):
        summarize_predictions(pa.table({"media": ["a"], "start": [0.0]}))


# -- turning points -----------------------------------------------------------------------------

def test_turning_points_are_found_where_a_sign_flipping_series_turns() -> None:
    s = _one(_series("flip.mp4", [2.0, 2.0, 1.5, 2.0, -2.0, -2.5, -1.0, -2.0, 2.0, 2.0, 2.5]))
    assert [(t.direction, t.time) for t in s.turning_points] == [("negative", 20.0), ("positive", 40.0)]
    assert s.opening == "positive"
    assert s.story == "starts positive, turns negative at 00:20, turns positive at 00:40"


def test_turning_point_is_placed_at_the_zero_crossing_not_where_the_band_is_left() -> None:
    # smoothed: 1, 1/3, -1/3, -1, -1: leaves the band at segment 3, crosses zero at segment 2
    s = _one(_series("slow.mp4", [1.0, 1.0, -1.0, -1.0, -1.0]))
    assert [(t.direction, t.segment.index) for t in s.turning_points] == [("negative", 2)]
    assert s.turning_points[0].text == "turns negative at 00:10"


def test_a_single_outlier_segment_is_smoothed_away() -> None:
    s = _one(_series("blip.mp4", [2.0, 2.0, 2.0, -1.0, 2.0, 2.0, 2.0]))
    assert s.turning_points == () and s.story == "positive throughout"


def test_wobbling_inside_the_neutral_band_is_no_turning_point() -> None:
    s = _one(_series("meh.mp4", [-1.0, -1.0, 0.3, -0.3, 0.3, -0.3, 0.3, -1.0]))
    assert s.turning_points == () and s.story == "negative throughout"
    assert _one(_series("flat.mp4", [0.2, -0.2, 0.1])).story == "stays neutral throughout"


def test_failed_segments_do_not_break_turn_detection() -> None:
    rows = _series("gap.mp4", [2.0, 2.0, 2.0, 0.0, -2.0, -2.0, -2.0])
    rows[3] = _row("gap.mp4", 3, None, error="timeout")
    (turn,) = _one(rows).turning_points
    assert (turn.direction, turn.time) == ("negative", 20.0)


# -- text-only input ----------------------------------------------------------------------------

def test_subtitle_predictions_use_cue_times() -> None:
    rows = [_row("film.srt", i, v, start=t0, end=t0 + 2.5, modalities=("text",))
            for i, (v, t0) in enumerate([(-2.0, 61.0), (-2.0, 65.0), (2.0, 72.4), (2.0, 80.0), (2.0, 90.0)])]
    s = _one(rows)
    assert s.timed and s.modalities == {"text": 5} and s.span == "01:01–01:32"
    assert [t.text for t in s.turning_points] == ["turns positive at 01:12"]


def test_text_without_times_is_summarized_in_row_order_by_segment_number() -> None:
    rows = [dict(_row("notes.txt", i, v, modalities=("text",)), start=None, end=None)
            for i, v in enumerate([1.0, 2.0, -1.0, -2.0, -2.0])]
    s = _one(rows)
    assert not s.timed and (s.start, s.duration) == (None, None) and s.span == "5 untimed segments"
    assert [t.text for t in s.turning_points] == ["turns negative at segment 3"]
    assert s.most_negative[0].span == "#4"


# -- formatting ---------------------------------------------------------------------------------

def test_clock_shows_minutes_and_seconds_and_hours_past_one_hour() -> None:
    assert [clock(0.0), clock(72.9), clock(599.99), clock(3725.0)] == ["00:00", "01:12", "09:59", "1:02:05"]


def test_long_text_is_cut_at_a_word_boundary_with_an_ellipsis() -> None:
    text = "word " * 100
    out = clip_text(text)
    assert len(out) <= TEXT_LIMIT and out.endswith("word…")
    assert clip_text("  short\n text ") == "short text"
    assert clip_text("x" * 500).endswith("…") and len(clip_text("x" * 500)) == TEXT_LIMIT


def test_markdown_text_cannot_open_html_or_break_a_table_cell() -> None:
    assert md_text("<b>a</b> | b & *c*") == r"&lt;b&gt;a&lt;/b&gt; \| b &amp; \*c\*"


# -- the rendered report ------------------------------------------------------------------------

EVIL = '<script>alert("x")</script> Tom & Jerry'


def _report_rows() -> list[dict[str, Any]]:
    rows = _series("talk.mp4", [2.0, 2.0, 2.0, -2.0, -2.5, -2.0], std=0.3)
    rows[4]["text"] = EVIL
    rows.append(_row("talk.mp4", 6, None, error="CorruptMediaError: <bad> & broken"))
    rows += _series("film.srt", [-1.0, 1.0], modalities=("text",))
    rows += [dict(r, start=None, end=None) for r in _series("notes.txt", [0.0, 1.0, 2.0])]
    return rows


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    out = tmp_path_factory.mktemp("predictions") / "report"
    rep = render_predictions(_table(_report_rows()), out, "Predictions of <new> media",
                             run_info={"model": "mult & co", "seeds": [1, 2]})
    return rep, out


def test_report_writes_self_contained_html_and_markdown(report: tuple[Any, Path]) -> None:
    rep, out = report
    assert rep.html == str(out / "predictions.html") and rep.markdown == str(out / "predictions.md")
    assert Path(rep.html).is_file() and Path(rep.markdown).is_file()
    page = _parse(rep.html)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert page.refs and all(r.startswith("data:image/png;base64,") for r in page.refs)
    html = _read(rep.html)
    assert "http://" not in html and "https://" not in html and "url(" not in html
    assert [s.media for s in rep.media] == ["film.srt", "notes.txt", "talk.mp4"]


def test_report_has_one_timeline_per_media(report: tuple[Any, Path]) -> None:
    rep, _ = report
    page = _parse(rep.html)
    timelines = [f for f in page.figures if f.startswith("timeline-")]
    assert len(timelines) == len(set(timelines)) == len(rep.media) == 3
    assert page.tags.count("img") == 3


def test_report_escapes_segment_text_errors_and_run_info(report: tuple[Any, Path]) -> None:
    rep, _ = report
    html = _read(rep.html)
    assert "<script" not in html and "<bad>" not in html and "<new>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Tom &amp; Jerry" in html
    assert "CorruptMediaError: &lt;bad&gt; &amp; broken" in html and "mult &amp; co" in html
    text = "".join(_parse(rep.html).text)
    assert EVIL in text  # shown to the reader as written
    md = _read(rep.markdown)
    assert "<script" not in md and "<bad>" not in md
    assert "&lt;script&gt;alert(\"x\")&lt;/script&gt; Tom &amp; Jerry" in md


def test_report_lists_turning_points_top_segments_and_failures(report: tuple[Any, Path]) -> None:
    rep, _ = report
    talk = rep.media[2]
    assert [t.text for t in talk.turning_points] == ["turns negative at 00:15"]
    assert [s.segment_id for s in talk.most_negative] == ["talk.mp4:4", "talk.mp4:3", "talk.mp4:5"]
    for path in (rep.html, rep.markdown):
        text = _read(path)
        assert "turns negative at 00:15" in text
        assert "00:20–00:24" in text and "talk.mp4:6" in text and "CorruptMediaError" in text
        assert text.index("00:20–00:24") < text.index("00:15–00:19") < text.index("00:25–00:29")


def test_report_cuts_long_segment_text(tmp_path: Path) -> None:
    long = "remarkable " * 60 + "ENDMARK"
    rep = render_predictions(_table([_row("x.mp4", 0, 2.0, text=long)]), tmp_path, "t")
    shown = "".join(_parse(rep.html).text)  # what the page shows; the full text is only the cell's hover title
    assert "remarkable remarkable…" in shown and "ENDMARK" not in shown
    assert 'title="remarkable' in _read(rep.html) and "ENDMARK" in _read(rep.html)
    md = _read(rep.markdown)
    assert "remarkable remarkable…" in md and "ENDMARK" not in md


def test_report_writes_through_fsspec_to_a_storefs_or_url() -> None:
    mem = fsspec.filesystem("memory")
    try:
        rep = render_predictions(_table(_series("a.mp4", [1.0, -1.0])), StoreFS("memory://timeline-test/report"), "t")
        assert rep.html == "memory://timeline-test/report/predictions.html"
        assert rep.markdown == "memory://timeline-test/report/predictions.md"
        assert b"timeline-m1-a-mp4" in mem.cat("/timeline-test/report/predictions.html")
        assert render_predictions(_table([]), "memory://timeline-test/other", "t").media == []
        assert mem.exists("/timeline-test/other/predictions.md")
    finally:
        mem.rm("/timeline-test", recursive=True)


def test_report_of_an_empty_table_says_so(tmp_path: Path) -> None:
    rep = render_predictions(PREDICTIONS.empty_table(), tmp_path / "empty", "nothing")
    assert rep.media == [] and "no predictions" in _read(rep.html) and "no predictions" in _read(rep.markdown)


# -- properties ---------------------------------------------------------------------------------

_scores = st.one_of(st.none(), st.floats(-3.0, 3.0, allow_nan=False))
_segments = st.lists(st.tuples(st.sampled_from(["a.mp4", "b.srt", "c.wav"]), _scores,
                               st.floats(0.0, 600.0, allow_nan=False), st.floats(0.0, 0.5, allow_nan=False)),
                     min_size=0, max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_segments)
def test_summaries_add_up_for_any_table(segments: list[tuple[str, float | None, float, float]]) -> None:
    rows = [_row(m, i, v, start=t0, end=t0 + 1.0, std=sd, error=None if v is not None else "failed")
            for i, (m, v, t0, sd) in enumerate(segments)]
    summaries = summarize_predictions(_table(rows))
    assert sum(s.segments for s in summaries) == len(rows)
    assert len({s.media for s in summaries}) == len(summaries)
    for s in summaries:
        assert s.scored + s.failed == s.segments == len(s.timeline) and len(s.failures) == s.failed
        assert s.positive + s.negative + s.neutral == s.scored
        if s.scored:
            assert s.mean_score is not None and -3.0 <= s.mean_score <= 3.0
            shares = [s.share_positive, s.share_negative, s.share_neutral]
            assert all(x is not None and 0.0 <= x <= 1.0 for x in shares)
            assert math.isclose(math.fsum(x or 0.0 for x in shares), 1.0)
        else:
            assert s.mean_score is None and s.share_positive is None
        starts = [seg.start or 0.0 for seg in s.timeline]
        assert starts == sorted(starts)
        tops = [seg.score or 0.0 for seg in s.most_positive]
        bottoms = [seg.score or 0.0 for seg in s.most_negative]
        assert tops == sorted(tops, reverse=True) and all(x > 0 for x in tops) and len(tops) <= 3
        assert bottoms == sorted(bottoms) and all(x < 0 for x in bottoms) and len(bottoms) <= 3
        directions = [t.direction for t in s.turning_points]
        assert all(a != b for a, b in zip(directions, directions[1:]))  # turns alternate
        if directions:
            assert directions[0] != s.opening
        assert all(seg.smoothed is not None and -3.0 <= seg.smoothed <= 3.0
                   for seg in s.timeline if not seg.failed)
