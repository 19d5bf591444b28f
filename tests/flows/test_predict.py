"""`emoflow predict` on real media with the demo's trained runs: segments cover the media, every
segment ends as a prediction or a named failure, modalities follow the media, the store is the
cache, and a run that cannot be reproduced is refused."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from corpora.sidecars.reading import read_transcript
from flows.cli import app
from flows.predict import predict_flow
from stages.config import PipelineConfig
from stages.predict import PredictSummary, load_trained_run, reproduce_extraction
from store import FeatureStore
from store.errors import ConfigError, ManifestError, StoreError

#: legal Linux file names whose percent-quoted form is too long for a part file (30 Chinese characters:
#: 90 bytes of UTF-8, 270 quoted) and an ASCII stem of 240 characters
LONG_NAMES = ("这是一个非常好的电影我真的很喜欢它的故事和演员们的表演太精彩了"[:30], "interview_" + "x" * 230)
CLIPS = ("manifesto_audiobook.mp4", "manifesto_audiobook.srt", "nasa_webb_narration.mp4", "nasa_webb_narration.en.srt",
         "jfk_inaugural.flac", "jfk_inaugural.txt", "nasa_webb_narration.vp9_opus.webm")


def _config(store: Path, **segment: object) -> PipelineConfig:
    return PipelineConfig.model_validate({"predict": {"store": str(store), "segment": segment}})


def _folder(shared: Path, dst: Path, names: tuple[str, ...]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(shared / "clips" / name, dst / name)
    return dst


def _rows(store: Path, run: Path, video: str) -> list[dict]:
    rows = [r for r in FeatureStore.open(store).predictions(run.name).to_pylist() if r["video_id"] == video]
    return sorted(rows, key=lambda r: r["start"])


@pytest.fixture(scope="module")
def full_run(demo_run) -> Path:
    return Path(demo_run[1]["run full"])


@pytest.fixture(scope="module")
def scored(full_run: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PredictSummary]:
    """Four real media files in one folder, scored once by the full model."""
    work = tmp_path_factory.mktemp("predict")
    media = _folder(shared_data, work / "media", CLIPS)
    store = work / "store"
    return store, predict_flow([str(media)], str(full_run), _config(store), str(work / "out.csv"))


def _assert_tiles(rows: list[dict], lo: float, hi: float, slack: float) -> None:
    """Segments in time order start near ``lo``, end near ``hi``, and neither gap nor overlap by more than ``slack``."""
    assert rows[0]["start"] <= lo + slack and rows[-1]["end"] >= hi - slack
    for a, b in zip(rows, rows[1:]):
        assert b["start"] - a["end"] <= slack and a["end"] - b["start"] <= slack, (a, b)


def test_every_segment_of_every_media_gets_a_prediction_or_a_named_failure(scored, full_run) -> None:
    store, summary = scored
    assert {m.video_id for m in summary.media} == {
        "manifesto_audiobook", "nasa_webb_narration", "jfk_inaugural", "nasa_webb_narration.vp9_opus"}
    table = FeatureStore.open(store).predictions(full_run.name)
    assert table.num_rows == summary.segments > 0
    for r in table.to_pylist():
        assert (r["error"] is None) == (r["score"] is not None), r
        if r["score"] is not None:
            assert math.isfinite(r["score"]) and r["modalities"]
        assert r["run"] == full_run.name and r["end"] > r["start"]


def test_subtitle_cues_segment_the_manifesto_without_gaps_and_keep_its_text(scored, full_run) -> None:
    store, _ = scored
    rows = _rows(store, full_run, "manifesto_audiobook")
    cues = read_transcript(store.parent / "media" / "manifesto_audiobook.srt").cues
    assert len(cues) == 37 and len(rows) >= 6
    _assert_tiles(rows, cues[0].start, cues[-1].end, slack=2.0)
    assert all(r["text"] for r in rows)
    assert all(set(r["modalities"]) == {"text", "audio", "vision"} for r in rows)


def test_a_language_tagged_srt_is_found_for_its_video(scored, full_run) -> None:
    rows = _rows(scored[0], full_run, "nasa_webb_narration")
    assert rows and all(r["text"] for r in rows)


def test_audio_only_media_is_scored_without_vision(scored, full_run) -> None:
    rows = _rows(scored[0], full_run, "jfk_inaugural")
    assert rows and all("vision" not in r["modalities"] and "audio" in r["modalities"] for r in rows)


def test_a_video_without_transcript_is_cut_into_fixed_windows_without_text(scored, full_run) -> None:
    rows = _rows(scored[0], full_run, "nasa_webb_narration.vp9_opus")
    cfg = _config(Path("unused")).predict.segment
    assert len(rows) >= 3
    _assert_tiles(rows, 0.0, 13.0, slack=cfg.window)
    assert all(not r["text"] and "text" not in r["modalities"] and "vision" in r["modalities"] for r in rows)


def test_a_unimodal_head_is_null_and_out_of_the_report_where_its_modality_is_absent(scored, full_run) -> None:
    store, summary = scored
    rows = FeatureStore.open(store).predictions(full_run.name).to_pylist()
    assert any("text" not in r["modalities"] for r in rows) and any("vision" not in r["modalities"] for r in rows)
    for r in rows:
        for m in ("text", "audio", "vision"):
            assert (r[f"score_{m}"] is not None) == (m in r["modalities"]), (m, r)
    for m in summary.media:
        assert set(m.head_means) == set(m.modalities), m.media


def test_export_report_and_summary_agree_with_the_store(scored, full_run) -> None:
    store, summary = scored
    exported = pacsv.read_csv(summary.export)
    assert exported.num_rows == summary.segments
    assert Path(summary.report).read_text().count("<img") >= len(summary.media)
    assert all(m.mean_score is not None for m in summary.media)


def test_scoring_the_same_media_again_extracts_nothing(scored, full_run, tmp_path) -> None:
    store, first = scored
    media = store.parent / "media"
    again = predict_flow([str(media)], str(full_run), _config(store))
    assert again.extracted == 0
    assert again.segments == first.segments


def test_a_run_whose_extractor_changed_is_refused_naming_what_differs(full_run, tmp_path) -> None:
    copy = tmp_path / full_run.name
    shutil.copytree(full_run, copy)
    for info_path in copy.glob("seed-*/run.json"):
        info = json.loads(info_path.read_text())
        info["view_attrs"]["modalities"]["audio"]["identity"]["version"] = "0-old"
        info_path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match=r"audio: extractor 'audio.mfcc' differs.*version: '0-old' in the run"):
        reproduce_extraction(load_trained_run(copy))


def test_a_run_whose_view_records_no_extractor_for_a_modality_is_refused_naming_it(full_run, tmp_path) -> None:
    """A view written by hand or another tool has no extractor records: one ConfigError, not a KeyError."""
    copy = tmp_path / full_run.name
    shutil.copytree(full_run, copy)
    for info_path in copy.glob("seed-*/run.json"):
        info = json.loads(info_path.read_text())
        info["view_attrs"]["modalities"]["audio"] = {"feature_set": "hand-made"}
        info_path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match=r"audio: the run's view records no extractor for this modality"):
        reproduce_extraction(load_trained_run(copy))


def test_a_text_only_run_scores_a_subtitle_file_alone(demo_run, shared_data, tmp_path) -> None:
    text_run = Path(demo_run[1]["run text"])
    srt = _folder(shared_data, tmp_path / "subs", ("tears_of_steel.TOS-en.srt",)) / "tears_of_steel.TOS-en.srt"
    summary = predict_flow([str(srt)], str(text_run), _config(tmp_path / "store"))
    rows = FeatureStore.open(tmp_path / "store").predictions(text_run.name).to_pylist()
    assert summary.segments == len(rows) >= 10 and summary.failed == 0
    assert all(r["modalities"] == ["text"] and r["text"] for r in rows)
    assert sum(len(r["text"]) for r in rows) > 1000


def test_cli_predict_prints_a_summary_names_each_rejected_file_and_exports_parquet(
    full_run, shared_data, tmp_path
) -> None:
    media = _folder(shared_data, tmp_path / "media", ("nasa_webb_narration.mp4", "nasa_webb_narration.en.srt"))
    (media / "broken.mp4").write_bytes(b"")
    out = tmp_path / "preds.parquet"
    seed = next(iter(load_trained_run(full_run).seed_dirs))
    result = CliRunner().invoke(app, ["predict", str(media), "--run", str(full_run), "--out", str(out),
                                      "--store", str(tmp_path / "store"), "--seed", str(seed)])
    assert result.exit_code == 0, result.output
    assert "nasa_webb_narration" in result.output and out.exists()
    (rejected,) = [line for line in result.output.splitlines() if line.startswith("rejected:")]
    assert "broken.mp4" in rejected and "empty" in rejected and "1 rejected at ingest" in result.output


def test_cli_predict_refuses_an_unknown_seed_in_one_line(full_run, tmp_path) -> None:
    result = CliRunner().invoke(app, ["predict", str(tmp_path), "--run", str(full_run), "--seed", "999"])
    assert result.exit_code == 2 and "has no seed 999" in result.output


def test_an_empty_inbox_scores_nothing_when_allowed_and_is_an_error_otherwise(full_run, tmp_path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    summary = predict_flow([str(inbox)], str(full_run), _config(tmp_path / "store"), allow_empty=True)
    assert summary.segments == 0 and summary.extracted == 0
    with pytest.raises(ManifestError, match="no media or transcript files"):
        predict_flow([str(inbox)], str(full_run), _config(tmp_path / "store"))


def test_word_timings_cut_the_manifesto_into_timed_segments(full_run, shared_data, tmp_path) -> None:
    media = _folder(shared_data, tmp_path / "media", ("manifesto_audiobook.mp4", "manifesto_audiobook.words.json"))
    store = tmp_path / "store"
    summary = predict_flow([str(media)], str(full_run), _config(store))
    rows = _rows(store, full_run, "manifesto_audiobook")
    words = read_transcript(media / "manifesto_audiobook.words.json").words or []
    assert summary.failed == 0 and len(rows) >= 6
    assert all(b["start"] >= a["end"] - 1e-6 for a, b in zip(rows, rows[1:]))  # no overlaps
    for w in words:  # every spoken word is inside exactly one segment (silences may stay uncovered)
        mid = (w.start + w.end) / 2
        assert sum(r["start"] <= mid <= r["end"] for r in rows) == 1, w
    clips = FeatureStore.open(store).clips().to_pylist()
    assert all(c["words"] and c["words"][-1]["end"] <= c["duration"] + 0.25 for c in clips)
    assert all(set(r["modalities"]) == {"text", "audio", "vision"} for r in rows)


def test_a_run_whose_text_model_folder_is_gone_is_refused(full_run, tmp_path) -> None:
    copy = tmp_path / full_run.name
    shutil.copytree(full_run, copy)
    for info_path in copy.glob("seed-*/run.json"):
        info = json.loads(info_path.read_text())
        info["view_attrs"]["modalities"]["text"]["config"]["model"] = str(tmp_path / "no-such-model")
        info_path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match=r"cannot be reproduced on this machine: text: extractor 'text.bert'"):
        reproduce_extraction(load_trained_run(copy))


def test_a_run_keeps_its_normalisation_statistics_when_its_training_store_is_gone(full_run, tmp_path) -> None:
    from store.views import open_view

    copy = tmp_path / full_run.name
    shutil.copytree(full_run, copy)
    for info_path in copy.glob("seed-*/run.json"):
        info = json.loads(info_path.read_text())
        view = open_view(info["store"], info["view"])
        info["store"] = str(tmp_path / "moved-away")
        info_path.write_text(json.dumps(info))
    trained = load_trained_run(copy)
    for m in ("text", "audio", "vision"):
        np.testing.assert_array_equal(trained.stats[m][0], view.group()[f"{m}/mean"][...])
        np.testing.assert_array_equal(trained.stats[m][1], view.group()[f"{m}/std"][...])


def test_media_with_long_non_ascii_or_ascii_names_are_saved_beside_the_others_and_rescored_in_place(
    full_run, shared_data, tmp_path, caplog
) -> None:
    media = _folder(shared_data, tmp_path / "media", ("nasa_webb_narration.mp4", "nasa_webb_narration.en.srt"))
    for name in LONG_NAMES:
        shutil.copy(media / "nasa_webb_narration.mp4", media / f"{name}.mp4")
    store = tmp_path / "store"
    with caplog.at_level(logging.INFO, logger="prefect.flow_runs"):
        summary = predict_flow([str(media)], str(full_run), _config(store), str(tmp_path / "out.csv"))
    assert "segments from 3 media file(s)" in caplog.text  # the files in the folder, not the one path given
    videos = {"nasa_webb_narration", *LONG_NAMES}
    assert {m.video_id for m in summary.media} == videos and not summary.unsaved
    assert {r["video_id"] for r in FeatureStore.open(store).predictions(full_run.name).to_pylist()} == videos
    assert set(pacsv.read_csv(summary.export).column("video_id").to_pylist()) == videos
    assert Path(summary.report).read_text().count("<img") >= 3
    parts = sorted((store / "predictions").rglob("*.parquet"))
    predict_flow([str(media)], str(full_run), _config(store))
    assert sorted((store / "predictions").rglob("*.parquet")) == parts  # the same files, overwritten


def test_a_part_that_cannot_be_written_is_named_and_loses_no_other_output(
    full_run, shared_data, tmp_path, monkeypatch
) -> None:
    media = _folder(shared_data, tmp_path / "media", ("nasa_webb_narration.mp4", "nasa_webb_narration.en.srt"))
    shutil.copy(media / "nasa_webb_narration.mp4", media / "blocked.mp4")
    write = FeatureStore.write_predictions

    def full_disk_for_blocked(self: FeatureStore, run: str, video_id: str, table) -> str:
        if video_id == "blocked":
            raise StoreError(f"cannot write {self.url}/predictions/…/blocked.parquet: No space left on device")
        return write(self, run, video_id, table)

    monkeypatch.setattr(FeatureStore, "write_predictions", full_disk_for_blocked)
    store = tmp_path / "store"
    summary = predict_flow([str(media)], str(full_run), _config(store), str(tmp_path / "out.csv"))
    assert [Path(m).name for m in summary.unsaved] == ["blocked.mp4"]
    assert "blocked.mp4: predictions NOT saved in the store (cannot write" in summary.message
    stored = FeatureStore.open(store).predictions(full_run.name)
    assert set(stored.column("video_id").to_pylist()) == {"nasa_webb_narration"}
    assert set(pacsv.read_csv(summary.export).column("video_id").to_pylist()) == {"nasa_webb_narration", "blocked"}
    report = Path(summary.report).read_text()
    assert "blocked.mp4" in report and "nasa_webb_narration.mp4" in report

    import flows.predict  # the CLI's exit code for that summary: not 0, so a script notices

    monkeypatch.setattr(flows.predict, "predict_flow", lambda *args, **kwargs: summary)
    res = CliRunner().invoke(app, ["predict", str(media), "--run", str(full_run), "--store", str(store)])
    assert res.exit_code == 1 and "NOT saved" in res.output, res.output


def test_same_named_videos_scored_in_two_runs_keep_their_own_ids_and_predictions(full_run, tmp_path) -> None:
    from corpora.synth import write_clip

    days = {}
    for day, seconds, v, text in (("day1", 4.0, 1.5, "day one was wonderful"),
                                  ("day2", 6.0, -1.5, "day two was awful")):
        video = tmp_path / day / "IMG_0001.mp4"  # cameras and phones reuse file names
        video.parent.mkdir()
        write_clip(video, seconds=seconds, v=v)
        video.with_suffix(".srt").write_text(f"1\n00:00:00,500 --> 00:00:03,500\n{text}\n")
        days[day] = video
    store = tmp_path / "store"
    predict_flow([str(days["day1"])], str(full_run), _config(store))
    first = _rows(store, full_run, "IMG_0001")
    second = predict_flow([str(days["day2"])], str(full_run), _config(store))
    assert [m.video_id for m in second.media] == ["IMG_0001~2"]
    assert _rows(store, full_run, "IMG_0001") == first  # day 1's predictions are not replaced
    assert [r["text"] for r in _rows(store, full_run, "IMG_0001~2")] == ["day two was awful"]
    parts = sorted((store / "predictions").rglob("*.parquet"))
    again = predict_flow([str(tmp_path / "day2"), str(tmp_path / "day1")], str(full_run), _config(store))
    assert {m.video_id: Path(m.media).parent.name for m in again.media} == {"IMG_0001": "day1", "IMG_0001~2": "day2"}
    assert sorted((store / "predictions").rglob("*.parquet")) == parts and again.extracted == 0
    assert {v: Path(s.path).parent.name for v, s in FeatureStore.open(store).media_sources().items()} == {
        "IMG_0001": "day1", "IMG_0001~2": "day2"}


def test_a_bad_out_name_is_refused_before_any_work(full_run, shared_data, tmp_path) -> None:
    media = _folder(shared_data, tmp_path / "media", ("jfk_inaugural.flac", "jfk_inaugural.txt"))
    store = tmp_path / "store"
    result = CliRunner().invoke(app, ["predict", str(media), "--run", str(full_run), "--out", str(tmp_path / "p.txt"),
                                      "--store", str(store)])
    assert result.exit_code == 2 and "p.txt: use a .csv or .parquet file name" in result.output, result.output
    with pytest.raises(ConfigError, match="p.xlsx: use a .csv or .parquet file name"):
        predict_flow([str(media)], str(full_run), _config(store), str(tmp_path / "p.xlsx"))
    assert not store.exists()  # nothing ingested, extracted or scored
