"""Every real clip in ../shared/data/clips through the extraction flow; a re-run is a no-op."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from flows.extract import extract_flow
from stages.config import PipelineConfig
from stages.ingest import run_ingest
from store import FeatureStore

MEDIA = (".mp4", ".webm", ".flac", ".ogg", ".mp3")


def test_every_shared_clip_extracts_with_spans_covering_it_and_reruns_as_a_no_op(
    shared_data: Path, tmp_path: Path, prefect_harness
) -> None:
    clips = sorted(p for p in (shared_data / "clips").iterdir() if p.suffix in MEDIA)
    root = tmp_path / "ds"
    (root / "m").mkdir(parents=True)
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip_id", "media", "text", "label", "split"])
        for i, p in enumerate(clips):
            w.writerow([p.stem, f"m/{p.name}", "a real recording", 0.0, ["train", "valid", "test"][i % 3]])
    cfg = PipelineConfig.model_validate(
        {"store": str(tmp_path / "s"), "dataset": {"path": str(root)},
         "extract": {"extractors": {"audio.mfcc": {}, "vision.cnn": {}}, "batch_clips": 4}}
    )
    for p in clips:  # copied: a symlink out of the dataset root is rejected by design
        (root / "m" / p.name).write_bytes(p.read_bytes())
    ingest = run_ingest(cfg)
    assert ingest.clips == len(clips) and ingest.rejects == 0
    durations = {r["clip_id"]: r["duration"] for r in FeatureStore.open(cfg.store).clips().to_pylist()}

    first = extract_flow(cfg)
    assert first.failed == 0
    st = FeatureStore.open(cfg.store)
    for fset in st.sets_for("audio.mfcc") + st.sets_for("vision.cnn"):
        assert sorted(fset.index().column("clip_id").to_pylist()) == sorted(durations)
        for clip_id, dur in durations.items():
            feat = fset.read(clip_id)
            if feat.absent:  # audio-only files have no video stream
                assert fset.attrs["extractor"] == "vision.cnn" and feat.values.shape[0] == 0
                continue
            assert np.isfinite(feat.values).all() and feat.values.shape[1] == fset.attrs["dim"]
            assert feat.times[0, 0] == pytest.approx(0.0, abs=1e-6)
            assert feat.times[-1, 1] == pytest.approx(dur, abs=0.6)
            assert (np.diff(feat.times[:, 0]) >= 0).all()
    video = st.sets_for("vision.cnn")[0].read("nasa_webb_narration").meta
    audio = st.sets_for("audio.mfcc")[0].read("nasa_webb_narration").meta
    assert (video["video_stream"], video["source_size"]) == (3, [480, 270])  # the larger of two streams
    assert (audio["audio_stream"], audio["source_sample_rate"]) == (4, 16000)  # 16 kHz, not 8 kHz

    again = extract_flow(cfg)
    assert all(s["done"] == 0 and s["skipped"] == len(clips) for s in again.sets.values())
