"""The ``media`` ingest layout: new media files, folders and lone transcripts become unlabeled
``predict`` clips, one per segment; every input file ends as clips or as a named reject row."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from corpora.fields import normalise_id
from corpora.ingest import IngestResult, ingest, ingest_media, validate
from corpora.layouts.media import PREDICT_SPLIT, MediaPlan, plan_media
from corpora.rows import (
    EMPTY_MEDIA,
    INVALID_LABEL,
    INVALID_SPLIT,
    INVALID_TEXT,
    INVALID_WINDOW,
    INVALID_WORDS,
    MISSING_FILE,
    UNREADABLE_MEDIA,
    WINDOW_PAST_END,
    RawClip,
    Reject,
)
from corpora.segments import SegmentConfig
from corpora.sidecars.reading import read_transcript
from corpora.synth import write_clip
from stages.config import DatasetConfig
from store.errors import ManifestError
from tests.helpers.paths import SHARED_DATA

CLIPS = SHARED_DATA / "clips"
needs_clips = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"shared real media absent at {CLIPS}")
SRT = "1\n00:00:00,500 --> 00:00:02,000\nhello there\n\n2\n00:00:02,200 --> 00:00:04,500\n<i>general</i> kenobi\n\n"


def _copy(dst: Path, *names: str) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(CLIPS / name, dst / name)
    return dst


def _by_video(result: IngestResult) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in result.clips.to_pylist():
        out.setdefault(row["video_id"], []).append(row)
    return out


def _rejects(result: IngestResult) -> list[tuple[str, str, str]]:
    return [(r["clip_id"], r["reason"], r["message"]) for r in result.rejects.to_pylist()]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> IngestResult:
    """The real clips a user would drop into one folder: video + .srt, video + tagged .srt, audio +
    .txt, a video with no transcript, a subtitle file with no media."""
    if not CLIPS.is_dir():
        pytest.skip(f"shared real media absent at {CLIPS}")
    folder = _copy(tmp_path_factory.mktemp("real") / "in", "manifesto_audiobook.mp4", "manifesto_audiobook.srt",
                   "nasa_webb_narration.mp4", "nasa_webb_narration.en.srt", "jfk_inaugural.flac",
                   "jfk_inaugural.txt", "nasa_webb_narration.vp9_opus.webm", "tears_of_steel.TOS-en.srt")
    return ingest(folder, layout="media")


# -- real media -------------------------------------------------------------------------------
def test_every_real_input_file_ends_as_unlabeled_predict_clips(real: IngestResult) -> None:
    assert real.layout == "media" and real.n_rejects == 0, _rejects(real)
    videos = _by_video(real)
    assert set(videos) == {"manifesto_audiobook", "nasa_webb_narration", "jfk_inaugural",
                           "nasa_webb_narration.vp9_opus", "tears_of_steel.TOS-en"}
    assert set(real.sources) == set(videos) and real.sources["jfk_inaugural"].path.endswith("jfk_inaugural.flac")
    for vid, rows in videos.items():
        assert [r["clip_id"] for r in rows] == [f"{vid}__{i:04d}" for i in range(len(rows))]
        for r in rows:
            assert r["label"] is None and r["split"] == PREDICT_SPLIT
            assert normalise_id(r["clip_id"], "clip_id", "invalid_id") == r["clip_id"]
            assert r["media_uri"] is None or (Path(r["media_uri"]).is_absolute() and Path(r["media_uri"]).is_file())
            assert r["duration"] > 0


@needs_clips
def test_manifesto_srt_cues_become_segments_holding_all_37_cues_in_order(real: IngestResult) -> None:
    rows = _by_video(real)["manifesto_audiobook"]
    cues = read_transcript(CLIPS / "manifesto_audiobook.srt").cues
    assert " ".join(r["text"] for r in rows) == " ".join(c.text for c in cues)
    assert all(3.0 <= r["duration"] <= 12.0 for r in rows) and rows[-1]["end"] <= 88.1
    assert all(r["has_video"] and r["has_audio"] for r in rows)
    for a, b in zip(rows, rows[1:]):
        assert a["end"] <= b["start"] and b["start"] - a["end"] <= 2.0  # no cue gap here is longer than max_gap


@needs_clips
def test_language_tagged_srt_gives_the_nasa_video_its_text(real: IngestResult) -> None:
    rows = _by_video(real)["nasa_webb_narration"]
    assert "Webb space telescope" in " ".join(r["text"] for r in rows) and all(r["text"] for r in rows)


@needs_clips
def test_audio_with_an_untimed_transcript_is_one_clip_with_the_whole_text(real: IngestResult) -> None:
    [row] = _by_video(real)["jfk_inaugural"]
    assert row["text"] == (CLIPS / "jfk_inaugural.txt").read_text().strip()
    assert row["start"] == 0 and row["duration"] == pytest.approx(11.0, abs=0.1)
    assert row["has_audio"] and not row["has_video"]


@needs_clips
def test_a_video_without_transcript_is_cut_into_fixed_windows_without_text(real: IngestResult) -> None:
    rows = _by_video(real)["nasa_webb_narration.vp9_opus"]
    assert [(r["start"], r["end"]) for r in rows][:2] == [(0.0, 5.0), (2.5, 7.5)]
    assert rows[-1]["end"] == pytest.approx(13.0, abs=0.1) and all(r["text"] == "" for r in rows)


@needs_clips
def test_a_subtitle_file_without_media_becomes_text_only_clips_with_all_76_cues(real: IngestResult) -> None:
    rows = _by_video(real)["tears_of_steel.TOS-en"]
    assert len(rows) >= 10 and all(r["media_uri"] is None and r["text"] for r in rows)
    cues = read_transcript(CLIPS / "tears_of_steel.TOS-en.srt").cues
    assert len(cues) == 76 and " ".join(r["text"] for r in rows) == " ".join(c.text for c in cues)
    assert all(r["duration"] == pytest.approx(r["end"] - r["start"]) for r in rows)


@needs_clips
def test_word_timings_sidecar_wins_and_gives_each_clip_its_words_from_the_clip_start(tmp_path: Path) -> None:
    folder = _copy(tmp_path, "manifesto_audiobook.mp4", "manifesto_audiobook.srt", "manifesto_audiobook.words.json")
    result = ingest_media([folder])
    rows = result.clips.to_pylist()
    assert result.n_rejects == 0 and rows and all(r["words"] for r in rows)
    assert sum(len(r["words"]) for r in rows) == 210
    for r in rows:
        assert all(0 <= w["start"] <= w["end"] <= r["duration"] + 1e-9 for w in r["words"])
        assert r["text"] == " ".join(w["word"] for w in r["words"])


@needs_clips
def test_several_paths_in_different_folders_share_the_common_parent_as_root(tmp_path: Path) -> None:
    a = _copy(tmp_path / "a" / "deep", "jfk_inaugural.flac")
    b = _copy(tmp_path / "b", "nasa_webb_narration.mp4", "nasa_webb_narration.en.srt")
    plan = plan_media([a / "jfk_inaugural.flac", b])
    assert plan.root == Path(os.path.realpath(tmp_path))
    assert [i.rel for i in plan.inputs] == [os.path.join("a", "deep", "jfk_inaugural.flac"),
                                           os.path.join("b", "nasa_webb_narration.mp4")]
    result = ingest_media([a / "jfk_inaugural.flac", b])
    assert result.n_rejects == 0 and set(_by_video(result)) == {"jfk_inaugural", "nasa_webb_narration"}


# -- crafted inputs ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    write_clip(path, seconds=6.0)
    return path


def test_broken_and_empty_media_are_one_named_reject_each_and_the_rest_goes_on(tmp_path: Path, clip_mp4: Path) -> None:
    shutil.copy(clip_mp4, tmp_path / "good.mp4")
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(4096))
    (tmp_path / "garbage.srt").write_text(SRT)  # consumed by its (broken) media, not read alone
    (tmp_path / "empty.wav").write_bytes(b"")
    result = ingest_media([tmp_path])
    rejects = {cid: (reason, msg) for cid, reason, msg in _rejects(result)}
    assert set(rejects) == {"garbage", "empty"}
    assert rejects["garbage"][0] == UNREADABLE_MEDIA and "garbage.mp4" in rejects["garbage"][1]
    assert rejects["empty"] == (EMPTY_MEDIA, f"{tmp_path / 'empty.wav'}: media file is empty (0 bytes)")
    assert set(_by_video(result)) == {"good"}


@pytest.mark.parametrize("name, text, reason, problem", [
    ("good.srt", "1\n00:00:03,000 --> 00:00:01,000\nbackwards\n", INVALID_WINDOW, "cue 1 ends (1 s) before it starts"),
    ("good.vtt", "not a webvtt file", INVALID_TEXT, "not a valid WebVTT file"),
    ("good.words.json", "[{\"word\": \"x\"}]", INVALID_WORDS, "word 0 is not an object with word/start/end"),
])
def test_a_bad_sidecar_rejects_its_media_naming_the_file_and_other_media_go_on(
    tmp_path: Path, clip_mp4: Path, name: str, text: str, reason: str, problem: str
) -> None:
    shutil.copy(clip_mp4, tmp_path / "good.mp4")
    shutil.copy(clip_mp4, tmp_path / "other.mp4")
    (tmp_path / name).write_text(text)
    result = ingest_media([tmp_path])
    [(cid, got, message)] = _rejects(result)
    assert (cid, got) == ("good", reason) and f"{tmp_path / name}: " in message and problem in message
    assert set(_by_video(result)) == {"other"}


def test_srt_cues_on_generated_media_become_clips_with_markup_stripped(tmp_path: Path, clip_mp4: Path) -> None:
    shutil.copy(clip_mp4, tmp_path / "talk.mp4")
    (tmp_path / "talk.srt").write_bytes(b"\xef\xbb\xbf" + SRT.encode())
    [row] = ingest(tmp_path / "talk.mp4", layout="media").clips.to_pylist()  # one file, by name
    assert (row["clip_id"], row["start"], row["end"]) == ("talk__0000", 0.5, 4.5)
    assert row["text"] == "hello there general kenobi"
    assert row["words"] is None and row["media_uri"] == os.path.realpath(tmp_path / "talk.mp4")


def test_cues_past_the_media_end_give_a_window_past_end_reject_not_lost_text(tmp_path: Path, clip_mp4: Path) -> None:
    shutil.copy(clip_mp4, tmp_path / "talk.mp4")  # 6 s
    (tmp_path / "talk.srt").write_text(SRT + "3\n00:00:20,000 --> 00:00:24,000\nwrong video?\n")
    result = ingest_media([tmp_path])
    assert [r["text"] for r in result.clips.to_pylist()] == ["hello there general kenobi"]
    [(cid, reason, message)] = _rejects(result)
    assert (cid, reason) == ("talk__0001", WINDOW_PAST_END) and "20-24 s is past the end" in message


def test_a_folder_is_scanned_recursively_sorted_skipping_hidden_and_other_files(tmp_path: Path, clip_mp4: Path) -> None:
    for rel in ("b/z.mp4", "a/y.mp4", "x.mp4", ".hidden/h.mp4", "a/.h.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip_mp4, tmp_path / rel)
    (tmp_path / "notes.md").write_text("not an input")
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8")
    plan = plan_media([tmp_path])
    assert [i.rel for i in plan.inputs] == ["x.mp4", os.path.join("a", "y.mp4"), os.path.join("b", "z.mp4")]


def test_same_stems_in_two_folders_get_distinct_video_ids(tmp_path: Path, clip_mp4: Path) -> None:
    for rel in ("s1/ep1.mp4", "s2/ep1.mp4", "s2/EP1.m4v"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip_mp4, tmp_path / rel)
    result = ingest_media([tmp_path])
    assert result.n_rejects == 0
    # ids equal up to case are one id; names sort by code point (EP1.m4v before ep1.mp4)
    assert set(_by_video(result)) == {"ep1", "EP1~2", "ep1~3"}
    assert result.sources["ep1~3"].path == os.path.realpath(tmp_path / "s2" / "ep1.mp4")


def _write(path: Path, data: str) -> Path:
    """A file holding ``data``: planning reads no media, it only hashes the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    return path


