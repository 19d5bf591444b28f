"""A damaged store is named, never a library traceback or silent wrong numbers: a corrupt store
description, clip table, index file or view is a one-line error for the commands and a finding for
`store verify`; a lost index manifest is found, refused by vacuum and restored by compact; features
whose chunk is gone fail the bulk readers instead of reading back as zeros."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

import store.index as index_mod
from flows.cli import app
from store import FeatureStore, StoreError
from store.featureset import FeatureSet
from store.verify import compact, vacuum, verify
from store.views import open_view
from tests.helpers.features import feature_result
from tests.helpers.training import write_tiny_view

ENV = {"COLUMNS": "250"}


def _store(tmp_path: Path, batches: int = 3) -> tuple[FeatureStore, FeatureSet]:
    store = FeatureStore.open(tmp_path, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1, "dim": 4, "modality": "text"})
    for b in range(batches):
        fset.commit([(f"c{2 * b + k}", f"fp{2 * b + k}", feature_result(3, seed=2 * b + k), 1.0) for k in range(2)])
    return store, fset


def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args), env=ENV)
    return res.exit_code, res.output


def _index(tmp_path: Path) -> Path:
    return tmp_path / "features" / "x-1" / "index"


@pytest.mark.parametrize("damage", ["truncated part", "manifest of the wrong shape", "truncated consolidated file"])
def test_a_damaged_index_file_is_named_by_every_command_and_found_by_verify(tmp_path: Path, damage: str) -> None:
    store, fset = _store(tmp_path)
    if damage == "truncated part":
        bad = next(_index(tmp_path).glob("*.parquet"))
        bad.write_bytes(bad.read_bytes()[:100])
    else:
        fset.compact()
        bad = (_index(tmp_path) / "manifest.json" if damage == "manifest of the wrong shape"
               else next((tmp_path / "features" / "x-1" / "consolidated").glob("*.parquet")))
        bad.write_bytes(b"[1, 2]" if bad.suffix == ".json" else bad.read_bytes()[:100])
    with pytest.raises(StoreError, match=f"{bad.name}: unreadable"):
        FeatureStore.open(tmp_path).feature_set("x-1").index()
    [problem] = verify(FeatureStore.open(tmp_path))
    assert problem.feature_set == "x-1" and "index unreadable" in problem.problem and bad.name in problem.problem
    code, out = _cli("store", "ls", str(tmp_path))
    assert code == 2 and out.splitlines()[-1].startswith("error: ") and bad.name in out, out


@pytest.mark.parametrize("content", [b"{", b"[]"], ids=["not json", "not an object"])
def test_a_damaged_store_description_is_a_one_line_error(tmp_path: Path, content: bytes) -> None:
    _store(tmp_path, batches=1)
    (tmp_path / "store.json").write_bytes(content)
    code, out = _cli("store", "verify", str(tmp_path))
    assert code == 2 and out.startswith("error: ") and "store.json: unreadable store description" in out, out


@pytest.mark.parametrize("table", ["clips.parquet", "rejects.parquet"])
def test_a_damaged_clip_or_reject_table_is_found_by_verify_and_named_by_ls(tmp_path: Path, table: str) -> None:
    store, _ = _store(tmp_path, batches=1)
    store.write_clips(pa.table({"clip_id": ["c0"], "split": ["train"]}))
    store.write_rejects(pa.table({"source": ["m.csv:2"], "clip_id": ["x"], "reason": ["r"], "message": ["m"]}))
    path = tmp_path / table
    path.write_bytes(path.read_bytes()[:200])
    problems = verify(FeatureStore.open(tmp_path))
    assert [p.feature_set for p in problems] == ["(store)"] and table in problems[0].problem, problems
    code, out = _cli("store", "ls", str(tmp_path))
    assert code == 2 and out.splitlines()[-1].startswith("error: ") and table in out, out


def test_a_lost_manifest_is_found_refused_by_vacuum_and_restored_by_compact(tmp_path: Path) -> None:
    store, fset = _store(tmp_path)
    fset.compact()  # the parts are folded into a consolidated file and deleted
    before = FeatureStore.open(tmp_path).feature_set("x-1").rows()
    (_index(tmp_path) / "manifest.json").unlink()
    late = ("c9", "fp9", feature_result(2, seed=9), 1.0)
    FeatureStore.open(tmp_path).feature_set("x-1").commit([late])  # a commit after the loss
    assert set(FeatureStore.open(tmp_path).feature_set("x-1").rows()) == {"c9"}  # what readers see now

    [problem] = verify(FeatureStore.open(tmp_path))
    assert problem.feature_set == "x-1" and "index manifest lost" in problem.problem
    assert "6 committed rows" in problem.problem
    with pytest.raises(StoreError, match="refusing to vacuum"):
        vacuum(FeatureStore.open(tmp_path), grace_seconds=0)
    assert any((tmp_path / "features" / "x-1" / "shards").iterdir())

    assert [r.parts for r in compact(FeatureStore.open(tmp_path))] == [1]  # c9's part, folded in after restoring
    after = FeatureStore.open(tmp_path).feature_set("x-1").rows()
    assert set(after) == set(before) | {"c9"}
    assert all((after[c].fingerprint, after[c].checksum) == (before[c].fingerprint, before[c].checksum) for c in before)
    assert verify(FeatureStore.open(tmp_path)) == []
    vacuum(FeatureStore.open(tmp_path), grace_seconds=0)
    assert set(FeatureStore.open(tmp_path).feature_set("x-1").rows()) == set(before) | {"c9"}
    assert verify(FeatureStore.open(tmp_path)) == []


def test_a_crashed_first_compactions_file_is_not_taken_for_a_lost_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, fset = _store(tmp_path)

    def killed_before_the_manifest(step: str) -> None:
        if step == "consolidated":
            raise RuntimeError("killed")

    monkeypatch.setattr(index_mod, "checkpoint", killed_before_the_manifest)
    with pytest.raises(RuntimeError):
        fset.compact()
    monkeypatch.undo()
    assert any((tmp_path / "features" / "x-1" / "consolidated").iterdir()) and fset.index_files.manifest() is None
    assert fset.index_files.stranded() == {} and verify(store) == []
    vacuum(store, grace_seconds=0)  # removes the unnamed file, as before
    assert not any((tmp_path / "features" / "x-1" / "consolidated").iterdir())
    assert sorted(FeatureStore.open(tmp_path).feature_set("x-1").rows()) == [f"c{i}" for i in range(6)]


def test_a_feature_set_folder_without_its_group_document_is_found_by_verify(tmp_path: Path) -> None:
    _store(tmp_path, batches=1)
    (tmp_path / "features" / "x-1" / "zarr.json").unlink()
    [problem] = verify(FeatureStore.open(tmp_path))
    assert problem.feature_set == "x-1" and "zarr.json is missing" in problem.problem
    assert vacuum(FeatureStore.open(tmp_path), grace_seconds=0) == []
    assert any((tmp_path / "features" / "x-1" / "shards").iterdir())  # nothing of it was deleted


def test_features_whose_chunk_was_deleted_fail_the_bulk_readers_instead_of_reading_as_zeros(tmp_path: Path) -> None:
    _, fset = _store(tmp_path)
    shard = fset.rows()["c3"].shard
    (tmp_path / "features" / "x-1" / "shards" / shard / "values" / "c" / "0" / "0").unlink()
    fresh = FeatureStore.open(tmp_path).feature_set("x-1")
    with pytest.raises(StoreError, match=r"clip 'c[23]': stored features do not match their checksum"):
        list(fresh.iter_features())
    assert {p.clip_id for p in verify(FeatureStore.open(tmp_path))} == {"c2", "c3"}
    intact = [r for c, r in fresh.rows().items() if c not in ("c2", "c3")]
    assert sorted(r.clip_id for r, _ in fresh.iter_features(intact)) == ["c0", "c1", "c4", "c5"]


def test_a_damaged_view_is_a_named_error_and_a_verify_finding(tmp_path: Path) -> None:
    store, _ = _store(tmp_path, batches=1)
    write_tiny_view(tmp_path, "tiny")
    assert verify(store) == []
    shard = next((tmp_path / "aligned" / "tiny" / "audio" / "values" / "c").rglob("*"))
    while shard.is_dir():
        shard = next(shard.iterdir())
    shard.write_bytes(shard.read_bytes()[: len(shard.read_bytes()) // 2])
    problems = verify(FeatureStore.open(tmp_path))
    assert [(p.feature_set, "audio/values" in p.problem) for p in problems] == [("view tiny", True)], problems
    with pytest.raises(StoreError, match="aligned view 'tiny'"):
        open_view(store, "tiny").read("audio/values")
    (tmp_path / "aligned" / "tiny" / "view.json").write_text("{")
    code, out = _cli("store", "ls", str(tmp_path))
    assert code == 2 and "view.json: unreadable view description" in out, out
