"""``run_stats``: compute a store's statistics and write ``reports/<name>/`` (no Prefect; the flow in
``flows/stats.py`` wraps it and publishes the artifacts)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from reports.compute import compute_stats
from reports.render import render_report
from store import FeatureStore
from store.errors import ConfigError
from store.featurestore import quote_name
from store.fs import StoreFS

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class StatsSummary:
    """What a stats run wrote; ``artifacts`` is filled by the flow."""

    name: str
    report_dir: str
    files: dict[str, str]
    clips: int
    splits: dict[str, int]
    failures: int
    rejects: int
    artifacts: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return (f"report {self.name!r}: {self.clips} clips ("
                + ", ".join(f"{k} {v}" for k, v in self.splits.items())
                + f"), {self.rejects} rejects, {self.failures} active failures -> {self.report_dir}")


def run_stats(store_url: str, view: str | None = None, name: str | None = None,
              read_values: bool = True) -> tuple[StatsSummary, dict[str, Any]]:
    """Plain function (no Prefect): compute the statistics and write ``reports/<name>/``."""
    if name is not None and not NAME_RE.fullmatch(name):
        raise ConfigError(f"report name {name!r}: use letters, digits, '_', '.' and '-' (no spaces or slashes)")
    store = FeatureStore.open(store_url)
    stats = compute_stats(store, view, read_values=read_values, name=name)
    name = stats["name"]
    out = StoreFS(f"{store.url}/reports/{quote_name(name)}")
    files = render_report(stats, out)
    summary = StatsSummary(name=name, report_dir=out.url, files=files, clips=stats["n_clips"],
                           splits={s: stats["clips"][s]["clips"] for s in stats["splits"]},
                           failures=stats["failures"]["total"], rejects=stats["rejects"]["total"])
    return summary, stats

