"""The same store code against object storage: an ``s3://`` store on moto's S3 server (loopback,
started by the test): round trips, writers in other processes (Dask workers, a SIGKILLed writer),
verify/vacuum, compaction, and what opening a set costs in requests (tests/helpers/s3.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from features.extractors.base import FeatureResult
from store import FeatureStore
from store.featureset import FeatureSet
from store.fs import StoreFS
from store.index import LOCK
from store.shards import retired_records
from store.verify import orphan_shards, vacuum, verify
from tests.helpers.features import feature_result
from tests.helpers.paths import REPO
from tests.helpers.s3 import S3Server, s3_server

SET = "x-1"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """One server per module; each test writes under its own prefix."""
    with s3_server() as server:
        yield server


def _clip(i: int) -> tuple[str, str, FeatureResult, float]:
    """Clip ``c<i>``: ``i % 5 + 1`` rows seeded by ``i``."""
    return f"c{i}", f"fp{i}", feature_result(i % 5 + 1, seed=i), 1.0


def _open(url: str) -> FeatureSet:
    return FeatureStore.open(url).feature_set(SET)


def _new_set(url: str) -> FeatureSet:
    return FeatureStore.open(url, create=True).ensure_feature_set(SET, {"identity": 1, "dim": 4})


def _assert_each_row_once(fset: FeatureSet, clips: set[str]) -> None:
    keys = Counter(zip(*(fset.index_parts(["clip_id", "shard"]).column(c).to_pylist() for c in ("clip_id", "shard"))))
    assert max(keys.values(), default=1) == 1, [k for k, n in keys.items() if n > 1]
    assert {c for c, _ in keys} == clips


def _assert_values(fset: FeatureSet, ids: range) -> None:
    """Clips ``c<i>`` for ``i`` in ``ids`` read back value for value (one read per shard range)."""
    rows = fset.rows()
    read = {row.clip_id: feat for row, feat in fset.iter_features([rows[f"c{i}"] for i in ids])}
    assert sorted(read) == sorted(f"c{i}" for i in ids)
    for i in ids:
        clip_id, fp, want, _ = _clip(i)
        got = read[clip_id]
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got.times, want.times)
        np.testing.assert_array_equal(got.extras["word_index"], want.extras["word_index"])
        assert got.fingerprint == fp and got.meta == {"stream": 1}


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A child interpreter: it inherits the environment that points s3:// at the moto server."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)


# -- round trip ---------------------------------------------------------------------------------
def test_commit_then_read_on_s3_returns_identical_arrays(s3: S3Server) -> None:
    url = s3.url("roundtrip")
    fset = _new_set(url)
    a, b = feature_result(7, seed=1), feature_result(3, seed=2)
    fset.commit([("a", "fp-a", a, 1.5), ("b", "fp-b", b, 0.5)])
    fset.commit([("c", "fp-c", FeatureResult.empty(4, "no audio stream"), 2.0)])
    new_a = feature_result(4, seed=9)
    fset.commit([("a", "fp-a2", new_a, 1.5)])  # supersedes a
    assert fset.link([("b-twin", "fp-b", 0.5)]) == ["b-twin"]

    reread = _open(url)  # a fresh store object: everything from the server
    assert reread.store.fs.url == url and not reread.store.fs.is_local
    got = reread.read("a")
    np.testing.assert_array_equal(got.values, new_a.values)
    np.testing.assert_array_equal(got.times, new_a.times)
    np.testing.assert_array_equal(got.extras["word_index"], np.arange(4))
    assert got.meta == {"stream": 1} and got.fingerprint == "fp-a2"
    for clip in ("b", "b-twin"):
        np.testing.assert_array_equal(reread.read(clip).values, b.values)
    c = reread.read("c")
    assert c.absent == "no audio stream" and c.values.shape == (0, 4)
    assert reread.committed() == {"a": "fp-a2", "b": "fp-b", "b-twin": "fp-b", "c": "fp-c"}
    assert reread.lookup("b").fingerprint == "fp-b"
    assert sorted(r.clip_id for r, _ in reread.iter_features()) == ["a", "b", "b-twin", "c"]
    assert FeatureStore.open(url).feature_set_names() == [SET]
    assert verify(reread.store) == []


def test_a_reader_sees_parts_another_process_committed_after_it_listed(s3: S3Server) -> None:
    """s3fs caches listings per process: a reader that listed ``index/`` before another process
    committed must still see the new part (StoreFS turns the listing cache off)."""
    url = s3.url("listing")
    fset = _new_set(url)
    fset.commit([_clip(0)])
    assert _open(url).committed() == {"c0": "fp0"}  # index/ listed once in this process
    child = _python(textwrap.dedent("""
        import sys
        from store import FeatureStore
        from tests.helpers.features import feature_result
        fset = FeatureStore.open(sys.argv[1]).feature_set("x-1")
        fset.commit([("c1", "fp1", feature_result(2, seed=1), 1.0)])
        fset.compact()
    """), url)
    assert child.returncode == 0, child.stderr
    fresh = _open(url)
    assert fresh.committed() == {"c0": "fp0", "c1": "fp1"}
    _assert_each_row_once(fresh, {"c0", "c1"})
    assert fresh.index_files.manifest() is not None and fresh.index_files.part_names() == []


# -- a killed writer ----------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys
    from store import FeatureStore
    from tests.helpers.crash import crash_or_resume
    from tests.store.test_s3 import SET, _clip

    crash_or_resume(FeatureStore.open(sys.argv[1]).feature_set(SET), sys.argv[2], _clip)
    """
)


