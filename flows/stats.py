"""``stats_flow``: ``reports.run_stats`` as a Prefect flow that also publishes the report's Markdown
and each of its tables as artifacts with stable keys."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from reports.render import render_markdown
from reports.run import StatsSummary, run_stats
from reports.tables import report_tables, slug
from stages.config import PipelineConfig
from stages.stats import stats_options


def artifact_key(name: str, table: str | None = None) -> str:
    return f"emoflow-stats-{slug(name)}" + (f"-{slug(table)}" if table else "")


def publish_artifacts(stats: dict[str, Any]) -> list[str]:
    """The report's Markdown and each table as Prefect artifacts (stable lowercase-dash keys)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    tables = report_tables(stats)
    name = stats["name"]
    keys = [artifact_key(name)]
    create_markdown_artifact(markdown=render_markdown(stats, tables), key=keys[0],
                             description=f"emoflow dataset statistics of {stats['store']}")
    for t in tables:
        key = artifact_key(name, t.key)
        create_table_artifact(table=t.records() or [dict.fromkeys(t.columns, "")], key=key, description=t.title)
        keys.append(key)
    return keys


@task(name="compute-stats", task_run_name="stats-{name}")
def stats_task(
    store_url: str, view: str | None, name: str | None, read_values: bool
) -> tuple[StatsSummary, dict[str, Any]]:
    return run_stats(store_url, view, name, read_values)


@flow(name="emoflow-stats")
def stats_flow(config: PipelineConfig, view: str | None = None, name: str | None = None,
               read_values: bool | None = None) -> StatsSummary:
    """Statistics of ``config.store`` into ``reports/<name>/`` (``name``: the view's name, else
    ``dataset``), published as a Prefect markdown artifact ``emoflow-stats-<name>`` and one table
    artifact per report table ``emoflow-stats-<name>-<table>``. Arguments left None come from the
    config's ``stats`` section when it has one."""
    view, name, read_values = stats_options(config, view, name, read_values)
    summary, stats = stats_task(config.store, view, name, read_values)
    summary.artifacts = publish_artifacts(stats)
    get_run_logger().info("%s", summary.message)
    return summary
