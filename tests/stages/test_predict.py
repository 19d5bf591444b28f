"""Where predictions go: every run and video name, whatever its length or script, becomes a part file
that can be written, is listed again, and is the same file on a rerun (``store.featurestore.quote_name``)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
from hypothesis import example, given
from hypothesis import strategies as st

from store import FeatureStore, schema
from store.featurestore import NAME_LIMIT, quote_name

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
