"""Stop this command's temporary Prefect server when the command dies, however it dies.

Without ``PREFECT_API_URL`` every flow-running command starts a temporary Prefect server as a child
process (``prefect.server.api.server.SubprocessASGIServer``) and stops it from an ``atexit`` hook.
A command killed by a signal runs no ``atexit`` hook: ``timeout``, ``kill``, a cancelled
scheduled run (SIGTERM) or the kernel's OOM killer (SIGKILL) left the server running, re-parented
to init, with its memory held for good (measured: SIGTERM to ``emoflow demo`` left it behind).

``guard_temporary_server`` marks this process's environment with a token every child inherits and
starts a small watchdog that waits for this process to end: it holds the read end of a pipe whose
write end only this process has, so its read returns when this process is gone, whatever killed it.
The watchdog then stops every Prefect server process that carries the token (read from
``/proc/<pid>/environ``). After a normal exit the ``atexit`` hook has already stopped the server and
the watchdog finds nothing. Linux only (``/proc``); elsewhere nothing is started.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

TOKEN_VARIABLE = "EMOFLOW_COMMAND_TOKEN"
SERVER_MARK = "prefect.server.api.server:create_app"  # in the temporary server's command line

_WATCHDOG = r"""
import os, signal, sys
sys.stdin.buffer.read()  # EOF: the command's process has ended
token, mark = sys.argv[1].encode(), sys.argv[2].encode()
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if mark not in f.read():
                continue
        with open(f"/proc/{pid}/environ", "rb") as f:
            if token in f.read().split(b"\0"):
                os.kill(int(pid), signal.SIGTERM)
    except OSError:
        pass
"""


def guard_temporary_server() -> None:
    """Start the watchdog once per process, when this command would start a temporary server (no
    ``PREFECT_API_URL``) on a system with ``/proc``. A command started by another one gets its own
    token and watchdog: it may die while its parent lives on."""
    if os.environ.get("PREFECT_API_URL") or os.getpid() in _WATCHDOGS or not Path("/proc/self/environ").exists():
        return
    token = f"{os.getpid()}-{secrets.token_hex(8)}"
    read, _write = os.pipe()  # both close-on-exec; the write end stays open until this process ends
    _WATCHDOGS[os.getpid()] = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _WATCHDOG, f"{TOKEN_VARIABLE}={token}", SERVER_MARK],
        env={k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE},  # so it never matches itself
        stdin=read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives a Ctrl-C sent to the command's process group
    )
    os.close(read)
    os.environ[TOKEN_VARIABLE] = token  # inherited by the server the flows start later


_WATCHDOGS: dict[int, subprocess.Popen[bytes]] = {}  # by the guarded pid (a forked child is not guarded)
