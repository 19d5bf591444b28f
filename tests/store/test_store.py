"""The store: commit/read round trips on local and fsspec URLs, fingerprints, verify, vacuum."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from features.extractors.base import FeatureResult
from store import FeatureStore, IndexRow, StoreConflictError, StoreError, fingerprint
from store.fingerprint import (
    clip_fingerprint,
    feature_fingerprint,
    files_sha256,
    hash_obj,
    media_fingerprint,
)
from store.verify import orphan_shards, vacuum, verify
from tests.helpers.features import feature_result


@pytest.mark.parametrize("url", ["local", "memory://emoflow-test-store"])
def test_commit_then_read_returns_identical_arrays_on_local_and_fsspec_stores(tmp_path: Path, url: str) -> None:
    store = FeatureStore.open(tmp_path / "s" if url == "local" else url, create=True)
    fset = store.ensure_feature_set("audio.mfcc-1234", {"identity": {"a": 1}, "dim": 4, "extractor": "audio.mfcc"})
    a, b = feature_result(7, seed=1), feature_result(3, seed=2)
    fset.commit([("a", "fp-a", a, 1.5), ("b", "fp-b", b, 0.5)])
    fset.commit([("c", "fp-c", FeatureResult.empty(4, "no audio stream"), 2.0)])

    reread = FeatureStore.open(store.url).feature_set("audio.mfcc-1234")
    got = reread.read("a")
    np.testing.assert_array_equal(got.values, a.values)
    np.testing.assert_array_equal(got.times, a.times)
    np.testing.assert_array_equal(got.extras["word_index"], np.arange(7))
    assert got.meta == {"stream": 1} and got.fingerprint == "fp-a"
    np.testing.assert_array_equal(reread.read("b").values, b.values)
    c = reread.read("c")
    assert c.absent == "no audio stream" and c.values.shape == (0, 4)
    assert reread.committed() == {"a": "fp-a", "b": "fp-b", "c": "fp-c"}
    assert verify(reread.store) == []


def test_recommitting_a_clip_supersedes_the_old_row_for_readers(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1})
    fset.commit([("a", "old", feature_result(2, seed=1), 1.0)])
    new = feature_result(5, seed=2)
    fset.commit([("a", "new", new, 1.0)])
    fresh = store.feature_set("x-1")
    assert fresh.index().num_rows == 1
    np.testing.assert_array_equal(fresh.read("a").values, new.values)


def test_rows_are_typed_and_read_row_and_the_shard_range_reader_equal_per_clip_reads(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1, "dim": 4})
    s1 = fset.commit([("a", "fa", feature_result(5, seed=1), 1.5), ("b", "fb", feature_result(3, seed=2), 0.5)])
    s2 = fset.commit([("c", "fc", feature_result(4, seed=3), 2.0),
                      ("d", "fd", FeatureResult.empty(4, "no audio"), 1.0)])
    fset.commit([("a", "fa2", feature_result(2, seed=4), 1.0)])  # supersedes a's first row

    fresh = FeatureStore.open(tmp_path).feature_set("x-1")
    rows = fresh.rows()
    assert sorted(rows) == ["a", "b", "c", "d"] and all(isinstance(r, IndexRow) for r in rows.values())
    b = rows["b"]
    assert (b.shard, b.offset, b.length, b.fingerprint, b.meta, b.duration) == (s1, 5, 3, "fb", {"stream": 1}, 0.5)
    assert rows["d"].absent == "no audio" and rows["d"].length == 0 and rows["c"].shard == s2
    assert rows["a"].fingerprint == "fa2" and b.record()["meta"] == '{"stream": 1}'

    for clip, row in rows.items():
        want, got = fresh.read(clip), fresh.read_row(row)
        for x, y in (
            (got.values, want.values), (got.times, want.times), (got.extras["word_index"], want.extras["word_index"])
        ):
            np.testing.assert_array_equal(x, y)
        assert (got.clip_id, got.meta, got.absent) == (want.clip_id, want.meta, want.absent)
        assert got.fingerprint == want.fingerprint

    bulk = list(fresh.iter_features())
    assert sorted(r.clip_id for r, _ in bulk) == ["a", "b", "c", "d"]
    for row, feat in bulk:
        want = fresh.read(row.clip_id)
        np.testing.assert_array_equal(feat.values, want.values)
        np.testing.assert_array_equal(feat.times, want.times)
        np.testing.assert_array_equal(feat.extras["word_index"], want.extras["word_index"])
        assert feat.clip_id == row.clip_id and feat.absent == want.absent and feat.meta == want.meta

    # a chosen subset, shard by shard in id order, with only the extras asked for
    picked = list(fresh.iter_features([rows["c"], rows["b"]], extras=("word_index", "no_such_extra")))
    assert [r.clip_id for r, _ in picked] == [r.clip_id for r in sorted([rows["c"], rows["b"]], key=lambda r: r.shard)]
    assert all(set(f.extras) == {"word_index"} for _, f in picked)
    assert all(f.extras == {} for _, f in fresh.iter_features([rows["b"]], extras=()))
    assert sorted(fresh.shard_ids()) == sorted({s1, s2, rows["a"].shard})


def test_feature_set_refuses_a_different_extractor_identity(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, create=True)
    store.ensure_feature_set("x-1", {"identity": {"config": 1}})
    with pytest.raises(StoreConflictError, match="refusing to mix"):
        store.ensure_feature_set("x-1", {"identity": {"config": 2}})


def test_opening_a_missing_store_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no emoflow store here"):
        FeatureStore.open(tmp_path / "nothing")


def test_unwritable_index_path_raises_a_store_error_naming_it_and_commits_nothing(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path / "s", create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1})
    (tmp_path / "s" / "features" / "x-1" / "index").write_text("not a directory")  # works even as root
    with pytest.raises(StoreError, match=r"cannot write .*features/x-1/index/"):
        fset.commit([("a", "fp", feature_result(2), 1.0)])
    (tmp_path / "s" / "features" / "x-1" / "index").unlink()
    assert store.feature_set("x-1").index().num_rows == 0


# -- fingerprints ----------------------------------------------------------------------------
CLIP = {"clip_id": "c1", "media_fingerprint": "m" * 64, "start": 1.0, "end": 4.0, "duration": 3.0,
        "text": "a fine film", "words": None, "label": 1.2, "split": "train"}
IDENTITY = {"name": "audio.mfcc", "version": "1", "config": {"n_mfcc": 40}, "model": {}}


def test_fingerprints_are_stable_across_processes() -> None:
    code = ("from store.fingerprint import feature_fingerprint, clip_fingerprint;"
            f"print(feature_fingerprint({CLIP!r}, 'audio', {IDENTITY!r}), clip_fingerprint({CLIP!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [feature_fingerprint(CLIP, "audio", IDENTITY), clip_fingerprint(CLIP)]


@pytest.mark.parametrize(
    ("modality", "change", "changes"),
    [
        ("audio", {"media_fingerprint": "n" * 64}, True),
        ("audio", {"start": 1.5}, True),
        ("audio", {"end": 3.5}, True),
        ("audio", {"text": "an awful film"}, False),  # audio does not read the transcript
        ("vision", {"media_fingerprint": "n" * 64}, True),
        ("text", {"text": "an awful film"}, True),
        ("text", {"words": [{"word": "a", "start": 0.0, "end": 0.2}]}, True),
        ("text", {"media_fingerprint": "n" * 64}, False),  # text does not read the media
        ("text", {"label": -2.0}, False),  # labels never change features
    ],
)
def test_feature_fingerprint_changes_exactly_with_the_inputs_its_modality_reads(
    modality: str, change: dict, changes: bool
) -> None:
    before = feature_fingerprint(CLIP, modality, IDENTITY)
    assert (feature_fingerprint({**CLIP, **change}, modality, IDENTITY) != before) is changes


def test_feature_fingerprint_changes_with_extractor_config_and_version() -> None:
    base = feature_fingerprint(CLIP, "audio", IDENTITY)
    assert feature_fingerprint(CLIP, "audio", {**IDENTITY, "config": {"n_mfcc": 20}}) != base
    assert feature_fingerprint(CLIP, "audio", {**IDENTITY, "version": "2"}) != base
    assert hash_obj({"b": 1, "a": 2.0000000001}) == hash_obj({"a": 2.0, "b": 1})  # canonical


def test_media_fingerprint_is_a_content_hash_that_follows_changes(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"hello")
    first = media_fingerprint(f)
    assert media_fingerprint(f) == first
    g = tmp_path / "copy.bin"
    g.write_bytes(b"hello")
    assert media_fingerprint(g) == first  # content, not path
    f.write_bytes(b"hellO")
    os.utime(f, ns=(1, 1))
    assert media_fingerprint(f) != first


def test_file_hashes_are_kept_on_disk_so_a_new_process_does_not_read_the_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"w" * 1000)
    digest = files_sha256([f])
    fingerprint._files_sha256.cache_clear()  # what a new process starts with

    def no_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was read again")

    monkeypatch.setattr(hashlib, "file_digest", no_read)
    assert files_sha256([f]) == digest
    f.write_bytes(b"v" * 1000)  # same size: the new mtime alone says the cached digest is stale
    os.utime(f, ns=(2, 2))
    monkeypatch.undo()
    assert files_sha256([f]) == hashlib.sha256(b"v" * 1000).hexdigest() != digest


def test_clip_fingerprint_changes_with_label_and_split() -> None:
    assert clip_fingerprint({**CLIP, "label": 0.0}) != clip_fingerprint(CLIP)
    assert clip_fingerprint({**CLIP, "split": "test"}) != clip_fingerprint(CLIP)


# -- verify and vacuum ---------------------------------------------------------------------
def test_verify_reports_a_corrupted_shard_per_clip(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1, "dim": 4})
    shard = fset.commit([("a", "fa", feature_result(6, seed=3), 1.0), ("b", "fb", feature_result(4, seed=4), 1.0)])
    chunk_dir = tmp_path / "features" / "x-1" / "shards" / shard / "values" / "c"
    chunk = next(p for p in chunk_dir.rglob("*") if p.is_file())
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])  # a torn write
    problems = verify(store)
    assert {p.clip_id for p in problems} == {"a", "b"}
    assert all(p.feature_set == "x-1" and p.problem for p in problems)  # unreadable, non-finite or checksum


def test_verify_catches_a_shard_overwritten_with_other_values(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1, "dim": 4})
    shard = fset.commit([("a", "fa", feature_result(6, seed=3), 1.0), ("b", "fb", feature_result(4, seed=4), 1.0)])
    import zarr

    arr = zarr.open_array(tmp_path / "features" / "x-1" / "shards" / shard / "values", mode="r+")
    arr[7, 0] = 42.0  # a row of clip b
    assert [(p.clip_id, p.problem.split(" (")[0]) for p in verify(store)] == [("b", "checksum mismatch")]


def test_verify_reports_non_finite_values(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, create=True)
    bad = feature_result(3)
    bad.values[1, 2] = np.nan
    fset = store.ensure_feature_set("x-1", {"identity": 1})
    fset.commit([("a", "fa", bad, 1.0), ("b", "fb", feature_result(2), 1.0)])
    assert [(p.clip_id, p.problem) for p in verify(store)] == [("a", "non-finite values")]


def test_vacuum_removes_orphans_but_spares_recent_ones_and_committed_shards(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1})
    kept = fset.commit([("a", "fa", feature_result(2), 1.0)])
    fset.write_shard("orphan-1", np.zeros((2, 4), np.float32), np.zeros((2, 2)), {}, 2)
    assert orphan_shards(store, grace_seconds=3600) == []  # a writer may still be busy with it
    assert vacuum(store, grace_seconds=0) == [("x-1", "orphan-1")]
    assert os.listdir(tmp_path / "features" / "x-1" / "shards") == [kept]
    assert verify(store) == []


# -- clips sharing one extraction (identical inputs) ---------------------------------------------
def test_link_serves_a_shared_shard_range_under_a_new_clip_id_through_vacuum_and_verify(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1, "dim": 4})
    a = feature_result(6, seed=3)
    shard = fset.commit([("a", "fa", a, 1.0), ("b", "fb", feature_result(4, seed=4), 1.0)])
    fset.commit([("c", "fc", FeatureResult.empty(4, "no audio stream"), 2.0)])
    store.record_failures([{"clip_id": "a2", "feature_set": "x-1", "fingerprint": "fa", "stage": "extract"},
                           {"clip_id": "x", "feature_set": "x-1", "fingerprint": "fa", "stage": "extract"}])
    assert sorted(store.failures().column("clip_id").to_pylist()) == ["a2", "x"]  # "fa" under "a" serves neither

    assert fset.link([("a2", "fa", 1.0), ("c2", "fc", 2.0), ("z", "f-unknown", 1.0)]) == ["a2", "c2"]
    fresh = FeatureStore.open(tmp_path).feature_set("x-1")
    got, orig = fresh.read("a2"), fresh.read("a")
    assert got.clip_id == "a2" and got.fingerprint == "fa" and got.meta == orig.meta
    np.testing.assert_array_equal(got.values, a.values)
    np.testing.assert_array_equal(got.times, a.times)
    np.testing.assert_array_equal(got.extras["word_index"], orig.extras["word_index"])
    assert fresh.read("c2").absent == "no audio stream"
    assert fresh.committed() == {"a": "fa", "b": "fb", "c": "fc", "a2": "fa", "c2": "fc"}
    assert store.failures().column("clip_id").to_pylist() == ["x"]  # a2 is now committed for "fa"

    # no new shard; the shared one is referenced twice and survives vacuum; verify checks both rows
    shards = sorted(os.listdir(tmp_path / "features" / "x-1" / "shards"))
    assert shard in shards and len(shards) == 2
    assert vacuum(store, grace_seconds=0) == []
    assert sorted(os.listdir(tmp_path / "features" / "x-1" / "shards")) == shards
    assert verify(store) == []
    import zarr

    zarr.open_array(tmp_path / "features" / "x-1" / "shards" / shard / "values", mode="r+")[0, 0] = 42.0
    assert sorted(p.clip_id for p in verify(store)) == ["a", "a2"]


def test_run_records_written_before_a_column_was_added_stay_readable(tmp_path: Path) -> None:
    from store import schema

    store = FeatureStore.open(tmp_path, create=True)
    old = pa.schema([f for f in schema.RUNS if f.name != "clips_linked"])
    store.fs.write_parquet("runs/0-old.parquet", pa.Table.from_pylist([{"run_id": "r0", "clips_done": 3}], schema=old))
    store.record_run({"run_id": "r1", "clips_done": 1, "clips_linked": 2})
    assert [(r["run_id"], r["clips_done"], r["clips_linked"]) for r in store.runs().to_pylist()] == [
        ("r0", 3, None), ("r1", 1, 2)]


def test_files_sha256_hashes_contents_in_order_and_names_when_asked(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.bin"
    a.write_bytes(b"{}")
    b.write_bytes(b"\x00" * 3_000_000)  # several read buffers
    assert files_sha256([b]) == hashlib.sha256(b.read_bytes()).hexdigest() == media_fingerprint(b)
    named = hashlib.sha256(b"a.json\0{}" + b"b.bin\0" + b.read_bytes()).hexdigest()
    assert files_sha256([a, b], named=True) == named  # the text model's identity, byte for byte
    b.write_bytes(b"changed")
    assert files_sha256([b]) == hashlib.sha256(b"changed").hexdigest()  # a new size is a new cache key
