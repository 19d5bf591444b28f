"""One writer of a store's clip table at a time.

``emoflow ingest`` replaces the clip table and its rejects as a pair, and ``emoflow predict`` uses
its store's clip table as the working set of one run (ingest, extract, align, score, write). Two
such runs at once would mix their tables: one run's rejects beside the other's clips, or one predict
run scoring (and naming as its own) the media another run ingested. So each holds the store's
writer lock from its first read of the clip table to its last write, and a second run waits for it.
Extraction, align and the store's own commits need no such lock (``store.featurestore``).

Local stores use ``filelock`` (an OS lock, released by the kernel however its holder dies, SIGKILL
included); object stores an exclusive create of the lock object, which a killed holder leaves behind
until it is older than ``STALE_SECONDS``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from filelock import FileLock, Timeout

from store.errors import StoreError
from store.fs import StoreFS

LOCK = ".writer.lock"
HOLDER = ".writer.lock.json"  # who holds the lock (the OS lock file itself is truncated by every waiter)
#: how long a run waits for the store by default: a predict run on a busy inbox takes minutes
WAIT_SECONDS = 3600.0
#: an object-store lock older than this is a killed holder's, and broken
STALE_SECONDS = 6 * 3600.0
_POLL_SECONDS = 0.5


def me(command: str) -> dict[str, Any]:
    """A lock holder's description of this process, for whoever finds the lock taken."""
    return {"command": command, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}


def describe(holder: dict[str, Any]) -> str:
    since = time.time() - float(holder.get("time", time.time()))
    return (f"{holder.get('command', 'another run')} (host {holder.get('host')}, pid {holder.get('pid')}, "
            f"for {since:.0f} s)")


def read_holder(fs: StoreFS, rel: str) -> dict[str, Any]:
    """The holder a lock file names; empty when it is gone, not written yet, or damaged by a killed holder."""
    try:
        return fs.read_json(rel, "lock")
    except (FileNotFoundError, StoreError):
        return {}


def try_lock_object(fs: StoreFS, rel: str, holder: dict[str, Any], stale_seconds: float) -> dict[str, Any] | None:
    """Take the lock object ``rel`` (an exclusive create, on every backend), holding ``holder``: None
    when taken, else the holder that has it. A lock older than ``stale_seconds`` (or unreadable) is a
    killed holder's: it is broken and taken."""
    if fs.create_exclusive(rel, json.dumps(holder).encode()):
        return None
    found = read_holder(fs, rel)
    if time.time() - float(found.get("time", 0.0)) >= stale_seconds:
        fs.rm(rel)
        if fs.create_exclusive(rel, json.dumps(holder).encode()):
            return None
        found = read_holder(fs, rel)
    return found


def _holder(fs: StoreFS) -> dict[str, Any]:
    """Who holds the writer lock: the holder file beside a local OS lock, an object-store lock's body."""
    return read_holder(fs, HOLDER if fs.is_local else LOCK)


@contextmanager
def store_writer(
    url: str, command: str, timeout: float = WAIT_SECONDS, on_wait: Callable[[str], None] | None = None,
) -> Iterator[float]:
    """Hold the writer lock of the store at ``url`` (created if absent) for the block; yields the
    seconds waited for it. ``command`` names this run to a waiting one; ``on_wait`` hears, once,
    who holds the store when this run has to wait. After ``timeout`` seconds a ``StoreError``
    names the holder."""
    fs = StoreFS(url)
    fs.makedirs("")
    start = time.monotonic()
    told = False

    def waiting() -> None:
        nonlocal told
        if on_wait is not None and not told:
            on_wait(f"store {fs.url} is held by {describe(_holder(fs))}; waiting for it")
        told = True

    def refuse() -> StoreError:
        return StoreError(f"store {fs.url} is held by {describe(_holder(fs))}; gave up after {timeout:.0f} s. "
                          "Run again when it has finished")

    if fs.is_local:
        lock = FileLock(fs.path(LOCK), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            waiting()
            try:
                lock.acquire(timeout=max(0.0, timeout - (time.monotonic() - start)), poll_interval=_POLL_SECONDS)
            except Timeout:
                raise refuse() from None
        release: Callable[[], None] = lock.release
    else:
        while try_lock_object(fs, LOCK, me(command), STALE_SECONDS) is not None:  # its time: when taken
            if time.monotonic() - start >= timeout:
                raise StoreError(f"{refuse()}, or delete {fs.path(LOCK)} if that run is dead")
            waiting()
            time.sleep(_POLL_SECONDS)

        def release() -> None:
            fs.rm(LOCK)
    try:
        if fs.is_local:
            fs.write_bytes_atomic(HOLDER, json.dumps(me(command)).encode())
        yield time.monotonic() - start
    finally:
        release()
