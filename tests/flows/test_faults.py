"""Extraction under faults: SIGKILL at many points, concurrent runs, a full or unwritable store, and
Dask workers killed mid-run. After each fault, a plain re-run must leave a store equal to an
uninterrupted run's, with no missing and no duplicate clip, and ``verify`` clean after ``vacuum``.

"No duplicate" means, precisely: the readers' view (``FeatureSet.index()``, the latest committed
row per clip) lists every clip exactly once. Index *parts* may hold a clip twice only when two
writers really computed it twice (concurrent runs, a Dask task re-executed after its worker died);
both rows then carry the same fingerprint and checksum, so whichever is latest gives the same
values. A kill followed by a sequential resume never duplicates even at the part level.

The killed extraction runs in real processes: a driver process imports the pipeline once (single
threaded) and forks one child per run, so a run starts in a fraction of a second instead of paying
the ~6 s import each time. A child is the extract process: it runs ``run_extract`` (Prefect flow,
thread task runner, talking to the session's test server) and is SIGKILLed either from inside at an
injected point (a store write about to happen or just done) or from the driver after a seeded
random delay.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from corpora.synth import generate_dataset
from flows.config import PipelineConfig
from flows.extract import extract_flow, plan, run_extract
from flows.ingest import run_ingest
from store import FeatureStore
from store.errors import StoreError
from store.verify import orphan_shards, vacuum, verify
from tests.helpers.net import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
N_CLIPS = 8
BATCH = 2
EXTRACTORS = {"audio.mfcc": {}}

DRIVER = textwrap.dedent(
    r'''
    import json, os, signal, sys, threading, time, traceback
    import flows  # noqa: F401
    from flows.config import PipelineConfig
    from flows.extract import run_extract
    import store.featurestore as sf

    # warm up what every run needs (extractor modules, librosa's first-call costs) before forking
    import numpy as np
    from features.audio import MfccConfig, mfcc_frames
    from features.base import available_extractors
    available_extractors()
    mfcc_frames(np.zeros(16000, np.float32), MfccConfig())
    assert threading.active_count() == 1, "forking needs a single-threaded driver"

    def install(spec):
        """SIGKILL this process at the n-th occurrence of an injected point."""
        if not spec:
            return
        at, n, seen = spec["at"], spec.get("n", 1), [0]

        def hit():
            seen[0] += 1
            if seen[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)

        if at == "array":  # mid-shard: right after the n-th Zarr array of any shard is written
            orig_array = sf.FeatureSet._write_array
            def write_array(group, name, data, dims):
                orig_array(group, name, data, dims)
                hit()
            sf.FeatureSet._write_array = staticmethod(write_array)
        elif at in ("before_index", "after_index"):  # shard complete, index part not / just written
            orig_index = sf.FeatureSet._write_index
            def write_index(self, shard, table):
                if at == "before_index":
                    hit()
                orig_index(self, shard, table)
                if at == "after_index":
                    hit()
            sf.FeatureSet._write_index = write_index
        elif at == "index_rename":  # index part written to its temp file and fsynced, not renamed
            orig_replace = os.replace
            def replace(src, dst, *a, **k):
                if "/index/" in str(dst):
                    hit()
                return orig_replace(src, dst, *a, **k)
            os.replace = replace
        elif at == "record_run":  # every batch committed, the run record not yet written
            orig_run = sf.FeatureStore.record_run
            def record_run(self, row):
                hit()
                orig_run(self, row)
            sf.FeatureStore.record_run = record_run
        else:
            raise ValueError(at)

    def child(job):
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 0
        try:
            install(job.get("kill"))
            cfg = PipelineConfig.model_validate_json(job["config"])
            time.sleep(max(0.0, job.get("start_at", 0.0) - time.time()))
            summary = run_extract(cfg)
            print("SUMMARY " + json.dumps(summary.sets))
        except BaseException:
            traceback.print_exc()
            code = 3
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    print("ready", flush=True)
    for line in sys.stdin:
        jobs = json.loads(line)
        t0 = time.time()
        pids = {}
        for k, job in enumerate(jobs):
            pid = os.fork()
            if pid == 0:
                child(job)
            pids[pid] = k
        results = [None] * len(jobs)
        while pids:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid:
                k = pids.pop(pid)
                results[k] = {"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                              "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                              "seconds": time.time() - t0}
                continue
            for pid, k in pids.items():  # a kill from outside after a delay, like the OOM killer
                after = jobs[k].get("kill_after")
                if after is not None and time.time() - t0 >= after:
                    os.kill(pid, signal.SIGKILL)
                    jobs[k]["kill_after"] = None
            time.sleep(0.005)
        print(json.dumps(results), flush=True)
    '''
)


# -- the driver and helpers -------------------------------------------------------------------
class Driver:
    def __init__(self, proc: subprocess.Popen, logs: Path) -> None:
        self.proc = proc
        self.logs = logs

    def run(self, *jobs: dict[str, Any]) -> list[dict[str, Any]]:
        """Run jobs (config, kill spec, start_at, kill_after) at once, each in its own process."""
        for job in jobs:
            job.setdefault("log", str(self.logs / f"{uuid.uuid4().hex}.log"))
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(list(jobs)) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"driver died: {self.proc.poll()}"
        results = json.loads(line)
        for job, res in zip(jobs, results):
            res["log"] = Path(job["log"]).read_text()
            summary = [x for x in res["log"].splitlines() if x.startswith("SUMMARY ")]
            res["summary"] = json.loads(summary[-1][8:]) if summary else None
        return results


@pytest.fixture(scope="module")
def driver(prefect_harness, tmp_path_factory: pytest.TempPathFactory):
    from prefect.settings import PREFECT_API_URL

    logs = tmp_path_factory.mktemp("driver-logs")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=REPO, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
    try:
        assert proc.stdout and proc.stdout.readline().strip() == "ready"
        yield Driver(proc, logs)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory):
    """The dataset and an ingested store without features; copies of it start every scenario."""
    root = tmp_path_factory.mktemp("faults")
    data = generate_dataset(root / "data", n_clips=N_CLIPS, seed=13, min_seconds=1.5, max_seconds=3.0)
    cfg = _config(root / "base", data.root)
    run_ingest(cfg)
    return data, Path(cfg.store)


def _config(store: Path | str, data: Path, **executor: Any) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "store": str(store), "dataset": {"path": str(data)}, "executor": {"workers": 2, **executor},
        "extract": {"extractors": EXTRACTORS, "batch_clips": BATCH, "retries": 2},
    })


def _fresh(base_store: Path, where: Path) -> Path:
    shutil.copytree(base_store, where)
    return where


@pytest.fixture(scope="module")
def reference(base, driver, tmp_path_factory: pytest.TempPathFactory):
    """An uninterrupted run in a child process: the store every faulty run must end up equal to."""
    data, base_store = base
    store = _fresh(base_store, tmp_path_factory.mktemp("reference") / "store")
    (res,) = driver.run({"config": _config(store, data.root).model_dump_json()})
    assert res["exit"] == 0, res["log"][-3000:]
    (fset,) = FeatureStore.open(store).sets_for("audio.mfcc")
    assert fset.index().num_rows == N_CLIPS
    return store, res["seconds"]


def _set(store: Path | str):
    sets = FeatureStore.open(store).sets_for("audio.mfcc")
    return sets[0] if sets else None


def assert_visible_rows_are_good(store: Path | str, reference: Path) -> set[str]:
    """Whatever a fault left: each visible clip reads back exactly as in the reference, and
    visible clips come in whole committed batches."""
    fset = _set(store)
    if fset is None:
        return set()
    ref = _set(reference)
    index = fset.index().to_pylist()
    assert verify(FeatureStore.open(store)) == []
    per_shard: dict[str, int] = {}
    for row in index:
        per_shard[row["shard"]] = per_shard.get(row["shard"], 0) + 1
        got, want = fset.read(row["clip_id"]), ref.read(row["clip_id"])
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got.times, want.times)
    assert all(n == BATCH for n in per_shard.values()), per_shard  # never a half-visible batch
    return {r["clip_id"] for r in index}


def assert_equal_to_reference(store: Path | str, reference: Path, max_parts_per_clip: int = 1) -> None:
    """Same feature set, every clip exactly once in the readers' view, identical arrays."""
    st, ref_st = FeatureStore.open(store), FeatureStore.open(reference)
    assert st.feature_set_names() == ref_st.feature_set_names()
    for name in ref_st.feature_set_names():
        fset, ref = st.feature_set(name), ref_st.feature_set(name)
        clips = fset.index().column("clip_id").to_pylist()
        assert len(clips) == len(set(clips)), "a clip is listed twice in the readers' view"
        assert sorted(clips) == sorted(ref.index().column("clip_id").to_pylist()), "a clip is missing"
        parts = fset.index_parts().to_pylist()
        by_clip: dict[str, list[dict[str, Any]]] = {}
        for row in parts:
            by_clip.setdefault(row["clip_id"], []).append(row)
        for clip, rows in by_clip.items():
            assert len(rows) <= max_parts_per_clip, f"{clip} committed {len(rows)} times"
            assert len({(r["fingerprint"], r["checksum"]) for r in rows}) == 1, f"{clip}: committed rows differ"
        for clip in clips:
            got, want = fset.read(clip), ref.read(clip)
            assert got.fingerprint == want.fingerprint
            np.testing.assert_array_equal(got.values, want.values)
            np.testing.assert_array_equal(got.times, want.times)


