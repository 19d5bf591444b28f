"""A real Dask cluster for tests: a ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1,
so the flows run through the same scheduler address a deployment would give them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.net import free_port
from tests.helpers.paths import REPO
from tests.helpers.processes import stop

DASK = str(Path(sys.executable).parent / "dask")


class DaskCluster:
    """A scheduler plus worker processes the test can add, kill and replace."""

    def __init__(self, scheduler: subprocess.Popen, address: str, env: dict[str, str],
                 preload: Sequence[str]) -> None:
        self.scheduler = scheduler
        self.address = address
        self.env = env
        self.preload = list(preload)
        self.workers: list[subprocess.Popen] = []

    @classmethod
    @contextmanager
    def start(cls, preload: Sequence[str] = ()) -> Iterator[DaskCluster]:
        """A scheduler with no workers yet (call ``ensure``); everything is stopped on exit.
        ``preload``: modules each worker imports at start, so the first task does not pay for them."""
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        cluster = cls(scheduler, f"tcp://127.0.0.1:{port}", env, preload)
        try:
            yield cluster
        finally:
            cluster.close()

    def add_worker(self) -> subprocess.Popen:
        """A ``dask worker`` with one thread and no nanny, so a killed worker stays dead."""
        preload = [arg for module in self.preload for arg in ("--preload", module)]
        proc = subprocess.Popen(
            [DASK, "worker", self.address, "--no-nanny", "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1", "--death-timeout", "60", *preload],
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
        """Block until the scheduler lists exactly ``n`` workers."""
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(n, timeout=120)
            deadline = time.monotonic() + 60
            while len(client.scheduler_info()["workers"]) != n:  # a dead worker's departure is seen late
                assert time.monotonic() < deadline, f"the scheduler does not list {n} workers"
                time.sleep(0.2)

    def close(self) -> None:
        """Stop the workers, then the scheduler (nothing to save: killed if slow to exit)."""
        for proc in [*self.workers, self.scheduler]:
            stop(proc, timeout=10)
