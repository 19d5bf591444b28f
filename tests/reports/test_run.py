"""``run_stats``: the report files (self-contained HTML, Markdown, stats.json), report names and
memory:// stores."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import fsspec
import pytest

from reports import run_stats
from store import FeatureStore
from store.errors import ConfigError
from store.featurestore import NAME_LIMIT, quote_name


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "data", "action")]


def test_run_stats_writes_a_self_contained_report(store_copy: FeatureStore) -> None:
    st = store_copy
    summary, stats = run_stats(st.url)
    out = Path(st.fs.root) / "reports" / "dataset"
    assert summary.report_dir == str(out) and "dataset" in st.report_names()
    html = (out / "report.html").read_text()
    parser = _Collect()
    parser.feed(html)
    parser.close()
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    assert parser.tags.count("img") >= 5 and parser.tags.count("table") >= 6
    assert parser.refs and all(r.startswith("data:image/png;base64,") for r in parser.refs)
    assert "http://" not in html and "https://" not in html and "@import" not in html and "url(" not in html
    saved = json.loads((out / "stats.json").read_text())
    assert saved["clips"] == json.loads(json.dumps(stats["clips"]))
    md = (out / "report.md").read_text()
    assert "missing\\_file" in md and "CorruptMediaError" in md  # Markdown-escaped: renders as missing_file


def test_report_names_are_checked(built) -> None:
    with pytest.raises(ConfigError):
        run_stats(built[1].url, name="../escape")


def test_a_report_name_too_long_for_a_directory_gets_a_cut_hashed_one(store_copy: FeatureStore) -> None:
    name = "weekly-" + "r" * 300
    summary, _ = run_stats(store_copy.url, name=name, read_values=False)
    out = Path(summary.report_dir)
    assert (out / "report.html").is_file() and out.name == quote_name(name) and len(out.name) <= NAME_LIMIT
    assert out.name.startswith("weekly-rrr") and store_copy.report_names() == [out.name]


def test_reports_go_through_fsspec_for_memory_stores(built) -> None:
    data, st = built
    mem = fsspec.filesystem("memory")
    mem.put(st.fs.root, "/stats-mem", recursive=True)
    try:
        summary, stats = run_stats("memory://stats-mem", name="mem")
        assert summary.report_dir == "memory://stats-mem/reports/mem"
        assert mem.exists("/stats-mem/reports/mem/report.html") and mem.exists("/stats-mem/reports/mem/stats.json")
        assert json.loads(mem.cat_file("/stats-mem/reports/mem/stats.json"))["n_clips"] == 7
        assert stats["views"]["v"]["modalities"]["audio"]["present"]["all"]["present"] == 6
    finally:
        mem.rm("/stats-mem", recursive=True)
