"""Fixtures for the flow tests: a Dask cluster beside the test, and the demo run end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from tests.helpers.dask import DaskCluster


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[DaskCluster]:
    """A `dask scheduler` on 127.0.0.1 per module; each test calls ``ensure(n)`` for the live
    workers it needs, so a worker an earlier test killed is replaced, not inherited."""
    with DaskCluster.start(preload=["flows.extract"]) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> tuple[Path, dict[str, str]]:
    """`emoflow demo` once per session: its trained runs also serve the predict tests."""
    from flows.demo import run_demo

    workdir = tmp_path_factory.mktemp("demo")
    return workdir, run_demo(workdir, n_clips=72, seed=0, console=Console(quiet=True))
