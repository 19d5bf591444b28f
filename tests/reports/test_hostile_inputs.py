"""The stats report on hostile but possible inputs: clips without a score label (class-only
datasets) and store paths or recorded strings holding Markdown/HTML syntax."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from reports import run_stats
from reports.compute import label_stats
from reports.tables import report_tables
from store import FeatureStore
from store.ids import now_utc

HOSTILE = "A|B `tick` <script>alert(1)</script>\n*x*"


def test_clips_without_a_score_are_left_out_of_every_label_rate() -> None:
    lab = label_stats([-1.0, None, 2.0, None, 0.0])
    assert lab["has0"] == {"negative": 1, "non_negative": 2, "majority_rate": 2 / 3}
    assert lab["n"] == 3 and lab["unlabelled"] == 2
    assert lab["non0"]["majority_rate"] == 0.5
    assert sum(lab["seven"].values()) == 3 and lab["seven"]["0"] == 1
    only_classes = label_stats([None, None])
    assert only_classes["has0"]["majority_rate"] is None and sum(only_classes["seven"].values()) == 0


def test_a_split_of_class_only_clips_shows_no_rate_not_zero_percent() -> None:
    unscored = label_stats([None, None])
    stats: dict[str, Any] = {"splits": ["train"], "labels": {"train": unscored, "all": unscored}}
    stats |= {"clips": {}, "feature_sets": {}, "text": {"splits": {}}, "rejects": {"by_reason": {}},
              "failures": {"by_reason": {}}, "throughput": {}, "views": {}}
    stats["clips"] = {s: {"clips": 2, "videos": 1, "duration": {}, "with_word_timings": 0, "has_video": 0,
                          "has_audio": 0, "text_only": 2} for s in ("train", "all")}
    stats["text"]["splits"] = {s: {"words": {}} for s in ("train", "all")}
    (labels,) = [t for t in report_tables(stats) if t.key == "labels"]
    row = dict(zip(labels.columns, labels.rows[0]))
    assert row["has0 majority"] == "–" and row["non0 majority"] == "–"  # not "0.0%"
    assert row["n"] == 0 and row["no score"] == 2


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def _cells(line: str) -> int:
    """Cells of a Markdown table row: pipes not escaped with a backslash."""
    return len(re.split(r"(?<!\\)\|", line.strip().strip("|")))


def test_markdown_and_html_escape_a_hostile_store_path_and_recorded_error_names(built, tmp_path: Path) -> None:
    """A store folder named with table pipes, backticks, a newline and a <script> tag, and a failure
    row whose error type holds them too: report.md keeps every table row's cell count and passes no raw
    HTML, report.html has no tag the report did not make."""
    folder = tmp_path / HOSTILE
    shutil.copytree(built[1].fs.root, folder / "store")
    st = FeatureStore.open(str(folder / "store"))
    audio = st.sets_for("audio.mfcc")[0].name
    st.record_failures([{"clip_id": built[0].clips[1].clip_id, "feature_set": audio, "extractor": "audio.mfcc",
                         "fingerprint": "e" * 32, "stage": "decode", "error_type": HOSTILE, "message": "m",
                         "transient": False, "run_id": "r2", "time": now_utc()}])
    summary, _ = run_stats(st.url, read_values=False)
    md = Path(summary.files["report.md"]).read_text()
    assert "<script" not in md and "<b>" not in md and "&lt;script&gt;" in md
    assert "\\|" in md and "\\`tick\\`" in md
    table: list[str] = []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            assert {_cells(r) for r in table} == {_cells(table[0])}, table
            table = []
    assert any("A\\|B" in line and line.startswith("| extraction failure") for line in md.splitlines())
    parser = _Tags()
    parser.feed(Path(summary.files["report.html"]).read_text())
    assert "script" not in parser.tags