def _clean_after_vacuum(store: Path | str) -> list[tuple[str, str]]:
    st = FeatureStore.open(store)
    removed = vacuum(st, grace_seconds=0)
    assert verify(st) == []
    assert orphan_shards(st, grace_seconds=0) == []
    for name in st.feature_set_names():
        assert not [n for n in st.fs.ls(f"features/{name}/index") if n.startswith(".tmp-")]
    return removed


# -- SIGKILL at injected points and at seeded random times -------------------------------------
_RNG = np.random.default_rng(20240607)
_DELAYS = [float(x) for x in _RNG.uniform(0.25, 0.85, size=2)]  # fractions of the reference run time
KILLS = [
    pytest.param({"at": "array", "n": 1}, id="mid-shard-first-batch"),
    pytest.param({"at": "array", "n": 3}, id="mid-shard-second-batch"),
    pytest.param({"at": "before_index", "n": 2}, id="shard-written-index-not"),
    pytest.param({"at": "index_rename", "n": 1}, id="index-temp-file-not-renamed"),
    pytest.param({"at": "after_index", "n": 3}, id="after-three-commits"),
    pytest.param({"at": "record_run", "n": 1}, id="all-committed-run-record-not"),
    *[pytest.param({"delay": d}, id=f"random-time-{d:.2f}") for d in _DELAYS],
]


