"""A real ``prefect server`` on loopback with its own PREFECT_HOME, for tests that need what the
in-process test harness does not give: the CLI, workers in other processes, the scheduler service."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.base import PrefectHttpxSyncClient

from tests.helpers.net import free_port
from tests.helpers.paths import REPO
from tests.helpers.processes import stop

PREFECT = str(Path(sys.executable).parent / "prefect")
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class PrefectServer:
    """A ``prefect server start`` on 127.0.0.1 plus the environment its clients need."""

    def __init__(self, home: Path, env: dict[str, str], proc: subprocess.Popen) -> None:
        self.home = home
        self.env = env
        self.proc = proc
        self.url = env["PREFECT_API_URL"]
        # Prefect's own HTTP client, as the CLI and workers use: it retries the 503 the server
        # answers when SQLite is locked (the scheduler inserting cron runs beside our requests)
        self.http = PrefectHttpxSyncClient(base_url=self.url, timeout=30, raise_on_all_errors=False)

    @classmethod
    @contextmanager
    def start(cls, home: Path) -> Iterator[PrefectServer]:
        """Start the server (its log is ``home/server.log``); it is stopped on exit. Call
        ``wait_healthy`` before the first request."""
        port = free_port()
        env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",
            # a few upcoming cron runs are enough to assert a schedule; 100 per deployment (the
            # default) is a long SQLite write that contends with the tests' requests on 2 cores
            "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "5",
        }
        env.pop("PREFECT_PROFILE", None)
        with (home / "server.log").open("w") as log:
            proc = subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            server = cls(home, env, proc)
            try:
                yield server
            finally:
                server.http.close()
                stop(proc, group=True)

    def wait_healthy(self, timeout: float = 150) -> None:
        """Block until ``/api/health`` answers (the first start migrates a fresh SQLite database)."""
        log = self.home / "server.log"
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"prefect server exited:\n{log.read_text()[-3000:]}"
            try:
                if self.http.get("/health").is_success:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"no /api/health after {timeout} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
        """Run ``prefect ARGS`` against this server from the repository root; its output."""
        proc = subprocess.run(
            [PREFECT, *args], cwd=REPO, env={**self.env, **(env or {})}, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
        assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    @contextmanager
    def worker(self, pool: str, log: Path, cwd: Path) -> Iterator[subprocess.Popen]:
        """A ``prefect worker`` polling ``pool`` (it runs each flow run in a subprocess)."""
        with log.open("w") as out:
            proc = subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", pool, "--limit", "1", "--name", "test-worker"],
                cwd=cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
            try:
                yield proc
            finally:
                stop(proc, group=True)

    def deployment(self, flow: str, name: str) -> dict[str, Any]:
        r = self.http.get(f"/deployments/name/{flow}/{name}")
        r.raise_for_status()
        return r.json()

    def create_run(self, deployment: dict[str, Any], parameters: dict[str, Any] | None = None) -> str:
        """What `prefect deployment run NAME --param ...` does: a flow run scheduled now."""
        r = self.http.post(f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters or {}})
        r.raise_for_status()
        return r.json()["id"]

    def flow_run(self, run_id: str) -> dict[str, Any]:
        r = self.http.get(f"/flow_runs/{run_id}")
        r.raise_for_status()
        return r.json()

    def logs(self, run_id: str) -> str:
        """The flow run's log lines as the server stored them (or the error the server answered)."""
        r = self.http.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
        return "\n".join(f"{x['level']} {x['message']}" for x in r.json()) if r.is_success else r.text

    def wait_for(self, run_id: str, timeout: float, worker_log: Path) -> dict[str, Any]:
        """The flow run once it is in a terminal state; fails the test with its logs after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state_type"] in TERMINAL:
                return run
            time.sleep(1.0)
        pytest.fail(f"flow run {run_id} not finished after {timeout} s (state {run['state_type']}):\n"
                    f"{self.logs(run_id)[-3000:]}\nworker:\n{worker_log.read_text()[-3000:]}")