def test_a_sigkilled_writer_leaves_no_visible_clip_and_vacuum_removes_its_objects(s3: S3Server) -> None:
    url = s3.url("crash")
    _new_set(url)
    crashed = _python(WRITER, url, "crash")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    store = FeatureStore.open(url)
    fset = store.feature_set(SET)
    assert sorted(fset.committed()) == ["c0", "c1"]  # no half clip visible
    orphans = orphan_shards(store, grace_seconds=0)
    assert len(orphans) == 1
    fs = store.fs
    orphan_dir = fs.path(fset.rel, "shards", orphans[0][1])
    assert len(fs.fs.find(orphan_dir)) >= 6  # the dead batch's objects are there: group + 3 arrays' docs and chunks
    assert verify(store) == []

    with s3.counting() as count:
        assert vacuum(store, grace_seconds=0) == orphans
    assert fs.fs.find(orphan_dir) == [] and count["DELETE"] >= 1
    assert orphan_shards(store, grace_seconds=0) == []
    assert verify(store) == []

    resumed = _python(WRITER, url, "resume")
    assert resumed.returncode == 0, resumed.stderr
    fresh = _open(url)
    _assert_each_row_once(fresh, {"c0", "c1", "c2", "c3"})
    _assert_values(fresh, range(4))
    assert verify(fresh.store) == []


# -- concurrent Dask workers --------------------------------------------------------------------
def commit_on_worker(url: str, first: int, batches: int, per: int, compact_every: int) -> list[str]:
    """Runs on a Dask worker: ``batches`` commits of ``per`` clips from ``c<first>``, compacting the
    index every ``compact_every`` batches (competing with the other worker for the lock)."""
    fset = FeatureStore.open(url).feature_set(SET)
    shards = []
    for b in range(batches):
        shard = fset.commit([_clip(first + b * per + k) for k in range(per)])
        assert shard is not None
        shards.append(shard)
        if (b + 1) % compact_every == 0:
            fset.compact()
    return shards


