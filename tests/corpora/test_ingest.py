"""Ingest: three layouts into one clip table; every bad row rejected with a named reason."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from corpora.ingest import ingest
from corpora.synth import generate_dataset, write_clip
from store.errors import ManifestError

HEADER = ["clip_id", "media", "start", "end", "text", "words", "label", "split"]


def _manifest(root: Path, rows: list[list[object]], header: list[str] = HEADER, raw: bytes | None = None) -> Path:
    path = root / "manifest.csv"
    if raw is not None:
        path.write_bytes(raw)
        return path
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input")
    (root / "m").mkdir()
    write_clip(root / "m" / "good.mp4", seconds=3.0)
    write_clip(root / "m" / "audio_only.m4a", seconds=2.0, video=False)
    write_clip(root / "m" / "video_only.mp4", seconds=2.0, audio=False)
    (root / "m" / "empty.mp4").write_bytes(b"")
    (root / "m" / "garbage.mp4").write_bytes(os.urandom(4096))
    outside = tmp_path_factory.mktemp("outside")
    write_clip(outside / "secret.mp4", seconds=1.0)
    os.symlink(outside / "secret.mp4", root / "m" / "link_out.mp4")
    return root


@pytest.mark.parametrize("layout", ["manifest", "mmsa", "mosi"])
def test_each_layout_ingests_every_generated_clip_with_labels_splits_and_media(tmp_path: Path, layout: str) -> None:
    data = generate_dataset(tmp_path, n_clips=6, seed=3, layout=layout)
    result = ingest(tmp_path)
    assert result.layout == layout and result.n_rejects == 0
    rows = {r["clip_id"]: r for r in result.clips.to_pylist()}
    assert set(rows) == {c.clip_id for c in data.clips}
    for clip in data.clips:
        row = rows[clip.clip_id]
        assert row["label"] == pytest.approx(clip.label, abs=1e-3)
        assert row["split"] == clip.split
        assert row["text"] == clip.text
        assert row["has_video"] and row["has_audio"]
        assert row["duration"] == pytest.approx(clip.duration, abs=0.08)
        assert Path(row["media_uri"]).is_file() and len(row["media_fingerprint"]) == 64
    if layout == "mosi":  # segments of a long video: windows and per-segment word timings
        assert all(r["start"] is not None and r["end"] > r["start"] for r in rows.values())
        assert all(r["words"] for r in rows.values())
    if layout == "mmsa":
        assert all(r["label_T"] is not None for r in rows.values())


def test_jsonl_manifest_gives_the_same_clip_table_as_csv(demo_data) -> None:
    from_csv = ingest(demo_data.root / "manifest.csv").clips
    from_jsonl = ingest(demo_data.root / "manifest.jsonl").clips
    assert from_csv.equals(from_jsonl)


def test_mosi_text_csv_from_shared_data_is_text_only_and_valid(shared_data: Path) -> None:
    result = ingest(shared_data / "mosi" / "mosi_text_trainval.csv")
    assert result.layout == "mmsa"
    assert result.n_clips + result.n_rejects == 1513
    assert result.n_clips >= 1510
    clips = result.clips.to_pylist()
    assert not any(c["has_video"] or c["has_audio"] or c["media_uri"] for c in clips)
    assert {c["split"] for c in clips} == {"train", "valid"}
    assert all(c["clip_id"].startswith(c["video_id"] + "_") for c in clips)
    # the one real row with start == end is rejected with its reason, not dropped silently
    assert set(result.rejects.column("reason").to_pylist()) <= {"invalid_window"}


def test_every_bad_row_is_rejected_with_its_reason_and_good_rows_survive(media_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(media_root, root, symlinks=True)
    words = json.dumps([{"word": "fine", "start": 0.1, "end": 0.5}])
    rows = [
        ["good", "m/good.mp4", "", "", "a fine film", words, 1.0, "train"],
        ["audio_only", "m/audio_only.m4a", "", "", "sounds good", "", -1.0, "valid"],
        ["video_only", "m/video_only.mp4", "", "", "looks good", "", 0.5, "test"],
        ["text_only", "", "", "", "no media at all", "", 0.0, "train"],
        ["missing", "m/nope.mp4", "", "", "x", "", 0, "train"],
        ["zero_bytes", "m/empty.mp4", "", "", "x", "", 0, "train"],
        ["garbage", "m/garbage.mp4", "", "", "x", "", 0, "train"],
        ["dotdot", "../outside/secret.mp4", "", "", "x", "", 0, "train"],
        ["absolute", str(media_root / "m" / "good.mp4"), "", "", "x", "", 0, "train"],
        ["symlink", "m/link_out.mp4", "", "", "x", "", 0, "train"],
        ["good", "m/good.mp4", "", "", "duplicate id", "", 0, "train"],
        ["nan_label", "m/good.mp4", "", "", "x", "", "nan", "train"],
        ["big_label", "m/good.mp4", "", "", "x", "", 3.5, "train"],
        ["text_label", "m/good.mp4", "", "", "x", "", "positive", "train"],
        ["backwards", "m/good.mp4", 2.0, 1.0, "x", "", 0, "train"],
        ["past_end", "m/good.mp4", 1.0, 9.0, "x", "", 0, "train"],
        ["bad_words", "m/good.mp4", "", "", "x", "[{\"word\": 1}]", 0, "train"],
        ["bad_split", "m/good.mp4", "", "", "x", "", 0, "holdout"],
    ]
    _manifest(root, rows)
    with (root / "manifest.csv").open("ab") as f:  # a row whose transcript is not UTF-8
        f.write(b"latin1,m/good.mp4,,,caf\xe9 cr\xe8me,,1.0,train\n")
    result = ingest(root)
    reasons = {r["clip_id"]: r["reason"] for r in result.rejects.to_pylist() if r["clip_id"] != "good"}
    assert reasons == {
        "missing": "missing_file",
        "zero_bytes": "empty_media",
        "garbage": "unreadable_media",
        "dotdot": "path_escapes_root",
        "absolute": "path_escapes_root",
        "symlink": "path_escapes_root",
        "nan_label": "invalid_label",
        "big_label": "invalid_label",
        "text_label": "invalid_label",
        "backwards": "invalid_window",
        "past_end": "window_past_end",
        "bad_words": "invalid_words",
        "bad_split": "invalid_split",
        "latin1": "invalid_text_encoding",
    }
    dup = [r for r in result.rejects.to_pylist() if r["clip_id"] == "good"]
    assert [d["reason"] for d in dup] == ["duplicate_clip_id"]
    assert all(r["clip_id"] in r["message"] for r in result.rejects.to_pylist())  # messages name the clip
    clips = {r["clip_id"]: r for r in result.clips.to_pylist()}
    assert set(clips) == {"good", "audio_only", "video_only", "text_only"}
    assert (clips["audio_only"]["has_audio"], clips["audio_only"]["has_video"]) == (True, False)
    assert (clips["video_only"]["has_audio"], clips["video_only"]["has_video"]) == (False, True)
    assert clips["text_only"]["media_uri"] is None and clips["text_only"]["duration"] > 0
    assert clips["good"]["words"] == [{"word": "fine", "start": 0.1, "end": 0.5}]
    assert result.n_clips + result.n_rejects == len(rows) + 1


def test_manifest_with_missing_columns_names_them(tmp_path: Path) -> None:
    _manifest(tmp_path, [["a", "x.mp4", "hi", 1.0]], header=["clip_id", "media", "text", "label"])
    with pytest.raises(ManifestError, match=r"missing columns \['split'\]"):
        ingest(tmp_path / "manifest.csv")
