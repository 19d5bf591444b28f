"""The same flow on a real Dask scheduler + worker started on loopback gives the same store."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flows.config import PipelineConfig
from flows.extract import run_extract
from flows.ingest import run_ingest
from store import FeatureStore
from tests.helpers.net import free_port

BIN = Path(sys.executable).parent


@pytest.fixture
def dask_cluster():
    """`dask scheduler` and one `dask worker` process, on 127.0.0.1 only."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [str(BIN / "dask"), "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
         "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
        yield address
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
        for proc in (worker, scheduler):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_extraction_through_a_scheduler_address_equals_the_threads_run(
    dask_cluster: str, demo_data, tmp_path: Path, prefect_harness
) -> None:
    stores = {}
    for runner in ("threads", "dask"):
        cfg = PipelineConfig.model_validate(
            {
                "store": str(tmp_path / runner),
                "dataset": {"path": str(demo_data.root)},
                "executor": {"dask": dask_cluster if runner == "dask" else None},
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