def _ids(plan: MediaPlan) -> dict[Path, str]:
    return {i.path: i.video_id for i in plan.inputs}


def test_a_file_keeps_its_held_id_and_a_new_same_named_file_never_takes_it(tmp_path: Path) -> None:
    day1 = _write(tmp_path / "day1" / "IMG_0001.mp4", "first video")
    day2 = _write(tmp_path / "day2" / "IMG_0001.mp4", "another video")
    held = plan_media([day1]).sources  # what the predict store records after day 1
    assert list(held) == ["IMG_0001"]
    second = plan_media([day2], held)
    assert _ids(second) == {day2: "IMG_0001~2"}
    held |= second.sources
    day1.write_text("first video, re-encoded")  # changed in place: the same source, rescored in place
    for paths in ([day1, day2], [day2, day1], [tmp_path]):
        assert _ids(plan_media(paths, held)) == {day1: "IMG_0001", day2: "IMG_0001~2"}
    missing = tmp_path / "day3" / "img_0001.mp4"
    assert _ids(plan_media([missing], held)) == {missing: "img_0001~3"}  # ids compare up to case


def test_argument_order_never_decides_which_same_named_file_gets_the_bare_id(tmp_path: Path) -> None:
    a = _write(tmp_path / "b" / "clip.mp4", "one")
    b = _write(tmp_path / "a" / "clip.mp4", "two")
    top = _write(tmp_path / "clip.srt", "1\n00:00:00,000 --> 00:00:01,000\nhi\n")  # a folder's files come first
    want = {top: "clip", b: "clip~2", a: "clip~3"}
    assert _ids(plan_media([a, b, top])) == _ids(plan_media([top, b, a])) == want
    assert _ids(plan_media([tmp_path])) == want


