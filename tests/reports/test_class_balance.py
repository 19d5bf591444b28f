"""Class balance of categorical labels (``label_emotion``, ``label_sentiment``) in the stats report:
counts per class and split, the majority rate over clips with a class, and no section for a
dataset that has none."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from reports import run_stats
from reports.compute import class_stats
from reports.tables import report_tables
from stages.config import PipelineConfig
from stages.ingest import run_ingest
from store import FeatureStore

EMOTIONS = {"train": ["neutral"] * 4 + ["joy"] * 2 + ["anger"], "test": ["neutral", "neutral", "sadness"]}


def test_class_stats_counts_classes_most_frequent_first_and_rates_over_clips_with_one() -> None:
    c = class_stats(["joy", None, "anger", "joy", "joy", None])
    assert c == {"n": 4, "unlabelled": 2, "counts": {"joy": 3, "anger": 1}, "majority_rate": 0.75}
    assert class_stats([None])["majority_rate"] is None


def _meld_like_store(tmp_path: Path) -> str:
    """Text-only clips with MELD's two class labels and no score; one train clip has no emotion."""
    rows = []
    for split, emotions in EMOTIONS.items():
        for i, emotion in enumerate(emotions):
            sentiment = {"neutral": "neutral", "joy": "positive"}.get(emotion, "negative")
            rows.append([f"{split}_{i}", f"dia{i}", "", f"line {i} of {split}", emotion, sentiment, split])
    rows.append(["train_nolabel", "dia9", "", "only a sentiment", "", "positive", "train"])
    data = tmp_path / "data"
    data.mkdir()
    with (data / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip_id", "video_id", "media", "text", "label_emotion", "label_sentiment", "split"])
        w.writerows(rows)
    url = str(tmp_path / "store")
    run_ingest(PipelineConfig.model_validate({"store": url, "dataset": {"path": str(data)}}))
    return url


def test_the_report_shows_each_class_label_per_split_with_its_majority_rate(tmp_path: Path) -> None:
    url = _meld_like_store(tmp_path)
    summary, stats = run_stats(url, read_values=False)
    emo = stats["classes"]["label_emotion"]
    assert emo["train"]["counts"] == {"neutral": 4, "joy": 2, "anger": 1} and emo["train"]["unlabelled"] == 1
    assert emo["test"]["counts"] == {"neutral": 2, "sadness": 1}
    assert emo["all"]["majority_rate"] == 0.6
    assert stats["classes"]["label_sentiment"]["all"]["n"] == 11

    (table,) = [t for t in report_tables(stats) if t.key == "classes-label-emotion"]
    rows = {r[0]: r[1:] for r in table.rows}
    assert table.columns == ["class", "train", "test", "all", "share of all"]
    assert rows["sadness"] == [0, 1, 1, "10.0%"]  # a class the train split lacks shows as 0
    assert rows["(no class)"][:3] == [1, 0, 1] and rows["majority rate"][:3] == ["57.1%", "66.7%", "60.0%"]

    report = Path(summary.report_dir.removeprefix("file://"))
    md = (report / "report.md").read_text()
    assert "## Class balance of label\\_emotion" in md and "| sadness | 0 | 1 | 1 | 10.0% |" in md
    html = (report / "report.html").read_text()
    assert "Class balance of label_emotion per split" in html and html.count("data:image/png;base64,") >= 3
    assert json.loads((report / "stats.json").read_text())["classes"]["label_emotion"]["test"]["n"] == 3


def test_a_dataset_without_class_labels_has_no_class_section(built) -> None:
    _, store = built
    assert isinstance(store, FeatureStore)
    from reports.compute import compute_stats

    stats = compute_stats(store, read_values=False)
    assert stats["classes"] == {}
    assert not [t for t in report_tables(stats) if t.key.startswith("classes-")]
