"""A full disk on demand: an in-memory fsspec filesystem with a byte quota, registered as
``quota://`` when this module is imported (a real fault injector for the store's fsspec path)."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import fsspec
from fsspec.implementations.memory import MemoryFileSystem


class QuotaFileSystem(MemoryFileSystem):
    """Writes past the quota raise ENOSPC, like a full disk; without a limit it is a plain memory fs.

    Its own ``store`` (not ``memory://``'s), shared by every instance, as a disk is."""

    protocol = "quota"
    store: ClassVar[dict[str, Any]] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]
    limit: int | None = None
    used = 0
    lock = threading.Lock()

    @classmethod
    @contextmanager
    def room_for(cls, nbytes: int) -> Iterator[None]:
        """The disk fills up after ``nbytes`` more bytes; the space is freed again on exit."""
        cls.limit = cls.used + nbytes
        try:
            yield
        finally:
            cls.limit = None

    def _charge(self, path: str, n: int) -> None:
        with QuotaFileSystem.lock:
            if QuotaFileSystem.limit is not None and QuotaFileSystem.used + n > QuotaFileSystem.limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            QuotaFileSystem.used += n

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        self._charge(path, len(value))
        return super().pipe_file(path, value, mode=mode, **kwargs)

    def _open(self, path, mode="rb", **kwargs):
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
