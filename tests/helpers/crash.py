"""The killed-writer scenario the crash tests run in a child process, on a local or an s3:// store."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from store.featureset import FeatureSet


def crash_or_resume(fset: FeatureSet, mode: str, clip: Callable[[int], tuple[Any, ...]]) -> None:
    """``crash``: commit clips 0-1, then die (SIGKILL) after the shard of clips 2-3 is written and
    before its index part; ``resume``: commit whichever of clips 0-3 is not committed (``clip(i)``
    gives clip ``c{i}`` with fingerprint ``fp{i}``)."""
    if mode == "crash":
        fset.commit([clip(0), clip(1)])  # batch 1 commits
        FeatureSet._write_index = lambda self, part, table: os.kill(os.getpid(), signal.SIGKILL)  # type: ignore[method-assign]
        fset.commit([clip(2), clip(3)])
    else:
        done = fset.committed()
        fset.commit([clip(i) for i in range(4) if done.get(f"c{i}") != f"fp{i}"])
