"""Dataset statistics against a generated dataset whose labels, splits and durations are known; the
report files (self-contained HTML, Markdown, stats.json), memory:// stores and Prefect artifacts."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import fsspec
import numpy as np
import pytest

from features.align import AlignConfig, align_view
from features.synth import generate_dataset
from flows.config import ExtractConfig, PipelineConfig
from flows.extract import plan, process_batch
from flows.ingest import run_ingest
from flows.stats import LABEL_EDGES, artifact_key, compute_stats, render_report, run_stats, stats_flow
from store import FeatureStore
from store.errors import ConfigError
from store.featurestore import now_utc

FAST = {"text.bert": {}, "audio.mfcc": {}}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """6 generated clips + a text-only clip + one row rejected at ingest; text and audio extracted,
    one recorded extraction failure and one recorded run with known seconds."""
    root = tmp_path_factory.mktemp("stats-data")
    data = generate_dataset(root, n_clips=6, seed=11, max_seconds=5.0)
    with data.manifest.open("a", newline="") as f:
        w = csv.writer(f)
        w.writerow(["zz_text_only", "", "", "", "a truly awful film", "", "-2.0", "train"])
        w.writerow(["zz_gone", "media/nope.mp4", "", "", "where is it", "", "1.0", "test"])
    url = str(tmp_path_factory.mktemp("stats-store") / "store")
    run_ingest(PipelineConfig.model_validate({"store": url, "dataset": {"path": str(root)}}))
    st = FeatureStore.open(url)
    for p in plan(st, ExtractConfig(extractors=FAST, batch_clips=16)):
        for b in p.batches:
            process_batch(url, b, "test-stats")
    audio = st.sets_for("audio.mfcc")[0].name
    victim = data.clips[0].clip_id
    st.record_failures([{"clip_id": victim, "feature_set": audio, "extractor": "audio.mfcc", "fingerprint": "f" * 32,
                         "stage": "decode", "error_type": "CorruptMediaError", "message": "boom", "transient": False,
                         "run_id": "r1", "time": now_utc()}])
    st.record_run({"run_id": "r1", "feature_set": audio, "extractor": "audio.mfcc", "clips_done": 7,
                   "clips_skipped": 0, "clips_failed": 0, "media_seconds": 30.0, "wall_seconds": 2.0, "time": now_utc()})
    align_view(st, AlignConfig(view="v"))
    return data, st


def test_counts_durations_and_labels_match_the_generator(built) -> None:
    data, st = built
    stats = compute_stats(st, read_values=False)
    gen = list(data.clips)
    for split in ("train", "valid", "test"):
        clips = [c for c in gen if c.split == split] + ([] if split != "train" else ["text-only"])
        entry = stats["clips"][split]
        assert entry["clips"] == len(clips)
        real = [c for c in gen if c.split == split]
        durations = [c.duration for c in real]
        assert entry["has_video"] == len(real) and entry["text_only"] == (1 if split == "train" else 0)
        if split != "train":
            assert entry["duration"]["total"] == pytest.approx(sum(durations), abs=0.05 * len(real))
            assert entry["duration"]["max"] == pytest.approx(max(durations), abs=0.05)
        labels = np.array([c.label for c in real] + ([-2.0] if split == "train" else []))
        lab = stats["labels"][split]
        assert lab["n"] == len(labels) and lab["mean"] == pytest.approx(labels.mean())
        assert lab["histogram"]["counts"] == np.histogram(labels, bins=LABEL_EDGES)[0].tolist()
        assert lab["has0"] == {"negative": int((labels < 0).sum()), "non_negative": int((labels >= 0).sum()),
                               "majority_rate": pytest.approx(max((labels < 0).mean(), (labels >= 0).mean()))}
        seven = np.round(np.clip(labels, -3, 3)).astype(int)
        assert lab["seven"] == {str(k): int((seven == k).sum()) for k in range(-3, 4)}
    assert stats["n_clips"] == 7 and stats["clips"]["all"]["clips"] == 7
    words = {c.clip_id: len(c.words) for c in gen} | {"zz_text_only": 4}
    assert stats["clips"]["all"]["words"]["total"] == sum(words.values())


def test_presence_failures_rejects_and_throughput(built) -> None:
    data, st = built
    stats = compute_stats(st)
    audio = next(s for s in stats["feature_sets"].values() if s["modality"] == "audio")
    assert audio["splits"]["train"]["absent"] == 1 and audio["absent_reasons"] == {"no media file": 1}
    assert audio["splits"]["all"]["present"] == 6 and audio["splits"]["all"]["missing_rate"] == pytest.approx(1 / 7)
    assert audio["splits"]["all"]["failed"] == 1
    assert audio["splits"]["all"]["rows"]["n"] == 6 and audio["splits"]["all"]["rows"]["min"] > 250
    assert audio["values"]["rows"] == audio["splits"]["all"]["rows"]["total"]
    assert audio["values"]["nan"] == 0 and audio["values"]["inf"] == 0 and audio["values"]["std"] > 0
    text = next(s for s in stats["feature_sets"].values() if s["modality"] == "text")
    assert text["splits"]["all"]["present"] == 7
    assert stats["text"]["splits"]["all"]["tokens"]["min"] >= stats["text"]["splits"]["all"]["words"]["min"] + 2
    assert stats["rejects"] == {"total": 1, "by_reason": {"missing_file": 1}}
    assert stats["failures"]["by_reason"] == {"CorruptMediaError": 1} and stats["failures"]["by_stage"] == {"decode": 1}
    (through,) = [t for t in stats["throughput"].values() if t["extractor"] == "audio.mfcc"]
    assert through["realtime_factor"] == pytest.approx(15.0)
    view = stats["views"]["v"]["modalities"]
    assert view["audio"]["present"]["all"] == {"clips": 7, "present": 6, "rate": pytest.approx(6 / 7)}
    assert view["text"]["nan"] == 0 and view["text"]["coverage"] == pytest.approx(1.0)
    json.dumps(stats)  # every figure is JSON


def test_a_view_with_injected_nans_reports_them(built, tmp_path: Path) -> None:
    data, st = built
    align_view(st, AlignConfig(view="nans", grid="window", window=1.0))
    group = st.fs.open_group("aligned/nans", mode="a")
    values = group["audio/values"][...]
    values[1, 0, :5] = np.nan
    values[2, 1, 0] = np.inf
    group["audio/values"][...] = values
    stats = compute_stats(st, view="nans")
    assert list(stats["views"]) == ["nans"] and stats["name"] == "nans"
    audio = stats["views"]["nans"]["modalities"]["audio"]
    assert audio["nan"] == 5 and audio["inf"] == 1 and audio["nonfinite_clips"] == 2
    assert stats["views"]["nans"]["modalities"]["text"]["nan"] == 0
    files = render_report(stats, str(tmp_path / "out"))
    md = (tmp_path / "out" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| nans | window | audio"))
    assert row.rstrip(" |").endswith("| 5 | 1")
    assert set(files) == {"report.md", "report.html", "stats.json"}


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "data", "action")]


def test_run_stats_writes_a_self_contained_report(built) -> None:
    data, st = built
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
    assert "missing_file" in md and "CorruptMediaError" in md


def test_report_names_are_checked(built) -> None:
    with pytest.raises(ConfigError):
        run_stats(built[1].url, name="../escape")


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


def test_stats_flow_publishes_markdown_and_table_artifacts(built, prefect_harness) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    data, st = built
    summary = stats_flow(PipelineConfig.model_validate({"store": st.url}), view="v", name="Flow_Test")
    assert summary.name == "Flow_Test" and summary.artifacts[0] == artifact_key("Flow_Test") == "emoflow-stats-flow-test"
    assert "emoflow-stats-flow-test-splits" in summary.artifacts
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=summary.artifacts)))
    by_key = {a.key: a for a in arts}
    assert set(by_key) == set(summary.artifacts)
    assert by_key["emoflow-stats-flow-test"].type == "markdown"
    assert "Clips and durations" in by_key["emoflow-stats-flow-test"].data
    splits = by_key["emoflow-stats-flow-test-splits"]
    assert splits.type == "table"
    rows = json.loads(splits.data) if isinstance(splits.data, str) else splits.data
    assert {r["split"]: r["clips"] for r in rows}["train"] == summary.splits["train"]
    assert (Path(st.fs.root) / "reports" / "Flow_Test" / "report.html").is_file()
