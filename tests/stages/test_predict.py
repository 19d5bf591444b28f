"""Where predictions go: every run and video name, whatever its length or script, becomes a part file
that can be written, is listed again, and is the same file on a rerun (``store.featurestore.quote_name``)."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from stages.predict import export_predictions, export_target
from store import FeatureStore, schema
from store.errors import ConfigError, StoreError
from store.featurestore import MEDIA_SOURCES, NAME_LIMIT, MediaSource, quote_name

CHINESE_TITLE = "这是一个非常好的电影我真的很喜欢它的故事和演员们的表演太精彩了"[:30]  # 90 bytes of UTF-8
TEMP_PREFIX = len(".tmp-") + 32 + len("-")  # store.fs.atomic_path's temporary name before the target's


def _part(video: str, run: str, score: float) -> pa.Table:
    row = {c: None for c in schema.PREDICTIONS.names} | {
        "media": f"/in/{video}.mp4", "video_id": video, "segment_id": f"{video}__0000", "start": 0.0, "end": 2.0,
        "modalities": ["audio"], "score": score, "score_std": 0.0, "run": run,
        "predicted_at": datetime(2024, 1, 2, tzinfo=timezone.utc)}
    return pa.Table.from_pylist([row], schema=schema.PREDICTIONS)


@given(st.text(min_size=1, max_size=400))
@example("\udcff-run")  # a Linux directory name that is not UTF-8, as os.fsdecode gives it
def test_every_name_becomes_one_ascii_component_that_fits_a_temp_file_name(name: str) -> None:
    component = quote_name(name)
    assert component == quote_name(name)  # deterministic: a rerun writes the same file
    assert component.isascii() and "/" not in component and not component.startswith(".")
    assert TEMP_PREFIX + len(component) + len(".parquet") <= 255
    quoted = quote(name, safe="", errors="surrogatepass")
    if len(quoted) <= NAME_LIMIT and not name.startswith("."):
        assert component == quoted  # the part file a name that fitted had before: a rerun overwrites it


def test_long_names_are_cut_readably_and_stay_apart() -> None:
    long_ascii = "interview_" + "x" * 300
    names = [long_ascii, long_ascii + "2", long_ascii.upper(), CHINESE_TITLE, CHINESE_TITLE + "！"]
    components = [quote_name(n) for n in names]
    assert len(set(components)) == len(names)
    assert all(len(c) <= NAME_LIMIT for c in components)
    assert components[0].startswith("interview_xxx") and components[3].startswith(quote(CHINESE_TITLE[:10]))
    # a whole name that looks like another's cut form still gets a component of its own
    assert quote_name(components[0]) != components[0]


def test_predictions_of_a_long_non_ascii_name_are_written_read_back_and_overwritten_in_place(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path / "store", create=True)
    run, videos = CHINESE_TITLE + "-run", [CHINESE_TITLE, "v" * 240, "ordinary"]
    for i, video in enumerate(videos):
        store.write_predictions(run, video, _part(video, run, float(i)))
    parts = sorted((tmp_path / "store" / "predictions").rglob("*.parquet"))
    store.write_predictions(run, CHINESE_TITLE, _part(CHINESE_TITLE, run, 7.0))  # a rerun of the same file
    assert sorted((tmp_path / "store" / "predictions").rglob("*.parquet")) == parts and len(parts) == 3
    rows = {r["video_id"]: r["score"] for r in store.predictions(run).to_pylist()}
    assert rows == {CHINESE_TITLE: 7.0, "v" * 240: 1.0, "ordinary": 2.0}


def test_a_video_whose_name_starts_with_a_dot_is_not_hidden_from_the_listing(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path / "store", create=True)
    store.write_predictions("r", ".hidden_take", _part(".hidden_take", "r", 1.5))
    assert store.predictions("r").column("video_id").to_pylist() == [".hidden_take"]


def test_the_media_source_record_keeps_every_run_and_a_store_from_before_it_holds_the_ids_its_parts_name(
    tmp_path: Path,
) -> None:
    store = FeatureStore.open(tmp_path / "store", create=True)
    for run, video in (("run-a", "IMG_0001"), ("run-b", "talk")):  # scored by two runs of the old code,
        store.write_predictions(run, video, _part(video, run, 0.5))
    (tmp_path / "store" / MEDIA_SOURCES).write_text(json.dumps({"talk": "/in/talk.mp4"}))  # ...which kept the last
    assert store.media_sources() == {"IMG_0001": MediaSource("/in/IMG_0001.mp4"), "talk": MediaSource("/in/talk.mp4")}
    new = {"clip": MediaSource("/in/clip.mp4", "ab" * 32)}
    store.write_media_sources(store.media_sources() | new)
    assert store.media_sources() == {"IMG_0001": MediaSource("/in/IMG_0001.mp4"),
                                     "talk": MediaSource("/in/talk.mp4"), **new}


def test_a_damaged_media_source_record_is_a_store_error_naming_the_file(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path / "store", create=True)
    (tmp_path / "store" / MEDIA_SOURCES).write_text(json.dumps({"talk": 3}))
    with pytest.raises(StoreError, match=rf"{MEDIA_SOURCES}: video 'talk' has no source path"):
        store.media_sources()


def test_an_export_name_is_checked_before_any_work_and_the_check_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--out .*preds\.txt: use a \.csv or \.parquet file name"):
        export_target(tmp_path / "preds.txt")
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(ConfigError, match=r"taken is not a folder"):
        export_target(tmp_path / "taken" / "deeper" / "preds.csv")
    assert export_target(tmp_path / "new" / "deeper" / "preds.csv") == tmp_path / "new" / "deeper" / "preds.csv"
    assert not (tmp_path / "new").exists()  # --dry-run writes nothing
    assert export_predictions(_part("v", "r", 1.0), tmp_path / "new" / "deeper" / "preds.csv").exists()


def test_an_export_that_cannot_be_written_is_a_store_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import pyarrow.parquet as pq

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "write_table", full_disk)  # what a full disk does to the writer
    out = tmp_path / "preds.parquet"
    with pytest.raises(StoreError, match=rf"--out {re.escape(str(out))}: cannot write the predictions there: "
                                         r".*No space left on device"):
        export_predictions(_part("v", "r", 1.0), out)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_device_as_out_is_refused_before_any_work_not_written_to(tmp_path: Path) -> None:
    device = tmp_path / "preds.parquet"
    device.symlink_to("/dev/full")
    with pytest.raises(ConfigError, match=rf"--out {re.escape(str(device))}: exists and is not a regular file"):
        export_target(device)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny score run of one seed (``<root>/run/seed-0``)."""
    from tests.helpers.training import one_torch_thread, tiny_config, write_tiny_view
    from training.train import train_on_view

    root = tmp_path_factory.mktemp("tiny_run")
    write_tiny_view(root / "store")
    with one_torch_thread():
        train_on_view(root / "store", "tiny", tiny_config(max_epochs=1), root / "run" / "seed-0")
    return root / "run"


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_checkpoint_is_refused_when_the_run_is_read_before_any_media_is_ingested(
    tiny_run: Path, tmp_path: Path, damage: str
) -> None:
    import shutil

    from stages.predict import load_trained_run
    from training.runs import CHECKPOINT

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    checkpoint = run / "seed-0" / CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2] if damage == "truncated" else b"")
    with pytest.raises(StoreError, match=rf"^{re.escape(str(checkpoint))}: unreadable checkpoint \(SafetensorError"):
        load_trained_run(run)  # what `predict` and `predict --dry-run` call first


def test_a_run_with_two_directories_of_one_seed_is_refused_naming_both(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    from stages.predict import load_trained_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copytree(run / "seed-0", run / "seed-7")
    with pytest.raises(ConfigError, match=r"run/seed-0 and .*run/seed-7 both hold seed 0"):
        load_trained_run(run)
