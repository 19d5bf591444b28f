"""Crash safety: a writer SIGKILLed between shard and index leaves no visible half clip."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from store import FeatureStore
from store.verify import orphan_shards, vacuum, verify

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from features.extractors.base import FeatureResult
    from store import FeatureStore
    from tests.helpers.crash import crash_or_resume

    store = FeatureStore.open(sys.argv[1], create=True)
    fset = store.ensure_feature_set("x-1", {"identity": 1, "dim": 3})

    def clip(i):
        values = np.full((i + 2, 3), i, np.float32)
        return (f"c{i}", f"fp{i}", FeatureResult(values=values, times=np.zeros((i + 2, 2))), 1.0)

    crash_or_resume(fset, sys.argv[2], clip)
    """
)


def _run(store: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WRITER, str(store), mode], capture_output=True, text=True, cwd=Path(__file__).parents[2]
    )


def test_sigkill_between_shard_and_index_hides_the_batch_and_a_rerun_recovers(tmp_path: Path) -> None:
    crashed = _run(tmp_path, "crash")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    store = FeatureStore.open(tmp_path)
    fset = store.feature_set("x-1")
    assert sorted(fset.index().column("clip_id").to_pylist()) == ["c0", "c1"]  # no half clip visible
    assert len(orphan_shards(store, grace_seconds=0)) == 1  # the dead batch's shard
    assert verify(store) == []

    resumed = _run(tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert len(vacuum(store, grace_seconds=0)) == 1
    fresh = FeatureStore.open(tmp_path).feature_set("x-1")
    assert sorted(fresh.index().column("clip_id").to_pylist()) == ["c0", "c1", "c2", "c3"]
    for i in range(4):
        np.testing.assert_array_equal(fresh.read(f"c{i}").values, np.full((i + 2, 3), i, np.float32))
    assert verify(store) == []
    assert orphan_shards(store, grace_seconds=0) == []
