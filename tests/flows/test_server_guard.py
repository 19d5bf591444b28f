"""A command killed by a signal takes its temporary Prefect server with it (flows.server_guard):
Prefect stops that server from an atexit hook, which no SIGTERM or SIGKILL runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from flows import server_guard
from flows.server_guard import SERVER_MARK, guard_temporary_server
from tests.helpers.processes import stop

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="the guard needs /proc (Linux)")


def _server_child(proc: subprocess.Popen, timeout: float = 120) -> psutil.Process:
    """The temporary Prefect server ``proc`` starts (its child running uvicorn with Prefect's app)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the command ended before its server started"
        for child in psutil.Process(proc.pid).children():
            try:
                if {"uvicorn", SERVER_MARK} <= set(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.2)
    raise AssertionError("no temporary Prefect server started")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_command_killed_by_a_signal_leaves_no_prefect_server_behind(tmp_path: Path, sig: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), EMOFLOW_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "demo", "--workdir", str(tmp_path / "demo"),
                             "--clips", "8"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = None
    try:
        server = _server_child(proc)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        gone, alive = psutil.wait_procs([server], timeout=20)
        assert gone and not alive, f"server {server.pid} still runs after the command died of {sig.name}"
    finally:
        stop(proc)
        if server is not None and server.is_running():  # the failure case: leave no orphan behind
            server.kill()


def test_a_command_on_a_running_server_starts_no_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    monkeypatch.setattr(server_guard, "_WATCHDOGS", {})
    guard_temporary_server()
    assert server_guard._WATCHDOGS == {}