@pytest.mark.slow
def test_dask_workers_commit_concurrently_to_one_s3_set(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    distributed = pytest.importorskip("distributed")
    url = s3.url("dask")
    _new_set(url)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the workers import this module by name
    per, batches, tasks = 3, 4, 4
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        workers = sorted(client.scheduler_info()["workers"])
        assert len(workers) == 2
        futures = [client.submit(commit_on_worker, url, t * per * batches, batches, per, 2,
                                 workers=[workers[t % 2]], allow_other_workers=False, pure=False)
                   for t in range(tasks)]
        shards = [s for f in futures for s in f.result(timeout=240)]
    n = tasks * batches * per
    assert len(set(shards)) == tasks * batches

    fset = _open(url)
    _assert_each_row_once(fset, {f"c{i}" for i in range(n)})
    retired = {s for names in retired_records(fset).values() for s in names}
    assert retired & set(shards)  # the workers' compactions merged small shards (and merged shards again)
    _assert_values(fset, range(n))
    assert verify(fset.store) == []
    assert {s for _, s in orphan_shards(fset.store, grace_seconds=0)} <= retired  # nothing else is unreferenced
    assert fset.compact() is not None or fset.index_files.uncovered_parts() == []
    vacuum(fset.store, grace_seconds=0)  # the merged-away shards go; every row still reads
    after = _open(url)
    _assert_each_row_once(after, {f"c{i}" for i in range(n)})
    _assert_values(after, range(n))
    assert after.index_files.uncovered_parts() == [] and verify(after.store) == []


# -- compaction and request counts --------------------------------------------------------------
@pytest.mark.slow
def test_compaction_on_s3_makes_opening_a_set_cost_a_constant_number_of_requests(s3: S3Server) -> None:
    url = s3.url("compaction")
    fset = _new_set(url)
    parts = 50
    for b in range(parts):
        fset.commit([_clip(2 * b), _clip(2 * b + 1)])

    def open_and_plan() -> Counter[str]:
        with s3.counting() as count:
            committed = _open(url).committed()
        assert committed == {f"c{i}": f"fp{i}" for i in range(2 * parts)}
        return count.by_kind

    before = open_and_plan()
    assert before["GET"] >= parts and before["LIST"] >= 1, before  # one GET per index part

    # the compaction lock is an exclusive create: a conditional PUT that moto refuses when it exists
    lock = f"{fset.rel}/index/{LOCK}"
    body = json.dumps({"pid": 0, "time": time.time()}).encode()  # what a live compaction writes
    assert fset.fs.create_exclusive(lock, body) and not fset.fs.create_exclusive(lock, b"{}")
    assert fset.fs.read_bytes(lock) == body
    assert fset.compact() is None  # held (and fresh): the compaction skips
    fset.fs.rm(lock)

    result = fset.compact()
    assert result is not None and result.parts == parts and result.rows == 2 * parts
    after = open_and_plan()
    assert after["GET"] <= 4 and after.total() <= 8, after  # store.json, manifest, consolidated file
    assert result.shards_retired == parts  # the 50 two-clip shards are now one
    _assert_values(_open(url), range(0, 2 * parts, 9))  # verify below checks every row's checksum
    assert len(vacuum(fset.store, grace_seconds=0)) == parts and verify(fset.store) == []
    _assert_values(_open(url), range(2 * parts))


def test_storefs_reads_an_object_with_one_request(s3: S3Server) -> None:
    fs = StoreFS(s3.url("fs"))
    fs.write_bytes_atomic("a/b.json", b"{}")
    with s3.counting() as count:
        assert fs.read_bytes("a/b.json") == b"{}"
        assert fs.ls("a") == ["b.json"] and fs.ls("missing") == []
    assert dict(count.by_kind) == {"GET": 1, "LIST": 3}, count.by_request  # a missing prefix: LIST, parent LIST


# -- vacuum's grace period on object stores: an object's age is its LastModified, a prefix's that
# of its newest object (StoreFS.modified); before, every unreferenced shard looked infinitely old
def test_vacuum_grace_period_keeps_a_running_writers_shard_on_s3(s3: S3Server) -> None:
    url = s3.url("grace")
    fset = _new_set(url)
    fset.commit([_clip(0)])
    shard = "20991231T000000-inflight00"  # a writer that has written its shard, not yet its index part
    fset.write_shard(shard, np.zeros((1, 4), np.float32), np.zeros((1, 2)), {}, 1)
    assert orphan_shards(fset.store) == []  # default grace: one hour
    assert orphan_shards(fset.store, grace_seconds=0) == [(fset.name, shard)]  # past its grace: an orphan


def test_vacuum_grace_period_keeps_a_running_compactions_consolidated_file_on_s3(s3: S3Server) -> None:
    url = s3.url("grace-consolidated")
    fset = _new_set(url)
    fset.commit([_clip(0)])
    fresh = f"{fset.rel}/consolidated/20991231T000000-compacting.parquet"  # written, manifest not yet
    fset.fs.write_bytes_atomic(fresh, b"PAR1")
    vacuum(fset.store)  # default grace: one hour
    assert fset.fs.exists(fresh)