@pytest.mark.parametrize("kill", KILLS)
def test_sigkill_then_resume_equals_an_uninterrupted_run(kill, base, driver, reference, tmp_path: Path) -> None:
    data, base_store = base
    ref_store, ref_seconds = reference
    store = _fresh(base_store, tmp_path / "store")
    cfg = _config(store, data.root).model_dump_json()
    job: dict[str, Any] = {"config": cfg}
    if "delay" in kill:
        job["kill_after"] = kill["delay"] * ref_seconds
    else:
        job["kill"] = kill
    (res,) = driver.run(job)
    if "delay" not in kill:  # an injected point is always reached
        assert res["signal"] == signal.SIGKILL, res["log"][-3000:]
    visible = assert_visible_rows_are_good(store, ref_store)
    if kill.get("at") == "before_index":
        assert len(visible) < N_CLIPS
    if kill.get("at") == "record_run":
        assert len(visible) == N_CLIPS and FeatureStore.open(store).runs().num_rows == 0

    (res,) = driver.run({"config": cfg})  # the resume: a plain re-run
    assert res["exit"] == 0, res["log"][-3000:]
    (summary,) = res["summary"].values()
    assert summary["done"] == N_CLIPS - len(visible) and summary["skipped"] == len(visible)
    assert summary["failed"] == 0
    removed = _clean_after_vacuum(store)
    if kill.get("at") in ("array", "before_index", "index_rename"):
        assert removed, "the killed batch's shard should be an orphan"
    assert_equal_to_reference(store, ref_store)


# -- two runs at once -------------------------------------------------------------------------
@pytest.mark.parametrize("stagger", [0.0, 0.4], ids=["simultaneous", "staggered"])
def test_two_concurrent_runs_lose_nothing_and_corrupt_nothing(stagger, base, driver, reference, tmp_path: Path) -> None:
    data, base_store = base
    ref_store, ref_seconds = reference
    store = _fresh(base_store, tmp_path / "store")
    cfg = _config(store, data.root).model_dump_json()
    t0 = time.time() + 0.5  # both also create the (new) feature set: see the next test for that race
    results = driver.run({"config": cfg, "start_at": t0}, {"config": cfg, "start_at": t0 + stagger * ref_seconds})
    for res in results:
        assert res["exit"] == 0, res["log"][-3000:]
        assert next(iter(res["summary"].values()))["failed"] == 0
    done = [next(iter(r["summary"].values()))["done"] for r in results]
    assert sum(done) >= N_CLIPS  # every clip computed by at least one of the runs
    st = FeatureStore.open(store)
    assert verify(st) == [] and orphan_shards(st, grace_seconds=0) == []  # both writers completed every shard
    assert st.failures().num_rows == 0 and st.runs().num_rows == 2
    assert_equal_to_reference(store, ref_store, max_parts_per_clip=2)


