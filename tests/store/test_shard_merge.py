"""Shard merging (store.shards): compaction copies small shards into large Zarr-sharded ones so a
store holds far fewer files than clips, while every row reads back bit for bit, verify and vacuum
keep working, and readers of the previous snapshot keep their shards for vacuum's grace period."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import store.shards as shards_mod
from features.extractors.base import FeatureResult
from store import FeatureStore
from store.featureset import FeatureSet
from store.shards import retired_records
from store.verify import migrate, vacuum, verify
from tests.helpers.features import feature_result


def _text_like(rows: int, seed: int) -> FeatureResult:
    """A text-set clip: 768-d rows plus the three per-row extras the text extractor commits."""
    feat = feature_result(rows, dim=768, seed=seed)
    feat.extras |= {"input_ids": np.arange(rows, dtype=np.int64), "attention_mask": np.ones(rows, np.int8)}
    return feat


def _small_batches(path: Path, batches: int, rows: int) -> tuple[FeatureStore, FeatureSet]:
    """A store whose set ``x-1`` (dim 4) holds ``batches`` one-clip shards c0… of ``rows`` rows."""
    store = FeatureStore.open(path, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1, "dim": 4})
    for b in range(batches):
        fset.commit([(f"c{b}", f"fp{b}", feature_result(rows, seed=b), 1.0)])
    return store, fset


def _files(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def _snapshot(fset: FeatureSet) -> dict[str, tuple]:
    """What every clip reads as: values, times, extras, meta, absence. A clip of no rows holds no extra
    values whichever arrays its shard has, so its (empty) extras are left out."""
    out = {}
    for clip, row in fset.rows().items():
        f = fset.read_row(row)
        extras = {k: v.tobytes() for k, v in f.extras.items()} if row.length else {}
        out[clip] = (f.values.tobytes(), f.times.tobytes(), extras, f.meta, f.absent, row.checksum)
    return out


def test_merging_brings_a_text_set_far_below_one_file_per_clip_and_reads_the_same(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, create=True)
    fset = store.ensure_feature_set("text-1", {"identity": 1, "dim": 768})
    clips = 0
    for _ in range(40):  # the extract flow's batches of 8
        fset.commit([(f"c{clips + k}", f"fp{clips + k}", _text_like(20, clips + k), 1.0) for k in range(8)])
        clips += 8
    set_dir = tmp_path / "features" / "text-1"
    before, files_before = _snapshot(fset), _files(set_dir / "shards")
    assert files_before / clips > 1.3  # 11 files per batch of 8

    result = fset.compact()
    assert result is not None and result.shards_retired == 40
    assert vacuum(store, grace_seconds=3600) == []  # retired just now: kept for readers of the old snapshot
    assert len(vacuum(store, grace_seconds=0)) == 40
    after = store.feature_set("text-1")
    after._forget()
    assert _snapshot(after) == before and verify(store) == []
    files = _files(set_dir)  # shards, index, consolidated file, group metadata: everything
    assert files / clips < 0.1, files
    assert after.lookup("c17").values.tobytes() == before["c17"][0]


def test_a_reader_of_the_old_snapshot_keeps_reading_until_the_grace_period_ends(tmp_path: Path) -> None:
    store, fset = _small_batches(tmp_path, 4, 3)
    reader = FeatureStore.open(tmp_path).feature_set("x-1")
    old_rows = reader.rows()  # loaded before the compaction
    assert FeatureStore.open(tmp_path).feature_set("x-1").compact() is not None
    vacuum(store)  # default grace: the retired shards stay
    for clip, row in old_rows.items():
        np.testing.assert_array_equal(reader.read_row(row).values, feature_result(3, seed=int(clip[1:])).values)


def test_a_link_published_after_the_merge_keeps_its_old_shard_alive(tmp_path: Path) -> None:
    """A linker that read the rows before the compaction points the new clip at the merged-away shard."""
    store, fset = _small_batches(tmp_path, 3, 2)
    linker = FeatureStore.open(tmp_path).feature_set("x-1")
    linker.fingerprint_rows()  # its snapshot: rows pointing at the small shards
    old_shard = linker.rows()["c1"].shard
    assert FeatureStore.open(tmp_path).feature_set("x-1").compact() is not None
    linker._rows = None  # keep the loaded parts, as a long-running writer would
    assert linker.link([("twin", "fp1", 1.0)]) == ["twin"]
    removed = vacuum(store, grace_seconds=0)
    assert ("x-1", old_shard) not in removed and len(removed) == 2
    fresh = FeatureStore.open(tmp_path).feature_set("x-1")
    assert fresh.rows()["twin"].shard == old_shard
    np.testing.assert_array_equal(fresh.read("twin").values, fresh.read("c1").values)
    assert verify(store) == []


def test_merged_shards_are_bounded_and_large_shards_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards_mod, "SMALL_SHARD_BYTES", 20 * (4 * 4 + 16))  # < 20 rows of dim 4 is small
    monkeypatch.setattr(shards_mod, "MERGED_SHARD_BYTES", 12 * (4 * 4 + 16))  # a merged shard ends past 12 rows
    store = FeatureStore.open(tmp_path, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1, "dim": 4})
    big = fset.commit([("big", "fpbig", feature_result(25), 1.0)])
    for b in range(9):  # 9 small shards of 4 rows: buckets of 3 (12 rows) each
        fset.commit([(f"c{b}", f"fp{b}", feature_result(4, seed=b), 1.0)])
    before = _snapshot(fset)
    result = fset.compact()
    assert result is not None and result.shards_retired == 9
    rows = FeatureStore.open(tmp_path).feature_set("x-1").rows()
    assert rows["big"].shard == big
    merged = {r.shard for c, r in rows.items() if c != "big"}
    assert len(merged) == 3 and big not in merged
    assert sorted(rows[f"c{b}"].offset for b in range(9)) == [0, 0, 0, 4, 4, 4, 8, 8, 8]
    vacuum(store, grace_seconds=0)
    assert _snapshot(FeatureStore.open(tmp_path).feature_set("x-1")) == before


def test_a_damaged_shard_is_left_unmerged_and_still_reported(tmp_path: Path) -> None:
    store, fset = _small_batches(tmp_path, 4, 3)
    bad = fset.rows()["c2"].shard
    (tmp_path / "features" / "x-1" / "shards" / bad / "values" / "zarr.json").write_text("{not json")
    result = fset.compact()
    assert result is not None and result.shards_retired == 3
    rows = FeatureStore.open(tmp_path).feature_set("x-1").rows()
    assert rows["c2"].shard == bad and len({r.shard for r in rows.values()}) == 2
    assert [p.clip_id for p in verify(store)] == ["c2"]


def test_merged_away_shards_are_retired_before_the_manifest_names_the_merge(tmp_path: Path) -> None:
    """The retirement record is written before the commit point: vacuum never lacks it."""
    store = FeatureStore.open(tmp_path, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1, "dim": 4})
    shards = [fset.commit([(f"c{b}", f"fp{b}", feature_result(2, seed=b), 1.0)]) for b in range(3)]
    fset.compact()
    assert sorted(s for names in retired_records(fset).values() for s in names) == sorted(filter(None, shards))
    vacuum(store, grace_seconds=0)
    assert retired_records(fset) == {}  # records past the grace period go with their shards


clip_spec = st.tuples(st.integers(0, 6), st.booleans())  # rows (0: an absence), extras or not
batches = st.lists(st.lists(clip_spec, min_size=1, max_size=4), min_size=1, max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=batches)
def test_any_mix_of_batches_reads_the_same_after_merging(tmp_path_factory: pytest.TempPathFactory, spec) -> None:
    """Batches with and without extras and batches of absences only: each clip reads as committed."""
    path = tmp_path_factory.mktemp("merge")
    store = FeatureStore.open(path, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1, "dim": 4})
    n = 0
    for batch in spec:
        items = []
        for rows, with_extras in batch:
            if rows == 0:
                feat = FeatureResult.empty(4, "no audio")
            else:
                feat = feature_result(rows, seed=n)
                if not with_extras:
                    feat.extras = {}
            items.append((f"c{n}", f"fp{n}", feat, 1.0))
            n += 1
        # a batch mixing clips with and without an extra cannot be stored: commit them apart
        for group in (
            [i for i in items if i[2].extras or i[2].absent],
            [i for i in items if not i[2].extras and not i[2].absent],
        ):
            if group:
                fset.commit(group)
    before = _snapshot(fset)
    fset.compact()
    vacuum(store, grace_seconds=0)
    after = FeatureStore.open(path).feature_set("x-1")
    assert _snapshot(after) == before and verify(store) == []


def test_migrate_merges_the_shards_of_a_store_compacted_before_merging_existed(tmp_path: Path) -> None:
    store, fset = _small_batches(tmp_path, 5, 3)
    assert fset.compact(merge_shards=False) is not None  # the index as the previous version left it
    before = _snapshot(fset)
    assert fset.compact() is None  # nothing new to fold in: a plain compaction leaves the shards
    (result,) = migrate(store)
    assert result.parts == 0 and result.shards_retired == 5
    vacuum(store, grace_seconds=0)
    after = FeatureStore.open(tmp_path).feature_set("x-1")
    assert _snapshot(after) == before and len({r.shard for r in after.rows().values()}) == 1
    assert migrate(store) == []  # one merged shard left: nothing more to do
