"""Transcript sidecars: real SubRip/WebVTT/word-timing files read into the same cues, found next to
their media by a documented precedence; bad files give a named reject, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corpora.rows import INVALID_TEXT, INVALID_WINDOW, INVALID_WORDS
from corpora.sidecars.cues import PAUSE_S, SidecarError
from corpora.sidecars.finding import find_sidecar, sidecar_candidates
from corpora.sidecars.reading import read_transcript
from tests.helpers.paths import SHARED_DATA

CLIPS = SHARED_DATA / "clips"
needs_clips = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"shared real media absent at {CLIPS}")


# -- real files -------------------------------------------------------------------------------
@needs_clips
def test_manifesto_srt_has_37_cues_in_order_over_88_seconds() -> None:
    t = read_transcript(CLIPS / "manifesto_audiobook.srt")
    assert t.format == "srt" and t.timed and t.words is None and t.encoding == "utf-8"
    assert len(t.cues) == 37
    assert t.cues[0].start == pytest.approx(1.599) and t.cues[0].text == "this audiobook is in the public domain"
    assert t.cues[-1].text == "languages" and t.cues[-1].end == pytest.approx(87.84) and t.end < 88.0
    assert all(c.text and c.start < c.end for c in t.cues)
    assert [c.start for c in t.cues] == sorted(c.start for c in t.cues)


@needs_clips
def test_youtube_rolling_vtt_folds_back_to_the_same_cues_as_the_srt() -> None:
    srt = read_transcript(CLIPS / "manifesto_audiobook.srt")
    vtt = read_transcript(CLIPS / "manifesto_audiobook.vtt")  # 73 rolling captions with inline word times
    assert vtt.format == "vtt"
    assert [c.text for c in vtt.cues] == [c.text for c in srt.cues]
    for a, b in zip(srt.cues, vtt.cues):
        assert b.start == pytest.approx(a.start, abs=0.011)
        # the .vtt keeps two lines on screen until the next line starts (0.4 s longer than the .srt says)
        assert b.end == pytest.approx(a.end, abs=0.5)


@needs_clips
def test_words_json_gives_word_timings_and_cues_built_from_them() -> None:
    t = read_transcript(CLIPS / "manifesto_audiobook.words.json")
    assert t.format == "words" and t.timed and t.words is not None and len(t.words) == 210
    assert t.words[0].word == "this" and t.words[0].start == pytest.approx(1.59)
    assert [w for c in t.cues for w in c.words] == t.words  # every word in exactly one cue, in order
    assert t.text == " ".join(w.word for w in t.words)
    for a, b in zip(t.cues, t.cues[1:]):
        assert b.start - a.end > PAUSE_S  # no punctuation in this ASR output: cues break at pauses
    for c in t.cues:
        assert c.start == c.words[0].start and c.end == max(w.end for w in c.words)
        assert c.text == " ".join(w.word for w in c.words)


@needs_clips
def test_tears_of_steel_srt_with_crlf_keeps_its_76_dialogue_cues_with_lines_joined() -> None:
    t = read_transcript(CLIPS / "tears_of_steel.TOS-en.srt")
    assert len(t.cues) == 76
    assert t.cues[2].text == "...you have your robotics, and I just want to be awesome in space."
    assert all("\n" not in c.text and "\r" not in c.text for c in t.cues)


@needs_clips
def test_plain_text_transcript_is_untimed_text() -> None:
    t = read_transcript(CLIPS / "jfk_inaugural.txt")
    assert not t.timed and t.cues == [] and t.text.startswith("And so, my fellow Americans")


@needs_clips
def test_language_tagged_srt_is_found_for_its_video_and_a_reencode_has_none() -> None:
    assert find_sidecar(CLIPS / "nasa_webb_narration.mp4") == CLIPS / "nasa_webb_narration.en.srt"
    assert find_sidecar(CLIPS / "nasa_webb_narration.vp9_opus.webm") is None
    assert find_sidecar(CLIPS / "manifesto_audiobook.mp4") == CLIPS / "manifesto_audiobook.words.json"
    assert find_sidecar(CLIPS / "jfk_inaugural.flac") == CLIPS / "jfk_inaugural.txt"


# -- discovery --------------------------------------------------------------------------------
def test_sidecar_precedence_is_format_then_untagged_then_tagged_by_name() -> None:
    names = ["foo.txt", "foo.vtt", "foo.en.srt", "foo.srt", "foo.de.srt", "foo.words.json", "foo.mp4", "bar.srt"]
    found = [p.name for p in sidecar_candidates(Path("d/foo.mp4"), names)]
    assert found == ["foo.words.json", "foo.srt", "foo.de.srt", "foo.en.srt", "foo.vtt", "foo.txt"]


def test_tagged_sidecar_of_another_media_stem_is_not_taken() -> None:
    names = ["foo.mp4", "foo.vp9.webm", "foo.vp9.srt", "foo.SRT"]
    assert [p.name for p in sidecar_candidates(Path("foo.mp4"), names, {"foo.vp9"})] == ["foo.SRT"]
    assert [p.name for p in sidecar_candidates(Path("foo.vp9.webm"), names, {"foo"})] == ["foo.vp9.srt"]


def test_a_sidecar_matching_only_up_to_case_is_taken_after_exact_ones_unless_another_media_owns_it() -> None:
    assert [p.name for p in sidecar_candidates(Path("Interview.mp4"), ["interview.srt", "interview.EN.vtt"])] == [
        "interview.srt", "interview.EN.vtt"]
    names = ["talk.srt", "Talk.words.json", "a.srt"]
    assert [p.name for p in sidecar_candidates(Path("talk.mp4"), names)] == ["talk.srt", "Talk.words.json"]
    assert sidecar_candidates(Path("A.mp4"), names, {"a"}) == []  # a.mp4 is there too: a.srt is its own


def test_sidecar_names_are_matched_exactly_never_as_globs() -> None:
    names = ["a1.srt", "ab.srt", "a[1].srt.bak", "a*.srt"]
    assert sidecar_candidates(Path("a[1].mp4"), names) == []
    assert [p.name for p in sidecar_candidates(Path("a*.mp4"), names)] == ["a*.srt"]


# -- crafted files ----------------------------------------------------------------------------
def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


SRT_MARKUP = (
    "1\n00:00:01,000 --> 00:00:02,500\n{\\an8}<i>Hello</i> <font color=\"#ff0\">there</font>\n&amp; welcome\n\n"
    "2\n00:00:03,000 --> 00:00:04,000\n<b> </b>\n\n"
    "3\n00:00:04,000 --> 00:00:05,000\n- Tom &lt;3\n\n"
)


def test_srt_markup_is_stripped_multiline_cues_joined_and_empty_cues_dropped(tmp_path: Path) -> None:
    t = read_transcript(_write(tmp_path, "a.srt", SRT_MARKUP))
    assert [(c.start, c.end, c.text) for c in t.cues] == [(1.0, 2.5, "Hello there & welcome"), (4.0, 5.0, "- Tom <3")]


def test_vtt_voice_class_and_timestamp_tags_are_stripped(tmp_path: Path) -> None:
    vtt = (
        "WEBVTT\n\nNOTE a comment\n\n"
        "intro\n00:01.000 --> 00:02.000 align:start\n<v Roger Bingham>We are <c.yellow>in</c> New&nbsp;York</v>\n\n"
        "00:02.000 --> 00:03.500\n<v.loud Esme>It's<00:02.500> <b>here</b>\n\n"
    )
    t = read_transcript(_write(tmp_path, "a.vtt", vtt))
    assert [(c.start, c.end, c.text) for c in t.cues] == [(1.0, 2.0, "We are in New York"), (2.0, 3.5, "It's here")]


def test_repeated_text_that_is_not_a_rolling_caption_stays_a_cue_of_its_own(tmp_path: Path) -> None:
    srt = "1\n00:00:01,000 --> 00:00:02,000\nNo!\n\n2\n00:00:04,000 --> 00:00:05,000\nNo!\n\n"
    assert [c.text for c in read_transcript(_write(tmp_path, "a.srt", srt)).cues] == ["No!", "No!"]


@pytest.mark.parametrize("encoding, bom", [("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"),
                                           ("utf-16-be", b"\xfe\xff")])
def test_utf8_and_utf16_with_bom_decode_to_the_same_cues(tmp_path: Path, encoding: str, bom: bytes) -> None:
    text = "1\r\n00:00:01,000 --> 00:00:02,000\r\nCafé — «déjà vu»\r\n\r\n"
    t = read_transcript(_write(tmp_path, "a.srt", bom + text.encode(encoding)))
    assert [c.text for c in t.cues] == ["Café — «déjà vu»"]


def test_cp1252_subtitles_decode_with_a_note(tmp_path: Path) -> None:
    t = read_transcript(_write(tmp_path, "a.srt", "1\n00:00:01,000 --> 00:00:02,000\nCafé “ok”\n".encode("cp1252")))
    assert t.cues[0].text == "Café “ok”" and t.encoding == "cp1252"
    assert t.notes and "a.srt" in t.notes[0] and "cp1252" in t.notes[0]


def test_bytes_no_encoding_decodes_reject_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.txt", b"caf\xe9 \x81\x8d")  # not UTF-8, and 0x81 is undefined in cp1252
    with pytest.raises(SidecarError, match=r"bad\.txt: is neither UTF-8") as err:
        read_transcript(path)
    assert err.value.reason == INVALID_TEXT


@pytest.mark.parametrize("name, text", [
    ("rev.srt", "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:05,000 --> 00:00:04,000\nbackwards\n\n"),
    ("rev.vtt", "WEBVTT\n\n00:01.000 --> 00:02.000\nok\n\n00:05.000 --> 00:04.000\nbackwards\n\n"),
])
def test_reversed_cue_times_reject_naming_the_file_and_the_cue(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(SidecarError, match=rf"{name}: cue 2 ends \(4 s\) before it starts \(5 s\)") as err:
        read_transcript(_write(tmp_path, name, text))
    assert err.value.reason == INVALID_WINDOW


@pytest.mark.parametrize("name, problem", [
    ("junk.srt", "not a valid SubRip file"),
    ("junk.vtt", "not a valid WebVTT file"),
])
def test_garbage_subtitles_reject_naming_the_file(tmp_path: Path, name: str, problem: str) -> None:
    with pytest.raises(SidecarError, match=rf"{name}: {problem}") as err:
        read_transcript(_write(tmp_path, name, "this is not\na subtitle file --> at all\n\x00\x01"))
    assert err.value.reason == INVALID_TEXT


def test_a_vtt_with_a_malformed_cue_is_rejected_not_silently_shortened(tmp_path: Path) -> None:
    text = "WEBVTT\n\n00:01.000 --> 00:02.000\nok\n\n00:03.000 --> 00:xx.000\nbroken\n\n"
    with pytest.raises(SidecarError, match=r"a\.vtt: not a valid WebVTT file"):
        read_transcript(_write(tmp_path, "a.vtt", text))


def test_empty_subtitle_file_is_an_empty_transcript(tmp_path: Path) -> None:
    t = read_transcript(_write(tmp_path, "a.srt", "\n\n"))
    assert t.timed and t.cues == [] and t.text == ""


def test_whisper_json_words_are_read_and_cues_break_after_sentence_punctuation(tmp_path: Path) -> None:
    words = [{"word": " Hello", "start": 0.0, "end": 0.4, "probability": 0.9},
             {"word": " world.", "start": 0.4, "end": 0.8},
             {"word": " Next", "start": 0.85, "end": 1.2}]
    data = {"text": "Hello world. Next", "segments": [{"id": 0, "words": words}]}
    t = read_transcript(_write(tmp_path, "a.words.json", json.dumps(data)))
    assert [w.word for w in t.words or []] == ["Hello", "world.", "Next"]
    assert [(c.start, c.end, c.text) for c in t.cues] == [(0.0, 0.8, "Hello world."), (0.85, 1.2, "Next")]


@pytest.mark.parametrize("content, problem", [
    ("{not json", r"not valid JSON"),
    ('{"foo": 1}', r"expected a list of \{word, start, end\} objects"),
    ('[{"word": "a", "start": NaN, "end": 1}]', r"word 0 start .* is not finite"),
    ('[{"word": "a", "start": 2, "end": 1}]', r"word 0 'a' ends \(1 s\) before it starts \(2 s\)"),
    ('[{"word": "a", "start": 5, "end": 6}, {"word": "b", "start": 1, "end": 2}]', r"word 1 'b' at 1 s .*out of order"),
    ('[{"word": "a", "start": 1, "end": 9}, {"word": "b", "start": 2, "end": 3}]', r"word 1 'b' at 2 s overlaps"),
    ('[{"word": "a", "start": "1e999", "end": 2}]', r"word 0 start .* too large|not finite"),
    ('[{"word": 3, "start": 1, "end": 2}]', r"word 0 is not a UTF-8 string"),
    ('[{"word": "a", "start": 9, "end": 2, "start": 1}]', r"duplicate key 'start'"),  # json would keep 1
])
def test_bad_word_timings_reject_naming_the_file_and_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    with pytest.raises(SidecarError, match=rf"a\.words\.json: .*{problem}") as err:
        read_transcript(_write(tmp_path, "a.words.json", content))
    assert err.value.reason == INVALID_WORDS
