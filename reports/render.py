"""Rendering: Markdown and one-file HTML through the Jinja2 templates beside this module, and
``render_report``, which writes both plus ``stats.json`` through the store's fsspec layer (so
``memory://`` and object stores work like directories)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reports.plots import report_figures
from reports.tables import ReportTable, fmt, md_text, pct, report_tables
from store.fs import StoreFS

TEMPLATES = Path(__file__).parent / "templates"


def _env(autoescape: bool) -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["pct"] = pct
    env.filters["md"] = md_text  # every untrusted value in a Markdown template goes through it
    return env


def _headline(stats: dict[str, Any]) -> list[tuple[str, str]]:
    c = stats["clips"]["all"]
    return [
        ("clips", f"{stats['n_clips']} ("
         + ", ".join(f"{s} {stats['clips'][s]['clips']}" for s in stats["splits"]) + ")"),
        ("total duration", f"{fmt(c['duration'].get('total'))} s"),
        ("feature sets", ", ".join(stats["feature_sets"]) or "none"),
        ("aligned views", ", ".join(stats["views"]) or "none"),
        ("ingest rejects", str(stats["rejects"]["total"])),
        ("active extraction failures", str(stats["failures"]["total"])),
    ]


def render_markdown(stats: dict[str, Any], tables: list[ReportTable] | None = None) -> str:
    """``report.md``: headline and every table (also the Prefect markdown artifact)."""
    tables = tables if tables is not None else report_tables(stats)
    return _env(False).get_template("report.md.j2").render(stats=stats, tables=tables, headline=_headline(stats))


def render_html(stats: dict[str, Any], tables: list[ReportTable] | None = None,
                figures: list[dict[str, str]] | None = None) -> str:
    """``report.html``: the tables and figures in one self-contained file (inline CSS and PNGs)."""
    tables = tables if tables is not None else report_tables(stats)
    figures = figures if figures is not None else report_figures(stats)
    return _env(True).get_template("report.html.j2").render(stats=stats, tables=tables, figures=figures,
                                                             headline=_headline(stats))


def render_report(stats: dict[str, Any], out_dir: str | StoreFS) -> dict[str, str]:
    """Write ``report.md``, one-file ``report.html`` and ``stats.json`` into ``out_dir`` (a directory,
    an fsspec URL or a StoreFS); returns file name -> full path or URL."""
    fs = out_dir if isinstance(out_dir, StoreFS) else StoreFS(str(out_dir))
    tables = report_tables(stats)
    files = {
        "report.md": render_markdown(stats, tables).encode(),
        "report.html": render_html(stats, tables).encode(),
        "stats.json": json.dumps(stats, indent=1, sort_keys=False, default=str).encode(),
    }
    for fname, data in files.items():
        fs.write_bytes_atomic(fname, data)
    return {fname: f"{fs.url}/{fname}" for fname in files}

