"""Small extracted stores built with the plain stages (no Prefect), for tests that read them."""

from __future__ import annotations

from pathlib import Path

from corpora.synth import generate_dataset
from stages.config import ExtractConfig, PipelineConfig
from stages.extract import plan, process_batch
from stages.ingest import run_ingest
from store import FeatureStore


def text_audio_store(data: Path, store: Path, run_id: str) -> PipelineConfig:
    """4 generated clips ingested into ``store`` and extracted with ``text.bert`` and ``audio.mfcc``
    (no vision set: alignment leaves that modality out)."""
    generate_dataset(data, n_clips=4, seed=3, max_seconds=4.0)
    cfg = PipelineConfig.model_validate({"store": str(store), "dataset": {"path": str(data)}})
    run_ingest(cfg)
    st = FeatureStore.open(cfg.store)
    for p in plan(st, ExtractConfig(extractors={"text.bert": {}, "audio.mfcc": {}}, batch_clips=8)):
        for b in p.batches:
            process_batch(cfg.store, b, run_id)
    return cfg
