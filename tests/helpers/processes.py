"""Stopping the real processes tests start (servers, workers), whatever state they are in."""

from __future__ import annotations

import os
import signal
import subprocess


def stop(proc: subprocess.Popen, *, timeout: float = 20, group: bool = False) -> None:
    """SIGTERM, then SIGKILL when it has not exited after ``timeout`` s. ``group``: signal its whole
    process group (a process started with ``start_new_session=True`` and every child it started)."""
    if proc.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:  # it exited meanwhile
            pass

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(timeout=10)
