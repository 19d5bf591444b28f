"""Prefect flows and tasks over ``stages/``, task runners and the CLI. Importing this package sets
offline-safe Prefect defaults; ``ephemeral_flow_settings`` is what flow runs on a temporary server
change besides."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

# Before Prefect is imported anywhere: no analytics calls to the internet, a patient ephemeral
# server start on small machines, and our library loggers routed into Prefect's run logs.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "features,store,training")


@contextmanager
def ephemeral_flow_settings() -> Iterator[None]:
    """Flow runs on this process's temporary Prefect server (no ``PREFECT_API_URL``) send no
    heartbeats: that server stops with the command, so nothing watches them, and Prefect joins its
    heartbeat thread in one-second sleeps, which added up to a second to every flow run (an empty
    flow: 1.08 s with, 0.09 s without, measured). Against a running server heartbeats stay on: they
    are how it tells a crashed run from a running one."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
