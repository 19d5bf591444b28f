"""Task-runner choice: threads locally, Dask for a local cluster or an existing scheduler."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from flows.config import ExecutorConfig


def build_task_runner(cfg: ExecutorConfig) -> Any:
    """Same flow code, different engine: ``dask=None`` threads, ``local`` a LocalCluster, else an address."""
    if cfg.dask is None:
        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    from prefect_dask import DaskTaskRunner

    if cfg.dask == "local":
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": cfg.workers, "threads_per_worker": cfg.threads_per_worker, "processes": True}
        )
    return DaskTaskRunner(address=cfg.dask)
