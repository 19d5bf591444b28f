"""Fixtures for the flow tests that need real processes beside the test: a Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.dask import DaskCluster


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[DaskCluster]:
    """A `dask scheduler` on 127.0.0.1 per module; each test calls ``ensure(n)`` for the live
    workers it needs, so a worker an earlier test killed is replaced, not inherited."""
    with DaskCluster.start(preload=["flows.extract"]) as cluster:
        yield cluster
