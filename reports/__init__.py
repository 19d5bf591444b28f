"""Dataset statistics reports, Prefect-free: ``compute`` (the numbers), ``tables`` and ``plots``
(what is shown), ``render`` (Markdown, one-file HTML, ``stats.json``) and ``run`` (all of it into
``reports/<name>/`` of a store). ``flows/stats.py`` wraps ``run_stats`` in a flow."""

from reports.compute import compute_stats
from reports.render import render_report
from reports.run import StatsSummary, run_stats

__all__ = ["StatsSummary", "compute_stats", "render_report", "run_stats"]