def test_a_moved_file_keeps_its_id_by_content_and_a_copy_beside_the_original_does_not(tmp_path: Path) -> None:
    talk = _write(tmp_path / "inbox" / "talk.mp4", "the talk")
    held = plan_media([talk]).sources
    copy = tmp_path / "backup" / "talk.mp4"
    copy.parent.mkdir()
    shutil.copy(talk, copy)
    scored = plan_media([copy], held)
    assert _ids(scored) == {copy: "talk~2"}  # the original is still there
    held |= scored.sources
    moved = tmp_path / "moved" / "2024" / "talk.mp4"
    moved.parent.mkdir(parents=True)
    talk.rename(moved)
    plan = plan_media([moved, copy], held)
    assert _ids(plan) == {moved: "talk", copy: "talk~2"}
    assert plan.sources["talk"].path == os.path.realpath(moved)


def test_a_file_reached_twice_is_read_once_and_a_symlink_out_of_the_folder_is_followed(
    tmp_path: Path, clip_mp4: Path
) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(clip_mp4, tmp_path / "in" / "a.mp4")
    os.symlink(clip_mp4, tmp_path / "in" / "linked.mp4")  # points outside the given folder
    result = ingest_media([tmp_path / "in", tmp_path / "in" / "a.mp4"])
    assert result.n_rejects == 0, _rejects(result)
    assert set(_by_video(result)) == {"a", "linked"}
    assert {r["media_uri"] for r in _by_video(result)["linked"]} == {os.path.realpath(clip_mp4)}