def test_concurrent_first_creation_of_a_feature_set(tmp_path: Path) -> None:
    """Writers that create the same (new) feature set at the same moment must all succeed.

    (Before the group document was written atomically, about one round in eight failed with
    Zarr's ContainsGroupError or a spurious StoreConflictError.)"""
    errors: list[str] = []
    for round_ in range(100):
        url = str(tmp_path / f"s{round_}")
        FeatureStore.open(url, create=True)
        barrier = threading.Barrier(4)

        def create() -> None:
            st = FeatureStore.open(url)
            barrier.wait()
            try:
                st.ensure_feature_set("audio.mfcc-00000000", {"identity": {"name": "audio.mfcc"}, "dim": 40})
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=create) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, f"{len(errors)} failed creations, e.g. {errors[0]}"


# -- a full disk and an unwritable store --------------------------------------------------------
class QuotaFileSystem(MemoryFileSystem):
    """An in-memory filesystem with a byte quota: writes past it raise ENOSPC, like a full disk.

    Registered as ``quota://``; a real fault injector for the store's fsspec code path.
    """

    protocol = "quota"
    store: dict[str, Any] = {}
    pseudo_dirs = [""]
    limit: int | None = None
    used = 0
    lock = threading.Lock()

    def _charge(self, path: str, n: int) -> None:
        with QuotaFileSystem.lock:
            if QuotaFileSystem.limit is not None and QuotaFileSystem.used + n > QuotaFileSystem.limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            QuotaFileSystem.used += n

    def pipe_file(self, path, value, mode="overwrite", **kwargs):  # noqa: ANN001, ANN201
        self._charge(path, len(value))
        return super().pipe_file(path, value, mode=mode, **kwargs)

    def _open(self, path, mode="rb", **kwargs):  # noqa: ANN001, ANN201
        f = super()._open(path, mode, **kwargs)
        if "w" in mode or "a" in mode:
            close, fs = f.close, self

            def charged_close() -> None:
                if not f.closed:
                    fs._charge(path, len(f.getbuffer()))
                close()

            f.close = charged_close
        return f


fsspec.register_implementation("quota", QuotaFileSystem, clobber=True)


def test_disk_full_fails_clearly_naming_the_path_and_commits_no_half_batch(base, reference, prefect_harness) -> None:
    data, _ = base
    ref_store, _ = reference
    url = f"quota://{uuid.uuid4().hex[:8]}/store"
    cfg = _config(url, data.root, workers=1)  # one batch at a time: a deterministic fill order
    QuotaFileSystem.limit = None
    run_ingest(cfg)
    features = sum(f.stat().st_size for f in (ref_store / "features").rglob("*") if f.is_file())
    QuotaFileSystem.limit = QuotaFileSystem.used + features * 2 // 5  # the disk fills up mid-run
    try:
        with pytest.raises(StoreError) as err:
            extract_flow(cfg)
    finally:
        QuotaFileSystem.limit = None  # space freed
    message = str(err.value)
    assert url in message and "No space left on device" in message, message
    visible = assert_visible_rows_are_good(url, ref_store)  # whole batches only, each one intact
    assert 0 < len(visible) < N_CLIPS, visible  # the batches committed before the disk filled stay

    summary = extract_flow(cfg)  # a re-run completes the store
    assert summary.failed == 0
    (s,) = summary.sets.values()
    assert s["done"] == N_CLIPS - len(visible)
    st = FeatureStore.open(url)
    vacuum(st, grace_seconds=0)
    assert verify(st) == [] and orphan_shards(st, grace_seconds=0) == []
    assert_equal_to_reference(url, ref_store)


def test_store_under_a_file_is_a_clear_error_naming_the_path(base, tmp_path: Path) -> None:
    data, _ = base
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's parent directory should be")
    cfg = _config(blocker / "store", data.root)
    with pytest.raises(StoreError) as err:
        run_ingest(cfg)
    assert str(blocker / "store" / "store.json") in str(err.value)
    assert not (tmp_path / "store").exists()


