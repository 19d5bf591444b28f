"""Extraction runs in real processes that can be SIGKILLed, each started in a fraction of a second.

``python -m tests.helpers.extract_driver`` is the driver: it imports the pipeline once (single
threaded) and forks one child per job, so a run does not pay the ~6 s import each time. A child is
the extract process: it runs ``run_extract`` (Prefect flow, thread task runner, talking to the
``PREFECT_API_URL`` it inherits) and is SIGKILLed either from inside at an injected point (a store
write about to happen or just done) or by the driver after a delay. ``Driver`` is the test's side:
it sends a batch of jobs as one JSON line and reads back one line of results.

A job: ``config`` (PipelineConfig JSON), and optionally ``kill`` (``{"at": point, "n": k}``: the
k-th time that point is reached), ``kill_after`` (seconds after the batch started), ``start_at``
(a wall-clock time to start at, to line up concurrent runs) and ``log``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from tests.helpers.paths import REPO


# -- the test's side --------------------------------------------------------------------------
class Driver:
    """A running driver process; ``run`` blocks until every job of the batch has ended."""

    def __init__(self, proc: subprocess.Popen, logs: Path) -> None:
        self.proc = proc
        self.logs = logs

    @classmethod
    @contextmanager
    def start(cls, logs: Path, env: dict[str, str], module: str = __name__) -> Iterator[Driver]:
        """Start the driver ``python -m module`` (this one: extract processes; ready once its imports
        are done); each job's output goes to ``logs``."""
        proc = subprocess.Popen([sys.executable, "-m", module], cwd=REPO, env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
        try:
            assert proc.stdout and proc.stdout.readline().strip() == "ready"
            yield cls(proc, logs)
        finally:
            if proc.stdin:
                proc.stdin.close()  # the driver's loop ends with its stdin
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def run(self, *jobs: dict[str, Any]) -> list[dict[str, Any]]:
        """Run jobs at once, each in its own process: per job its ``signal`` or ``exit`` status,
        ``seconds``, ``log`` text and the run's ``summary`` (None when it did not finish)."""
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


# -- the driver process -----------------------------------------------------------------------
def _install_kill(spec: dict[str, Any] | None) -> None:
    """SIGKILL this process at the n-th occurrence of an injected point."""
    if not spec:
        return
    import store.featurestore as sf

    at, n, seen = spec["at"], spec.get("n", 1), [0]

    def hit() -> None:
        seen[0] += 1
        if seen[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    if at == "array":  # mid-shard: right after the n-th Zarr array of any shard is written
        orig_array = sf.FeatureSet._write_array

        def write_array(group, name, data, dims, sharded):
            orig_array(group, name, data, dims, sharded)
            hit()

        sf.FeatureSet._write_array = staticmethod(write_array)  # type: ignore[method-assign]
    elif at in ("before_index", "after_index"):  # shard complete, index part not / just written
        orig_index = sf.FeatureSet._write_index

        def write_index(self, shard, table):
            if at == "before_index":
                hit()
            orig_index(self, shard, table)
            if at == "after_index":
                hit()

        sf.FeatureSet._write_index = write_index  # type: ignore[method-assign]
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

        sf.FeatureStore.record_run = record_run  # type: ignore[method-assign]
    else:
        raise ValueError(at)


def child_process(job: dict[str, Any], body: Callable[[], int]) -> NoReturn:
    """A forked job: ``body``'s output to the job's log, its return value the exit status (3 and the
    traceback in the log for whatever else ends it); never returns."""
    import traceback

    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 3
    try:
        code = body()
    except BaseException:  # whatever ends the run goes to its log
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _child(job: dict[str, Any]) -> NoReturn:
    """The extract process: a ``SUMMARY`` line on success."""

    def extract() -> int:
        from flows.extract import run_extract
        from stages.config import PipelineConfig

        _install_kill(job.get("kill"))
        cfg = PipelineConfig.model_validate_json(job["config"])
        time.sleep(max(0.0, job.get("start_at", 0.0) - time.time()))
        summary = run_extract(cfg)
        print("SUMMARY " + json.dumps(summary.sets))
        return 0

    child_process(job, extract)


def run_batch(
    jobs: list[dict[str, Any]], child: Callable[[dict[str, Any]], NoReturn] | None = None,
) -> list[dict[str, Any] | None]:
    """Fork a ``child`` per job (default: an extract process), kill those with a ``kill_after`` when it
    has passed, reap them all: each job's signal or exit status and when it ended."""
    t0 = time.time()
    pids = {}
    for k, job in enumerate(jobs):
        pid = os.fork()
        if pid == 0:
            (child or _child)(job)
        pids[pid] = k
    results: list[dict[str, Any] | None] = [None] * len(jobs)
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
    return results


def main() -> None:
    """Warm up what every run needs, then run each batch read from stdin."""
    import threading

    import numpy as np

    import flows.extract  # noqa: F401 - the flow and its task modules, imported once
    from features.extractors.audio import MfccConfig, mfcc_frames
    from features.extractors.base import available_extractors

    # extractor modules and librosa's first-call costs, paid once before forking
    available_extractors()
    mfcc_frames(np.zeros(16000, np.float32), MfccConfig())
    assert threading.active_count() == 1, "forking needs a single-threaded driver"
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(run_batch(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