def test_a_broken_symlink_or_fifo_in_a_scanned_folder_is_a_named_reject_not_skipped(
    tmp_path: Path, clip_mp4: Path
) -> None:
    shutil.copy(clip_mp4, tmp_path / "ok.mp4")
    os.symlink(tmp_path / "deleted.mp4", tmp_path / "gone.mp4")
    os.mkfifo(tmp_path / "pipe.mp4")
    result = ingest_media([tmp_path])
    assert set(_by_video(result)) == {"ok"}
    assert {(cid, reason, message.rsplit(": ", 1)[-1]) for cid, reason, message in _rejects(result)} == {
        ("gone", MISSING_FILE, "media file does not exist"), ("pipe", MISSING_FILE, "media file is not a file")}


def test_missing_paths_and_empty_lone_transcripts_are_named_rejects(tmp_path: Path) -> None:
    (tmp_path / "empty.srt").write_text("")
    (tmp_path / "blank.txt").write_text("  \n")
    result = ingest_media([tmp_path / "nope.mp4", tmp_path / "empty.srt", tmp_path / "blank.txt"])
    assert result.n_clips == 0
    assert {(cid, reason) for cid, reason, _ in _rejects(result)} == {
        ("nope", MISSING_FILE), ("empty", INVALID_TEXT), ("blank", INVALID_TEXT)}


