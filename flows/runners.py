"""Task-runner choice: threads locally, Dask for a local cluster or an existing scheduler."""

from __future__ import annotations

import os
import socket
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from stages.config import ExecutorConfig, scheduler_host_port
from store.errors import ConfigError


def _share_prefect_api() -> None:
    """Point spawned Dask workers at this process's Prefect API; without it each worker starts its
    own ephemeral server (~250 MB and 10-25 s each, measured)."""
    if os.environ.get("PREFECT_API_URL"):
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # this process's ephemeral server (a singleton)
    server.start()  # idempotent
    os.environ["PREFECT_API_URL"] = server.api_url


def build_task_runner(cfg: ExecutorConfig) -> Any:
    """Same flow code, different engine: ``dask=None`` threads, ``local`` a LocalCluster, else an address."""
    if cfg.dask is None:
        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    from prefect_dask import DaskTaskRunner

    if cfg.dask == "local":
        _share_prefect_api()
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": cfg.workers, "threads_per_worker": cfg.threads_per_worker, "processes": True}
        )
    host, port = scheduler_host_port(cfg.dask)
    try:  # distributed would wait 30 s for an unreachable scheduler, then fail inside the flow with a traceback
        socket.create_connection((host, port), timeout=10).close()
    except OSError as exc:
        raise ConfigError(f"executor.dask {cfg.dask}: cannot reach the Dask scheduler "
                          f"({exc.strerror or type(exc).__name__})") from None
    return DaskTaskRunner(address=cfg.dask)
