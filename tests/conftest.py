"""Shared fixtures: the generated sample dataset (session-wide) and the shared real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from store.runtime import offline_hub
from tests.helpers.paths import SHARED_DATA

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
offline_hub()  # before any test imports transformers



@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Media-fingerprint cache per test session, never the user's."""
    os.environ["EMOFLOW_CACHE_DIR"] = str(tmp_path_factory.mktemp("emoflow-cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory):  # -> corpora.synth.GeneratedDataset
    """12 generated clips in the manifest layout, shared by every test that only reads them."""
    from corpora.synth import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("demo-data"), n_clips=12, seed=7, layout="manifest")


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (own database) for the whole session; patient on 2 cores."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
