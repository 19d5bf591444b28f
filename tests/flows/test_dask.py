"""The same flow on a real Dask scheduler + worker process on loopback gives the same store."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from flows.extract import run_extract
from stages.config import PipelineConfig
from stages.ingest import run_ingest
from store import FeatureStore
from tests.helpers.dask import DaskCluster


def test_extraction_through_a_scheduler_address_equals_the_threads_run(
    dask_cluster: DaskCluster, demo_data, tmp_path: Path, prefect_harness
) -> None:
    dask_cluster.ensure(1)
    stores = {}
    for runner in ("threads", "dask"):
        cfg = PipelineConfig.model_validate(
            {
                "store": str(tmp_path / runner),
                "dataset": {"path": str(demo_data.root)},
                "executor": {"dask": dask_cluster.address if runner == "dask" else None},
                "extract": {"extractors": {"audio.mfcc": {}, "text.bert": {}}, "batch_clips": 4},
            }
        )
        run_ingest(cfg)
        start = time.perf_counter()
        summary = run_extract(cfg)
        assert summary.failed == 0 and all(s["done"] == 12 for s in summary.sets.values()), summary
        stores[runner] = FeatureStore.open(cfg.store)
        print(runner, f"{time.perf_counter() - start:.1f} s")
    threads, dask = stores["threads"], stores["dask"]
    assert threads.feature_set_names() == dask.feature_set_names()
    for name in threads.feature_set_names():
        a, b = threads.feature_set(name), dask.feature_set(name)
        clips = sorted(a.index().column("clip_id").to_pylist())
        assert clips == sorted(b.index().column("clip_id").to_pylist())
        for clip in clips:
            np.testing.assert_allclose(a.read(clip).values, b.read(clip).values, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(a.read(clip).times, b.read(clip).times)
