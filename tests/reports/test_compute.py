"""Dataset statistics against a generated dataset whose labels, splits and durations are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from features.align import AlignConfig, align_view
from reports import compute_stats, render_report
from reports.compute import LABEL_EDGES
from store import FeatureStore


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


def test_value_statistics_equal_those_of_every_clip_read_on_its_own(built) -> None:
    data, st = built
    stats = compute_stats(st)
    for name, entry in stats["feature_sets"].items():
        fset = st.feature_set(name)
        values = np.concatenate([fset.read(c).values for c, row in fset.rows().items() if row.length])
        got = entry["values"]
        assert got["rows"] == len(values) and got["min"] == pytest.approx(float(values.min()))
        assert got["mean"] == pytest.approx(float(values.astype(np.float64).mean(axis=0).mean()))
        assert got["std"] == pytest.approx(float(values.astype(np.float64).std(axis=0).mean()))


def test_a_view_with_injected_nans_reports_them(store_copy: FeatureStore, tmp_path: Path) -> None:
    st = store_copy
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