def test_a_lone_plain_text_file_is_one_text_only_clip(tmp_path: Path) -> None:
    (tmp_path / "speech.txt").write_text("I have a dream\nthat one day\n")
    [row] = ingest_media([tmp_path]).clips.to_pylist()
    assert (row["clip_id"], row["text"], row["start"], row["end"], row["media_uri"]) == (
        "speech__0000", "I have a dream that one day", None, None, None)


def test_segment_settings_reach_the_cut(tmp_path: Path, clip_mp4: Path) -> None:
    shutil.copy(clip_mp4, tmp_path / "v.mp4")
    rows = ingest_media([tmp_path], SegmentConfig(window=2, hop=2)).clips.to_pylist()
    assert [(r["start"], r["end"]) for r in rows] == [(0, 2), (2, 4), (4, 6)]


def test_nothing_to_read_is_a_manifest_error(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(ManifestError, match="no media or transcript files"):
        ingest_media([tmp_path])


def test_only_the_media_layout_accepts_unlabeled_predict_rows(tmp_path: Path) -> None:
    unlabeled = RawClip(source="m:1", clip_id="c", text="hi", split=PREDICT_SPLIT)
    assert validate(unlabeled, tmp_path, predict=True)["label"] is None
    with pytest.raises(Reject) as err:
        validate(unlabeled, tmp_path)  # manifest, MMSA, MOSI: labels are required, as before
    assert err.value.reason == INVALID_LABEL
    with pytest.raises(Reject) as err:
        validate(RawClip(source="m:1", clip_id="c", text="hi", label="1", split=PREDICT_SPLIT), tmp_path)
    assert err.value.reason == INVALID_SPLIT
    with pytest.raises(Reject) as err:
        validate(RawClip(source="m:1", clip_id="c", text="hi", split="train"), tmp_path, predict=True)
    assert err.value.reason == INVALID_SPLIT


def test_the_pipeline_config_accepts_the_media_layout() -> None:
    assert DatasetConfig(layout="media").layout == "media"


def test_windows_over_a_lone_subtitle_file_keep_only_windows_with_text(tmp_path: Path) -> None:
    (tmp_path / "subs.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nfirst\n\n"
                                       "2\n00:00:30,000 --> 00:00:31,000\nlast\n\n")
    rows = ingest_media([tmp_path], SegmentConfig(mode="windows", window=4, hop=4)).clips.to_pylist()
    assert [(r["clip_id"], r["start"], r["end"], r["text"]) for r in rows] == [
        ("subs__0000", 0, 4, "first"), ("subs__0001", 28, 31, "last")]
