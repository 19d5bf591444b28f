"""One generated, extracted and aligned store shared by the report tests. It is read-only: a test
that writes (a report, a view) works on its own copy (``store_copy``), so no test depends on what
another left behind."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from corpora.synth import GeneratedDataset, generate_dataset
from features.align import AlignConfig, align_view
from stages.config import ExtractConfig, PipelineConfig
from stages.extract import plan, process_batch
from stages.ingest import run_ingest
from store import FeatureStore
from store.ids import now_utc

FAST = {"text.bert": {}, "audio.mfcc": {}}


@pytest.fixture(scope="package")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[GeneratedDataset, FeatureStore]:
    """6 generated clips + a text-only clip + one row rejected at ingest; text and audio extracted,
    one recorded extraction failure, one recorded run with known seconds, and the view ``v``."""
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
                   "clips_skipped": 0, "clips_failed": 0, "media_seconds": 30.0, "wall_seconds": 2.0,
                   "time": now_utc()})
    align_view(st, AlignConfig(view="v"))
    return data, st


@pytest.fixture
def store_copy(built: tuple[GeneratedDataset, FeatureStore], tmp_path: Path) -> FeatureStore:
    """A private copy of the built store, for tests that write into it."""
    dst = tmp_path / "store"
    shutil.copytree(built[1].fs.root, dst)
    return FeatureStore.open(dst)
