"""Index compaction (store.index): readers see every committed row exactly once before, during and
after a compaction, with writers committing concurrently and with a compaction that dies midway;
streamed verify, vacuum, format version 1 stores, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import store.index as index_mod
from features.extractors.base import FeatureResult
from flows.cli import app
from stages.extract import ExtractTally
from store import FeatureStore, StoreError
from store.featureset import FeatureSet, IndexRow
from store.shards import retired_records
from store.verify import migrate, orphan_shards, vacuum, verify
from tests.helpers.features import feature_result

ROOT = Path(__file__).parents[2]


def _store(tmp_path: Path) -> tuple[FeatureStore, FeatureSet]:
    store = FeatureStore.open(tmp_path, create=True)
    return store, store.ensure_feature_set("x-1", {"identity": 1, "dim": 4})


def _commit_batches(fset: FeatureSet, first: int, n: int, per: int = 2) -> list[str]:
    """``n`` batches of ``per`` clips c<first>…; clip i has i % 5 + 1 rows seeded by i."""
    ids = []
    for b in range(n):
        items = []
        for k in range(per):
            i = first + b * per + k
            items.append((f"c{i}", f"fp{i}", feature_result(i % 5 + 1, seed=i), 1.0))
            ids.append(f"c{i}")
        fset.commit(items)
    return ids


def _fresh(tmp_path: Path) -> FeatureSet:
    return FeatureStore.open(tmp_path).feature_set("x-1")


def _row_keys(fset: FeatureSet) -> Counter[tuple[str, object]]:
    """Every committed row (clip id, commit time) with how often the readers' snapshot holds it."""
    parts = fset.index_parts(["clip_id", "committed_at"])
    return Counter(zip(parts.column("clip_id").to_pylist(), parts.column("committed_at").to_pylist()))


def _contents(rows: dict[str, IndexRow]) -> dict[str, IndexRow]:
    """``rows`` without where they lie: merging shards moves rows, never what they say."""
    return {c: replace(r, shard="", offset=0) for c, r in rows.items()}


def _assert_once(fset: FeatureSet, clips: set[str]) -> None:
    keys = _row_keys(fset)
    assert max(keys.values(), default=1) == 1, [k for k, n in keys.items() if n > 1]
    assert {c for c, _ in keys} == clips


def _index_dir(tmp_path: Path) -> Path:
    return tmp_path / "features" / "x-1" / "index"


def _shards_dir(tmp_path: Path) -> Path:
    return tmp_path / "features" / "x-1" / "shards"


def _referenced(tmp_path: Path) -> set[str]:
    return set(_fresh(tmp_path).index_parts(["shard"]).column("shard").to_pylist())


# -- round trip --------------------------------------------------------------------------------
def test_compaction_keeps_every_row_and_reader_answer_and_removes_the_parts(tmp_path: Path) -> None:
    store, fset = _store(tmp_path)
    _commit_batches(fset, 0, 6)
    fset.commit([("c0", "fp0-new", feature_result(3, seed=99), 1.0)])  # supersedes c0
    fset.commit([("gone", "fpa", FeatureResult.empty(4, "no audio"), 2.0)])
    fset.link([("c1-twin", "fp1", 1.0), ("c1-twin2", "fp1", 1.0)])  # two rows of one part share a fingerprint
    before = _fresh(tmp_path)
    rows, keys, fprows = before.rows(), _row_keys(before), before.fingerprint_rows()
    before_shards = set(before.index_parts(["shard"]).column("shard").to_pylist())
    clips_before = {fp: r.clip_id for fp, r in fprows.items()}
    assert before.fingerprint_clips() == clips_before

    result = fset.compact()
    assert result is not None and result.parts == 9 and result.rows == sum(keys.values()) == 16
    assert [p.name for p in _index_dir(tmp_path).iterdir()] == ["manifest.json"]  # parts gone
    assert json.loads((tmp_path / "store.json").read_text())["version"] == 2

    planner = _fresh(tmp_path)
    assert planner.committed() == before.committed() and planner._parts is None  # projected columns only
    after = _fresh(tmp_path)
    assert _contents(after.rows()) == _contents(rows) and _row_keys(after) == keys
    assert after.committed() == before.committed()
    assert after.fingerprint_clips() == clips_before
    for clip in rows:
        np.testing.assert_array_equal(after.read(clip).values, before.read(clip).values)
        assert _fresh(tmp_path).lookup(clip).fingerprint == rows[clip].fingerprint  # one row group, no rows()
    with pytest.raises(StoreError, match="not committed"):
        after.lookup("nope")
    assert verify(store) == [] and vacuum(store, grace_seconds=0) == [("x-1", s) for s in sorted(before_shards)]

    # later commits are parts again; the next compaction folds them in and drops the old file
    _commit_batches(fset, 100, 3)
    mixed = _fresh(tmp_path)
    assert len(mixed.index_files.uncovered_parts()) == 3 and mixed.index_parts().num_rows == 22
    assert mixed.compact(min_parts=4) is None  # below the threshold: nothing done
    assert mixed.lookup("c100").fingerprint == "fp100" and mixed.lookup("c0").fingerprint == "fp0-new"
    second = mixed.compact()
    assert second is not None and second.parts == 3 and second.rows == 22
    assert [p.name for p in (tmp_path / "features" / "x-1" / "consolidated").iterdir()] == [second.consolidated]
    assert _fresh(tmp_path).rows().keys() == set(rows) | {f"c{i}" for i in range(100, 106)}
    assert _fresh(tmp_path).compact() is None  # nothing new