def test_unwritable_shards_directory_fails_every_batch_and_commits_nothing(base, prefect_harness, tmp_path: Path) -> None:
    data, base_store = base
    store = _fresh(base_store, tmp_path / "store")
    cfg = _config(store, data.root)
    (p,) = plan(FeatureStore.open(store), cfg.extract)  # creates the feature set
    shards = store / "features" / p.feature_set / "shards"
    shards.write_text("a file where the shards directory should be")
    with pytest.raises(StoreError) as err:
        extract_flow(cfg)
    assert str(shards) in str(err.value) and "cannot write shard" in str(err.value), str(err.value)
    fset = FeatureStore.open(store).feature_set(p.feature_set)
    assert fset.index_parts().num_rows == 0  # no index part points at a shard that is not there


# -- Dask: two worker processes, and one of them killed mid-run --------------------------------
class Cluster:
    def __init__(self, address: str, env: dict[str, str]) -> None:
        self.address = address
        self.env = env
        self.workers: list[subprocess.Popen] = []

    def add_worker(self) -> subprocess.Popen:
        """A `dask worker` without a nanny (so a killed worker stays dead), one thread."""
        proc = subprocess.Popen(
            [str(BIN / "dask"), "worker", self.address, "--no-nanny", "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1", "--preload", "flows.extract", "--death-timeout", "60"],
            cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.workers.append(proc)
        return proc

    def ensure(self, n: int) -> None:
        """``n`` live workers (replacing killed ones), registered with the scheduler."""
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < n:
            self.add_worker()
        self.wait_for(n)

    def wait_for(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(n, timeout=120)
            deadline = time.monotonic() + 60
            while len(client.scheduler_info()["workers"]) != n:  # a dead worker's departure is seen late
                assert time.monotonic() < deadline
                time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster():
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    scheduler = subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    c = Cluster(f"tcp://127.0.0.1:{port}", env)
    try:
        c.ensure(2)
        yield c
    finally:
        for proc in [*c.workers, scheduler]:  # nothing to save: no graceful shutdown needed
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_two_dask_workers_give_the_same_store_as_threads(cluster: Cluster, base, reference, tmp_path: Path, prefect_harness) -> None:
    data, base_store = base
    ref_store, _ = reference
    store = _fresh(base_store, tmp_path / "store")
    cluster.ensure(2)
    summary = run_extract(_config(store, data.root, dask=cluster.address))
    assert summary.failed == 0 and all(s["done"] == N_CLIPS for s in summary.sets.values())
    st = FeatureStore.open(store)
    assert verify(st) == [] and orphan_shards(st, grace_seconds=0) == []
    assert_equal_to_reference(store, ref_store)


def test_a_dask_worker_killed_mid_run_then_a_rerun_completes_the_store(
    cluster: Cluster, base, reference, tmp_path: Path, prefect_harness
) -> None:
    data, base_store = base
    ref_store, _ = reference
    store = _fresh(base_store, tmp_path / "store")
    cluster.ensure(2)
    cfg = _config(store, data.root, dask=cluster.address)
    cfg = cfg.model_copy(update={"extract": cfg.extract.model_copy(update={"batch_clips": 1})})
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["summary"] = run_extract(cfg)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    victim = cluster.workers[0]
    deadline = time.monotonic() + 120
    while thread.is_alive() and time.monotonic() < deadline:  # kill once the first batch is committed
        fset = _set(store)
        if fset is not None and fset.index_parts().num_rows >= 1:
            break
        time.sleep(0.02)
    assert thread.is_alive(), "the run ended before a worker could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    thread.join(timeout=240)
    assert not thread.is_alive(), "the flow hangs after losing a worker"
    if "error" in outcome:  # failing is allowed, silently is not
        text = f"{type(outcome['error']).__name__}: {outcome['error']}"
        assert any(w in text.lower() for w in ("worker", "killed", "crash", "lost", "connection")), text
    else:
        assert outcome["summary"].failed == 0

    summary = run_extract(cfg)  # the re-run on the surviving worker finishes what is missing
    (s,) = summary.sets.values()
    assert s["failed"] == 0 and s["done"] + s["skipped"] == N_CLIPS
    _clean_after_vacuum(store)
    # a batch the dead worker committed may have been recomputed by the survivor: allowed at the
    # index-part level (identical rows), never in the readers' view
    assert_equal_to_reference(store, ref_store, max_parts_per_clip=2)

