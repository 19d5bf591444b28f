"""Hostile transcript sidecars and segmentation: subtitle files as they come from everywhere (any
encoding or line ending, sloppy timings, binary junk, FIFOs, Whisper/WhisperX JSON) end as correct
cues, a named reject naming the file and the problem, or a note; segments never leave the media
and never lose a cue's text. The rules are in ``corpora.sidecars.decoding.decode_text`` and
``corpora.sidecars.subtitles._canonical_timings``; docs/reliability.md, "Hostile transcripts", lists every case."""

from __future__ import annotations

import codecs
import json
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpora.ingest import ingest_media
from corpora.rows import INVALID_TEXT, INVALID_WINDOW, INVALID_WORDS, MISSING_FILE, WINDOW_PAST_END
from corpora.segments import SegmentConfig, segment_media
from corpora.sidecars.cues import Cue, SidecarError, Transcript, words_to_cues
from corpora.sidecars.reading import read_transcript
from corpora.synth import write_clip
from features.clips import Word

SETTINGS = settings(
    max_examples=200, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TEXT = "Café “déjà vu” naïve señor"
SRT = f"1\n00:00:01,000 --> 00:00:02,500\n{TEXT}\n\n2\n00:00:03,000 --> 00:00:05,000\nsecond line\n"
VTT = f"WEBVTT\n\n00:01.000 --> 00:02.500\n{TEXT}\n\n00:03.000 --> 00:05.000\nsecond line\n"


def _write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _cues(t: Transcript) -> list[tuple[float, float, str]]:
    return [(c.start, c.end, c.text) for c in t.cues]


def _rejected(tmp_path: Path, name: str, data: str | bytes, reason: str, *problem: str) -> str:
    path = _write(tmp_path, name, data)
    with pytest.raises(SidecarError) as err:
        read_transcript(path)
    message = str(err.value)
    assert err.value.reason == reason and message.startswith(f"{path}: "), message
    assert all(p in message for p in problem), message
    assert len(message) < 400  # a message never carries the file's content
    return message


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail instead of hanging the suite when a read blocks."""
    def hung(*_: object) -> None:
        raise TimeoutError("blocked")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    write_clip(path, seconds=6.0, video=False)
    return path


# -- encodings --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, text", [("a.srt", SRT), ("a.vtt", VTT)])
@pytest.mark.parametrize("encoding, bom, read_as", [
    ("cp1252", b"", "cp1252"),
    ("utf-8", codecs.BOM_UTF8, "utf-8"),
    ("utf-16-le", codecs.BOM_UTF16_LE, "utf-16"),
    ("utf-16-be", codecs.BOM_UTF16_BE, "utf-16"),
    ("utf-16-le", b"", "utf-16-le"),
    ("utf-16-be", b"", "utf-16-be"),
    ("utf-32-le", codecs.BOM_UTF32_LE, "utf-32"),  # starts with the UTF-16 LE BOM: read as UTF-16 before
    ("utf-32-be", codecs.BOM_UTF32_BE, "utf-32"),
])
def test_every_common_encoding_reads_the_same_cues(
    tmp_path: Path, name: str, text: str, encoding: str, bom: bytes, read_as: str
) -> None:
    t = read_transcript(_write(tmp_path, name, bom + text.encode(encoding)))
    assert _cues(t) == [(1.0, 2.5, TEXT), (3.0, 5.0, "second line")]
    assert t.encoding == read_as
    assert bool(t.notes) == (read_as in ("cp1252", "utf-16-le", "utf-16-be"))  # a guess is always noted


def test_utf16_text_without_bom_is_read_not_taken_for_cp1252_with_nuls(tmp_path: Path) -> None:
    t = read_transcript(_write(tmp_path, "a.txt", "hello world café".encode("utf-16-le")))
    assert t.text == "hello world café" and "UTF-16 LE" in t.notes[0]


def test_latin1_subtitles_read_as_cp1252_and_c1_bytes_reject_naming_byte_and_line(tmp_path: Path) -> None:
    t = read_transcript(_write(tmp_path, "a.srt", "1\n00:00:01,000 --> 00:00:02,000\nÇa déjà ÿ ½\n".encode("latin-1")))
    assert t.cues[0].text == "Ça déjà ÿ ½" and t.encoding == "cp1252"
    _rejected(tmp_path, "b.srt", b"1\n00:00:01,000 --> 00:00:02,000\nctl \x81 x\n", INVALID_TEXT,
              "neither UTF-8", "byte 0x81", "line 3")


def test_damaged_utf8_is_rejected_instead_of_garbled_as_cp1252(tmp_path: Path) -> None:
    data = SRT.encode() + "\n3\n00:00:06,000 --> 00:00:07,000\nbad \xff byte\n".encode("latin-1")
    _rejected(tmp_path, "a.srt", data, INVALID_TEXT, "UTF-8 but for 1 invalid byte", "0xff", "line 11")


def test_a_byte_order_mark_that_lies_rejects_naming_the_byte(tmp_path: Path) -> None:
    _rejected(tmp_path, "a.srt", codecs.BOM_UTF8 + b"1\n00:00:01,000 --> 00:00:02,000\nbad \xe9\n", INVALID_TEXT,
              "UTF-8 byte order mark but is not valid UTF-8", "0xe9", "line 3")


@pytest.mark.parametrize("name, data", [
    ("a.srt", bytes(range(256)) * 40),
    ("a.srt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
    ("a.vtt", b"WEBVTT\n\n00:01.000 --> 00:02.000\non\x00e\n"),
    ("a.txt", b"hello\x00world"),
    ("a.words.json", b'[{"word": "a\x00", "start": 1, "end": 2}]'),
])
def test_nul_bytes_mark_a_binary_file_and_reject_it(tmp_path: Path, name: str, data: bytes) -> None:
    _rejected(tmp_path, name, data, INVALID_TEXT, "holds a NUL byte", "binary data")


def test_double_encoded_mojibake_is_repaired_with_a_note(tmp_path: Path) -> None:
    t = read_transcript(_write(tmp_path, "a.srt", "1\n00:00:01,000 --> 00:00:02,000\nCafÃ© dÃ©jÃ  vu â€™\n"))
    assert t.cues[0].text == "Café déjà vu ’" and "mojibake repaired" in t.notes[0]


def test_control_characters_are_removed_with_a_note(tmp_path: Path) -> None:
    t = read_transcript(_write(tmp_path, "a.srt", "1\n00:00:01,000 --> 00:00:02,000\nbell\x07 here\x1b\x7f\n"))
    assert t.cues[0].text == "bell here" and "3 control character(s) removed" in t.notes[0]


# -- line endings and timings -----------------------------------------------------------------
@pytest.mark.parametrize("name, text", [("a.srt", SRT), ("a.vtt", VTT)])
@pytest.mark.parametrize("ending", ["\r\n", "\r", "mixed"])
def test_crlf_cr_only_and_mixed_line_endings_read_like_lf(tmp_path: Path, name: str, text: str, ending: str) -> None:
    lines = text.split("\n")
    data = "".join(line + ("\r\n", "\r", "\n")[i % 3] for i, line in enumerate(lines)) if ending == "mixed" \
        else ending.join(lines)
    assert _cues(read_transcript(_write(tmp_path, name, data))) == [(1.0, 2.5, TEXT), (3.0, 5.0, "second line")]


@pytest.mark.parametrize("name, timing, start, end", [
    ("a.srt", "00:00:01.000 --> 00:00:02.000", 1.0, 2.0),  # '.' for ','
    ("a.srt", "00:01,000 --> 00:02,000", 1.0, 2.0),  # no hours: the srt package read 60 s and 120 s
    ("a.srt", "00:00:01,5 --> 00:00:02,25", 1.5, 2.25),  # the srt package read 1.005 s and 2.025 s
    ("a.srt", "0:0:1,5 --> 0:0:2,75", 1.5, 2.75),
    ("a.srt", "00:00:01:500 --> 00:00:02:000", 1.5, 2.0),
    ("a.srt", "00:00:01 --> 00:00:02", 1.0, 2.0),
    ("a.srt", "01:02:03,0004 --> 01:02:04,9996", 3723.0, 3725.0),
    ("a.vtt", "00:00:01,500 --> 00:00:02,000", 1.5, 2.0),
    ("a.vtt", "00:01.5 --> 00:02.25 align:start position:10%", 1.5, 2.25),
])
def test_sloppy_timings_are_read_by_one_decimal_rule_with_a_note(
    tmp_path: Path, name: str, timing: str, start: float, end: float
) -> None:
    head = "WEBVTT\n\n" if name.endswith(".vtt") else "1\n"
    t = read_transcript(_write(tmp_path, name, f"{head}{timing}\nhello\n"))
    assert _cues(t) == [(start, end, "hello")]
    assert any("read leniently" in n for n in t.notes)


@pytest.mark.parametrize("name, text", [
    ("a.srt", SRT), ("a.vtt", VTT), ("a.srt", "1\n00:00:01,000 --> 00:00:02,000 X1:100 X2:600 Y1:20 Y2:50\nhi\n")])
def test_standard_timings_give_no_note(tmp_path: Path, name: str, text: str) -> None:
    assert read_transcript(_write(tmp_path, name, text)).notes == []


@pytest.mark.parametrize("timing", [
    "-00:00:01,000 --> 00:00:02,000",
    "00:00:01,000 --> -00:00:02,000",
    "00:75:01,000 --> 00:76:02,000",
])
def test_a_bad_timing_line_rejects_naming_its_line(tmp_path: Path, timing: str) -> None:
    text = f"1\n00:00:00,500 --> 00:00:00,900\nok\n\n2\n{timing}\nbad\n"
    _rejected(tmp_path, "a.srt", text, INVALID_WINDOW, "line 6: cue timing", timing.split()[0])


def test_cue_text_that_looks_like_a_time_range_stays_text(tmp_path: Path) -> None:
    t = read_transcript(_write(tmp_path, "a.srt", "1\n00:00:01,000 --> 00:00:02,000\nOpen\n10:30 --> 11:00\n"))
    assert _cues(t) == [(1.0, 2.0, "Open 10:30 --> 11:00")]


@pytest.mark.parametrize("text, problem", [
    ("garbage at start\n\n1\n00:00:01,000 --> 00:00:02,000\nok\n", "line 1: 'garbage at start'"),
    ("1\n00:00:01,000 -> 00:00:02,000\nok\n", "line 2: '00:00:01,000 -> 00:00:02,000'"),
    ("1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:1a,000 --> 00:00:04,000\nx\n", "line 6: '00:00:1a,000 -->"),
    ("x" * 2_000_000, "(2000000 characters)"),  # a 2 MB line: once a message of that size
])
def test_srt_that_cannot_be_parsed_names_the_line_in_a_short_message(tmp_path: Path, text: str, problem: str) -> None:
    _rejected(tmp_path, "a.srt", text, INVALID_TEXT, "not a valid SubRip file", problem)


def test_missing_and_out_of_order_index_numbers_and_cues_are_read_in_time_order(tmp_path: Path) -> None:
    text = ("7\n00:00:06,000 --> 00:00:07,000\nthird\n\n00:00:01,000 --> 00:00:02,000\nfirst\n\n"
            "2\n00:00:03,000 --> 00:00:04,000\nsecond\n")
    assert [c.text for c in read_transcript(_write(tmp_path, "a.srt", text)).cues] == ["first", "second", "third"]


@pytest.mark.parametrize("name, text, problem", [
    ("a.srt", "1\n100:00:01,000 --> 100:00:02,000\nfar\n", "cue 1 360001-360002 s is outside [0, 86400] s"),
    ("a.vtt", "WEBVTT\n\n00:03.000 --> 00:02.000\nrev\n", "cue 1 ends (2 s) before it starts (3 s)"),
])
def test_cue_times_past_a_day_or_reversed_reject_as_invalid_window(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    _rejected(tmp_path, name, text, INVALID_WINDOW, problem)


# -- WebVTT -----------------------------------------------------------------------------------
def test_vtt_without_header_that_starts_with_a_cue_is_read_with_a_note(tmp_path: Path) -> None:
    t = read_transcript(_write(tmp_path, "a.vtt", "00:01.000 --> 00:02.000\none\n\n00:03.000 --> 00:04.000\ntwo\n"))
    assert _cues(t) == [(1.0, 2.0, "one"), (3.0, 4.0, "two")] and "no WEBVTT header" in t.notes[0]


def test_an_srt_renamed_vtt_is_read(tmp_path: Path) -> None:
    assert _cues(read_transcript(_write(tmp_path, "a.vtt", SRT)))[0] == (1.0, 2.5, TEXT)


def test_vtt_without_header_or_cue_rejects_naming_the_first_line(tmp_path: Path) -> None:
    _rejected(tmp_path, "a.vtt", "hello there\n\nmore\n", INVALID_TEXT, "'hello there' is neither the 'WEBVTT'")


def test_vtt_text_after_a_blank_line_in_a_cue_is_ignored_with_a_note(tmp_path: Path) -> None:
    text = "WEBVTT\n\n00:01.000 --> 00:02.000\nline one\n\nline two\n\n00:03.000 --> 00:04.000\nthree\n"
    t = read_transcript(_write(tmp_path, "a.vtt", text))
    assert [c.text for c in t.cues] == ["line one", "three"]
    assert any("1 block(s)" in n and "line 6" in n for n in t.notes)


def test_a_line_of_spaces_inside_a_vtt_cue_is_part_of_it_not_a_block_boundary(tmp_path: Path) -> None:
    text = "WEBVTT\n\n00:01.000 --> 00:02.000 align:start\n \nhello<00:01.500><c> there</c>\n"
    t = read_transcript(_write(tmp_path, "a.vtt", text))  # as YouTube writes its captions
    assert _cues(t) == [(1.0, 2.0, "hello there")] and t.notes == []


def test_vtt_style_note_region_settings_voices_and_timestamp_tags_leave_only_text(tmp_path: Path) -> None:
    text = ("\ufeffWEBVTT - title\nKind: captions\n\nSTYLE\n::cue { color: red }\n\nREGION\nid:fred width:40%\n\n"
            "NOTE a\ncomment\n\n1\n00:01.000 --> 00:02.000 align:start position:10% region:fred\n"
            "<v Roger>Hello <00:00:01.500>there</v>\n\nNOTE late\n\n"
            "00:00:03.000 --> 00:00:04.000 line:0\n<c.red>two</c> &amp; <lang en>three</lang>\n")
    t = read_transcript(_write(tmp_path, "a.vtt", text))
    assert _cues(t) == [(1.0, 2.0, "Hello there"), (3.0, 4.0, "two & three")] and t.notes == []


# -- files that are not files -----------------------------------------------------------------
def test_a_fifo_named_srt_is_rejected_without_blocking(tmp_path: Path, alarm: None) -> None:
    os.mkfifo(tmp_path / "a.srt")
    with pytest.raises(SidecarError, match=r"a\.srt: is not a regular file") as err:
        read_transcript(tmp_path / "a.srt")
    assert err.value.reason == MISSING_FILE


def test_a_directory_or_broken_symlink_named_srt_is_a_missing_file_reject(tmp_path: Path) -> None:
    (tmp_path / "d.srt").mkdir()
    os.symlink(tmp_path / "nowhere.srt", tmp_path / "l.srt")
    for name, problem in (("d.srt", "is not a regular file"), ("l.srt", "does not exist")):
        with pytest.raises(SidecarError, match=problem) as err:
            read_transcript(tmp_path / name)
        assert err.value.reason == MISSING_FILE


def test_a_folder_with_a_fifo_transcript_scores_its_media_and_rejects_the_fifo(
    tmp_path: Path, clip_mp4: Path, alarm: None
) -> None:
    shutil.copy(clip_mp4, tmp_path / "talk.mp4")
    os.mkfifo(tmp_path / "talk.srt")  # no regular file: not the media's sidecar, an input of its own
    result = ingest_media([tmp_path])
    assert {r["video_id"] for r in result.clips.to_pylist()} == {"talk"}
    [reject] = result.rejects.to_pylist()
    assert reject["reason"] == MISSING_FILE and "talk.srt: is not a regular file" in reject["message"]


# -- word timings -----------------------------------------------------------------------------
def test_whisper_json_without_word_timings_reads_each_segment_as_a_cue(tmp_path: Path) -> None:
    data = {"text": " Hello world. Bye", "segments": [
        {"id": 1, "start": 2.0, "end": 3.5, "text": " Bye"},
        {"id": 0, "start": 0.0, "end": 2.0, "text": " Hello <i>world</i>."}]}
    t = read_transcript(_write(tmp_path, "a.words.json", json.dumps(data)))
    assert _cues(t) == [(0.0, 2.0, "Hello world."), (2.0, 3.5, "Bye")] and t.words is None and t.timed
    assert "2 of its 2 segments have no word timings" in t.notes[0]


def test_segments_only_some_of_which_have_words_are_all_read_as_segment_cues(tmp_path: Path) -> None:
    data = [{"start": 0.0, "end": 2.0, "text": " a", "words": [{"word": "a", "start": 0.1, "end": 0.5}]},
            {"start": 2.0, "end": 4.0, "text": " b c"}]
    t = read_transcript(_write(tmp_path, "a.words.json", json.dumps(data)))
    assert _cues(t) == [(0.0, 2.0, "a"), (2.0, 4.0, "b c")] and "1 of its 2 segments" in t.notes[0]


def test_whisperx_words_without_times_are_placed_between_their_timed_neighbours(tmp_path: Path) -> None:
    words = [{"word": " In", "start": 0.5, "end": 0.9, "score": 0.9}, {"word": " 1990"}, {"word": " and"},
             {"word": " 2000.", "start": 2.0, "end": 2.4}, {"word": " 50%"}]
    data = {"segments": [{"start": 0.5, "end": 3.0, "text": " In 1990 and 2000. 50%", "words": words}],
            "word_segments": []}
    t = read_transcript(_write(tmp_path, "a.words.json", json.dumps(data)))
    assert [(w.word, w.start, w.end) for w in t.words or []] == [
        ("In", 0.5, 0.9), ("1990", 0.9, pytest.approx(1.45)), ("and", pytest.approx(1.45), 2.0),
        ("2000.", 2.0, 2.4), ("50%", 2.4, 3.0)]  # the last one runs to the segment's end
    assert t.text == "In 1990 and 2000. 50%" and "3 word(s) without times" in t.notes[0]


def test_whisperx_word_segments_are_read_when_segments_is_empty(tmp_path: Path) -> None:
    data = {"segments": [], "word_segments": [{"word": "Hi", "start": 1, "end": 2}]}
    assert _cues(read_transcript(_write(tmp_path, "a.words.json", json.dumps(data)))) == [(1.0, 2.0, "Hi")]


def test_word_times_written_as_decimal_strings_are_read(tmp_path: Path) -> None:
    data = [{"word": "a", "start": "1.0", "end": "1.5"}, {"word": "b", "start": "1.6", "end": "2"}]
    assert _cues(read_transcript(_write(tmp_path, "a.words.json", json.dumps(data)))) == [(1.0, 2.0, "a b")]


@pytest.mark.parametrize("content, problem", [
    ("42", "expected a list of {word, start, end} objects"),
    ('"hello"', "expected a list"),
    ("null", "expected a list"),
    ('{"segments": 3}', "expected a list"),
    ('[{"start": 0, "end": 1, "text": "a", "words": "x"}]', "expected a list"),
    ('[{"word": "a", "start": 1}]', "word 0 is not an object with word/start/end"),
    ('[{"word": "x"}]', "word 0 is not an object with word/start/end"),  # untimed, nothing to place it by
    ('[{"word": "a", "start": "1,0", "end": 2}]', "word 0 start '1,0' is not a decimal number"),
    ('[{"word": "a", "start": NaN, "end": 1}]', "word 0 start nan is not finite"),
    ('[{"word": "a", "start": 1, "end": Infinity}]', "word 0 end inf is not finite"),
    ('[{"word": "a", "start": true, "end": 1}]', "is not a number (a bool)"),
    ('[{"word": "b", "start": 3, "end": 4}, {"word": "a", "start": 1, "end": 2}]', "word 1 'a' at 1 s"),
    ('[{"word": "a", "start": 1, "end": 3}, {"word": "b", "start": 2, "end": 4}]', "overlaps"),
    ('[{"word": "a", "start": -1, "end": 0.5}]', "is outside the clip"),
    ('[{"start": "x", "end": 1, "text": "a"}]', "segment 0 start 'x' is not a decimal number"),
    ('[{"start": 2, "end": 1, "text": "a"}]', "segment 0 ends (1 s) before it starts (2 s)"),
    ('[{"start": 0, "end": 1, "text": 5}]', "segment 0 has no 'text' string"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ("", "not valid JSON"),
])
def test_bad_word_files_reject_as_invalid_words_naming_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    _rejected(tmp_path, "a.words.json", content, INVALID_WORDS, problem)


# -- segments ---------------------------------------------------------------------------------
def test_an_instant_cue_at_the_start_of_another_joins_it_instead_of_a_zero_length_segment() -> None:
    cues = [Cue(1.0, 1.0, "zero"), Cue(1.0, 2.0, "next")]
    segments = segment_media(Transcript(Path("a.srt"), "srt", cues, ""), 10.0, SegmentConfig(
        min_seconds=0.5, max_seconds=0.5))
    assert all(s.end > s.start for s in segments)
    assert " ".join(s.text for s in segments).split() == ["zero", "next"]


def test_windows_keep_an_instant_at_the_media_end_and_log_cues_past_it(caplog: pytest.LogCaptureFixture) -> None:
    cues = [Cue(1.0, 2.0, "in"), Cue(10.0, 10.0, "at end"), Cue(12.0, 13.0, "past")]
    with caplog.at_level(logging.WARNING, logger="corpora.segments"):
        segments = segment_media(Transcript(Path("a.srt"), "srt", cues, ""), 10.0, SegmentConfig(mode="windows"))
    assert "at end" in segments[-1].text and segments[-1].end == 10.0
    assert "a.srt: 1 of its cues start after the media end (10.00 s)" in caplog.text


def test_windows_over_a_transcript_of_instants_at_zero_keep_its_text() -> None:
    t = Transcript(Path("a.srt"), "srt", [Cue(0.0, 0.0, "tick")], "tick")
    [segment] = segment_media(t, None, SegmentConfig(mode="windows"))
    assert segment.text == "tick" and segment.end > segment.start


def test_ten_thousand_second_word_transcript_cuts_into_windows_in_linear_time() -> None:
    words = [Word(f"w{i}", i * 0.5, i * 0.5 + 0.3) for i in range(100_000)]
    t = Transcript(Path("a.words.json"), "words", words_to_cues(words), "", words=words)
    started = time.perf_counter()
    segments = segment_media(t, 50_000.0, SegmentConfig(mode="windows"))
    assert time.perf_counter() - started < 15  # every word against every window took minutes
    assert len(segments) == 19_999 and segments[1].text.split()[0] == "w5"


def test_a_hundred_thousand_cue_srt_reads_and_segments_in_seconds(tmp_path: Path) -> None:
    def ts(ms: int) -> str:
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"
    text = "".join(f"{i + 1}\n{ts(i * 500)} --> {ts(i * 500 + 400)}\nword{i} here\n\n" for i in range(100_000))
    started = time.perf_counter()
    t = read_transcript(_write(tmp_path, "a.srt", text))
    segments = segment_media(t, 50_000.0, SegmentConfig())
    assert time.perf_counter() - started < 40
    assert len(t.cues) == 100_000 and sum(len(s.text.split()) for s in segments) == 200_000


# -- properties -------------------------------------------------------------------------------
_NAMES = st.sampled_from(["a.srt", "a.vtt", "a.txt", "a.words.json"])
_TIME = st.from_regex(r"-?[0-9]{0,3}:?[0-9]{1,2}:[0-9]{1,3}(?:[,.:][0-9]{0,4})?", fullmatch=True)
_LINE = st.one_of(
    st.text(max_size=30), st.tuples(_TIME, _TIME).map(" --> ".join), st.just(""),
    st.sampled_from(["WEBVTT", "1", "NOTE x", "<i>", "{\\an8}", "&amp;", "STYLE"]),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["word", "start", "end", "text", "words", "segments", "word_segments"]), inner, max_size=4),
    max_leaves=20,
)


@st.composite
def _sidecar_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(draw(st.lists(_LINE, max_size=20)))
    else:
        text = json.dumps(draw(_JSON))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1252", "utf-32"]))
    return text.encode(encoding, "replace")


@SETTINGS
@given(name=_NAMES, data=_sidecar_bytes())
def test_any_bytes_read_as_clean_ordered_cues_or_one_short_named_sidecar_error(
    tmp_path: Path, name: str, data: bytes
) -> None:
    path = _write(tmp_path, name, data)
    try:
        t = read_transcript(path)
    except SidecarError as exc:
        assert str(exc).startswith(f"{path}: ") and len(str(exc)) < 600
        assert exc.reason in (INVALID_TEXT, INVALID_WINDOW, INVALID_WORDS)
        return
    for c in t.cues:
        assert math.isfinite(c.start) and 0.0 <= c.start <= c.end <= 86_400.0
        assert c.text and c.text == c.text.strip()
        assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in c.text)
    assert [c.start for c in t.cues] == sorted(c.start for c in t.cues)


_CUE = st.builds(
    lambda start, length, text: Cue(start, start + length, text),
    st.floats(0, 100).map(lambda x: round(x, 3)), st.floats(0, 30).map(lambda x: round(x, 3)),
    st.sampled_from(["a", "b c", "d e f g h i j k", "w"]),
)
_CONFIG = st.builds(
    lambda low, extra, gap, window, hop, mode: SegmentConfig(
        min_seconds=low, max_seconds=low + extra, max_gap=gap, window=window, hop=window * hop, mode=mode),
    st.floats(0.1, 10), st.floats(0, 20), st.floats(0, 5), st.floats(0.1, 10), st.floats(0.05, 1),
    st.sampled_from(["auto", "windows"]),
)


@settings(SETTINGS, max_examples=400)
@given(cues=st.lists(_CUE, max_size=30), duration=st.one_of(st.none(), st.floats(0.01, 120)), config=_CONFIG)
def test_any_cue_list_gives_ordered_segments_inside_the_media_that_lose_no_text(
    cues: list[Cue], duration: float | None, config: SegmentConfig
) -> None:
    t = Transcript(Path("a.srt"), "srt", sorted(cues, key=lambda c: c.start), " ".join(c.text for c in cues))
    if not cues and duration is None:
        with pytest.raises(ValueError):
            segment_media(t, duration, config)
        return
    segments = segment_media(t, duration, config)
    assert [s.index for s in segments] == list(range(len(segments)))
    for s in segments:
        assert 0.0 <= s.start < s.end or (duration is not None and s.start >= duration), s  # else: a past-end reject
        assert duration is None or s.start >= duration or s.end <= duration
    words = sorted(w for c in cues for w in c.text.split())
    if config.mode == "auto" and cues:  # cue segments: every word once, in segments that do not overlap
        assert sorted(w for s in segments for w in s.text.split()) == words
        assert all(b.start >= a.end for a, b in zip(segments, segments[1:]))
    elif cues:  # windows: every cue that starts inside the media is in some window
        end = duration if duration is not None else max(max(c.end for c in cues), 1.0)
        inside = {w for c in cues if c.start < end or c.start == c.end == end for w in c.text.split()}
        assert inside <= {w for s in segments for w in s.text.split()}


# -- end to end -------------------------------------------------------------------------------
HOSTILE: dict[str, tuple[str, bytes, str | None]] = {
    # media stem: (sidecar name, bytes, reject reason or None for clips with text)
    "cp1252": ("cp1252.srt", SRT.encode("cp1252"), None),
    "utf16": ("utf16.srt", SRT.encode("utf-16-le"), None),
    "cr": ("cr.srt", SRT.replace("\n", "\r").encode(), None),
    "sloppy": ("sloppy.srt", b"00:01,5 --> 00:02,5\nsloppy\n", None),
    "noheader": ("noheader.vtt", b"00:01.000 --> 00:02.000\nno header\n", None),
    "whisper": ("whisper.words.json", json.dumps({"segments": [{"start": 1, "end": 2, "text": "w"}]}).encode(), None),
    "binary": ("binary.srt", bytes(range(256)), INVALID_TEXT),
    "negative": ("negative.srt", b"1\n-00:00:01,000 --> 00:00:02,000\nx\n", INVALID_WINDOW),
    "nan": ("nan.words.json", b'[{"word": "a", "start": NaN, "end": 1}]', INVALID_WORDS),
    "late": ("late.srt", b"1\n00:01:00,000 --> 00:01:02,000\nlate\n", WINDOW_PAST_END),
}


def test_a_folder_of_hostile_sidecars_ends_each_as_clips_or_a_named_reject(tmp_path: Path, clip_mp4: Path) -> None:
    for stem, (name, data, _) in HOSTILE.items():
        shutil.copy(clip_mp4, tmp_path / f"{stem}.mp4")
        _write(tmp_path, name, data)
    result = ingest_media([tmp_path])
    clips = result.clips.to_pylist()
    rejects = {r["clip_id"].split("__")[0]: r for r in result.rejects.to_pylist()}
    for stem, (name, _, reason) in HOSTILE.items():
        mine = [c for c in clips if c["video_id"] == stem]
        if reason is None:
            assert mine and all(c["text"] for c in mine) and stem not in rejects, stem
            assert all(0.0 <= c["start"] < c["end"] <= 6.0 for c in mine)
        else:
            assert not mine and rejects[stem]["reason"] == reason, (stem, rejects.get(stem))
            assert name in rejects[stem]["message"] or reason == WINDOW_PAST_END
    assert next(c for c in clips if c["video_id"] == "sloppy")["start"] == 1.5