def test_maybe_compact_and_the_extract_runs_hook_compact_past_the_threshold(tmp_path: Path) -> None:
    store, fset = _store(tmp_path)
    _commit_batches(fset, 0, 5)
    assert fset.maybe_compact(threshold=5) is None
    tally = ExtractTally("run", {"x-1": {}}, {"x-1": {}})
    assert tally.compact(store, threshold=10) == []
    done = tally.compact(store, threshold=4)
    assert [(c.feature_set, c.parts, c.rows) for c in done] == [("x-1", 5, 10)]


# -- concurrency -------------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys
    from store import FeatureStore
    from tests.helpers.features import feature_result

    fset = FeatureStore.open(sys.argv[1]).feature_set("x-1")
    w, n = sys.argv[2], int(sys.argv[3])
    for b in range(n):
        fset.commit([(f"{w}-{b}-{k}", f"fp-{w}-{b}-{k}", feature_result(2, seed=b), 1.0) for k in range(2)])
    """
)


def test_compactions_while_two_writer_processes_commit_lose_nothing(tmp_path: Path) -> None:
    store, fset = _store(tmp_path)
    _commit_batches(fset, 0, 5)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), w, "60"], cwd=ROOT)
               for w in ("a", "b")]
    compactions = 0
    while any(p.poll() is None for p in writers):
        compactions += _fresh(tmp_path).compact() is not None
        time.sleep(0.05)
    assert [p.returncode for p in writers] == [0, 0]
    compactions += _fresh(tmp_path).compact() is not None
    assert compactions >= 2
    want = {f"c{i}" for i in range(10)} | {f"{w}-{b}-{k}" for w in "ab" for b in range(60) for k in range(2)}
    _assert_once(_fresh(tmp_path), want)
    assert [p.name for p in _index_dir(tmp_path).iterdir()] == ["manifest.json"]
    retired = {s for shards in retired_records(_fresh(tmp_path)).values() for s in shards}
    assert verify(store) == [] and {s for _, s in orphan_shards(store, grace_seconds=0)} <= retired


def test_readers_in_a_thread_see_each_committed_row_once_while_writing_and_compacting(tmp_path: Path) -> None:
    _, fset = _store(tmp_path)
    committed: list[str] = []
    done = threading.Event()
    errors: list[str] = []

    def write() -> None:
        for b in range(80):
            committed.extend(_commit_batches(fset, 1000 + 2 * b, 1))
        done.set()

    def read() -> None:
        while not done.is_set():
            known = set(committed)  # committed before this read started: must all be there
            keys = _row_keys(_fresh(tmp_path))
            if max(keys.values(), default=1) > 1 or not known <= {c for c, _ in keys}:
                errors.append(f"duplicates or missing clips with {len(known)} committed")

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    while not done.is_set():
        _fresh(tmp_path).compact()
        time.sleep(0.01)
    for t in threads:
        t.join()
    assert errors == []
    _assert_once(_fresh(tmp_path), set(committed))


@pytest.mark.parametrize("moment", ["after_listing", "after_manifest", "old_consolidated_removed"])
def test_a_reader_overtaken_by_a_compaction_still_sees_every_row_once(
    tmp_path: Path, moment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compaction runs exactly between the reader's steps (listing, manifest, file reads)."""
    _, fset = _store(tmp_path)
    clips = set(_commit_batches(fset, 0, 4))
    if moment == "old_consolidated_removed":
        assert fset.compact() is not None
        clips |= set(_commit_batches(fset, 50, 2))
    reader = _fresh(tmp_path)
    files = reader.index_files
    fired: list[str] = []

    def overtake() -> None:
        if not fired:
            fired.append(moment)
            assert _fresh(tmp_path).compact() is not None  # folds every part in and deletes them

    if moment == "after_listing":
        orig_list = files.part_names
        monkeypatch.setattr(files, "part_names", lambda: (orig_list(), overtake())[0])
    else:  # the manifest read is the old one; the files it names or leaves uncovered go away
        orig_manifest = files.manifest
        monkeypatch.setattr(files, "manifest", lambda: (orig_manifest(), overtake())[0])
    _assert_once(reader, clips)
    assert fired == [moment]
    assert len(reader.rows()) == len(clips)


# -- crashes ---------------------------------------------------------------------------------
class CrashError(Exception):
    """Stands for a kill at a compaction step."""


@pytest.mark.parametrize("step", ["read", "rewritten", "consolidated", "manifest", "parts"])
def test_a_compaction_dying_at_any_step_leaves_every_clip_readable_once(
    tmp_path: Path, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, fset = _store(tmp_path)
    clips = set(_commit_batches(fset, 0, 3))
    assert fset.compact() is not None
    clips |= set(_commit_batches(fset, 10, 3))
    reference = _contents(_fresh(tmp_path).rows())

    def die(at: str) -> None:
        if at == step:
            raise CrashError(at)

    monkeypatch.setattr(index_mod, "checkpoint", die)
    with pytest.raises(CrashError):
        _fresh(tmp_path).compact()
    monkeypatch.setattr(index_mod, "checkpoint", lambda at: None)

    _assert_once(_fresh(tmp_path), clips)
    assert _contents(_fresh(tmp_path).rows()) == reference and verify(store) == []
    vacuum(store, grace_seconds=0)  # removes a dead compaction's files (consolidated, merged shards, covered parts)
    _assert_once(_fresh(tmp_path), clips)
    consolidated = list((tmp_path / "features" / "x-1" / "consolidated").iterdir())
    assert len(consolidated) == 1
    _fresh(tmp_path).compact()
    _assert_once(_fresh(tmp_path), clips)
    assert _contents(_fresh(tmp_path).rows()) == reference and verify(store) == []
    vacuum(store, grace_seconds=0)
    assert verify(store) == [] and {p.name for p in _shards_dir(tmp_path).iterdir()} == _referenced(tmp_path)


def test_a_killed_compactions_lock_blocks_others_until_it_is_stale(tmp_path: Path) -> None:
    _, fset = _store(tmp_path)
    _commit_batches(fset, 0, 2)
    lock = _index_dir(tmp_path) / "compact.lock"
    lock.write_text(json.dumps({"time": time.time()}))
    assert fset.compact() is None  # a running compaction: skip
    lock.write_text(json.dumps({"time": time.time() - 7200}))
    assert fset.compact() is not None and not lock.exists()  # its holder died an hour ago: broken


# -- verify, vacuum, old stores, CLI ---------------------------------------------------------
def test_streamed_verify_finds_a_corrupted_shard_and_samples(tmp_path: Path) -> None:
    store, fset = _store(tmp_path)
    _commit_batches(fset, 0, 6, per=3)
    fset.compact(merge_shards=False)  # one shard per batch: the corruption hits one batch's clips
    assert verify(store) == [] and verify(store, sample=4) == []
    bad = fset.rows()["c7"].shard  # the batch of c6, c7, c8
    chunk = tmp_path / "features" / "x-1" / "shards" / bad / "values" / "c" / "0" / "0"
    chunk.write_bytes(b"\0" * chunk.stat().st_size)
    found = verify(store, sets=["x-1"])
    assert sorted(p.clip_id for p in found) == ["c6", "c7", "c8"]
    assert all("unreadable" in p.problem or "checksum" in p.problem for p in found)
    assert {p.clip_id for p in verify(store, sample=18)} == {"c6", "c7", "c8"}
    assert len(verify(store, sample=5, seed=1)) <= 3


def test_a_sampled_verify_of_a_merged_shard_reads_the_sampled_clips_not_the_whole_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, fset = _store(tmp_path)
    for i in range(24):  # 24 one-clip batches of 600 rows, merged into one shard of 14,400 rows
        fset.commit([(f"c{i}", f"fp{i}", feature_result(600, seed=i), 1.0)])
    fset.compact()
    fresh = _fresh(tmp_path)
    assert len({r.shard for r in fresh.rows().values()}) == 1
    spans: list[int] = []
    read_range = FeatureSet._read_range

    def counting(self: FeatureSet, shard: str, start: int, stop: int | None, *args: object, **kw: object):  # type: ignore[no-untyped-def]
        spans.append((stop or 0) - start)
        return read_range(self, shard, start, stop, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(FeatureSet, "_read_range", counting)
    assert verify(store, sample=3, seed=2) == []
    assert sum(spans) <= 3 * 600 + 2 * 2048  # the sampled rows and at most the gaps under one chunk
    spans.clear()
    assert verify(store) == [] and spans == [24 * 600]  # a full verify: still one read of the shard


def test_vacuum_after_compaction_keeps_referenced_shards_and_removes_orphans(tmp_path: Path) -> None:
    store, fset = _store(tmp_path)
    _commit_batches(fset, 0, 3)
    fset.compact()
    fset.write_shard("20000101T000000-orphan", np.zeros((1, 4), np.float32), np.zeros((1, 2)), {}, 1)
    assert vacuum(store, grace_seconds=3600) == []  # the merged-away shards were retired just now
    removed = vacuum(store, grace_seconds=0)
    assert ("x-1", "20000101T000000-orphan") in removed and len(removed) == 4  # and the 3 merged-away batches
    assert {p.name for p in _shards_dir(tmp_path).iterdir()} == _referenced(tmp_path)
    assert sorted(_fresh(tmp_path).rows()) == [f"c{i}" for i in range(6)] and verify(store) == []


def _as_version_1(tmp_path: Path) -> set[str]:
    """A store as version 1 code wrote it: index parts only, store.json version 1."""
    _, fset = _store(tmp_path)
    clips = set(_commit_batches(fset, 0, 4))
    meta = json.loads((tmp_path / "store.json").read_text())
    (tmp_path / "store.json").write_text(json.dumps(meta | {"version": 1}))
    return clips


def test_a_version_1_store_reads_as_is_and_migrates(tmp_path: Path) -> None:
    clips = _as_version_1(tmp_path)
    old = FeatureStore.open(tmp_path)
    rows = old.feature_set("x-1").rows()
    assert set(rows) == clips and verify(old) == []
    assert [c.parts for c in migrate(old)] == [4]
    assert json.loads((tmp_path / "store.json").read_text())["version"] == 2
    assert _contents(_fresh(tmp_path).rows()) == _contents(rows) and verify(FeatureStore.open(tmp_path)) == []
    (tmp_path / "store.json").write_text(json.dumps({"format": "emoflow-store", "version": 3}))
    with pytest.raises(StoreError, match="format version"):
        FeatureStore.open(tmp_path)


def test_store_cli_compact_migrate_and_verify_options(tmp_path: Path) -> None:
    clips = _as_version_1(tmp_path)
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    res = runner.invoke(app, ["store", "migrate", str(tmp_path)], env=env)
    assert res.exit_code == 0 and "format version 2" in res.output, res.output
    _commit_batches(FeatureStore.open(tmp_path).feature_set("x-1"), 50, 2)
    res = runner.invoke(app, ["store", "compact", str(tmp_path), "--min-parts", "3"], env=env)
    assert res.exit_code == 0 and "x-1" not in res.output, res.output
    res = runner.invoke(app, ["store", "compact", str(tmp_path), "--set", "x-1"], env=env)
    assert res.exit_code == 0 and "x-1" in res.output, res.output
    assert set(_fresh(tmp_path).rows()) == clips | {f"c{i}" for i in range(50, 54)}
    for args in (["--sample", "3"], ["--set", "x-1"], []):
        res = runner.invoke(app, ["store", "verify", str(tmp_path), *args], env=env)
        assert res.exit_code == 0 and "no problems" in res.output, res.output
    for command in ("verify", "compact"):  # a set name no folder has is a user error (exit 2), not a finding
        res = runner.invoke(app, ["store", command, str(tmp_path), "--set", "x-2"], env=env)
        assert res.exit_code == 2 and res.output.startswith("error:") and "no feature set 'x-2'" in res.output, \
            res.output


def test_memory_url_store_compacts_too(tmp_path: Path) -> None:
    url = f"memory://compaction-{time.time_ns()}"
    store = FeatureStore.open(url, create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1, "dim": 4})
    clips = set(_commit_batches(fset, 0, 3))
    assert fset.compact() is not None and fset.compact() is None
    again = FeatureStore.open(url).feature_set("x-1")
    _assert_once(again, clips)
    assert again.index_files.part_names() == [] and verify(store) == []
    np.testing.assert_array_equal(again.lookup("c3").values, again.read("c3").values)
