"""The align flow under Prefect and the plain ``run_align``: a view per config, unchanged runs are
no-ops, and memory:// stores work like directories."""

from __future__ import annotations

from types import SimpleNamespace

import fsspec
import numpy as np
import pytest

from corpora.synth import generate_dataset
from features.align import AlignConfig
from flows.align import align_config_of, align_flow, plan_align, plan_rows, run_align
from flows.config import ExtractConfig, PipelineConfig
from flows.extract import plan, process_batch
from flows.ingest import run_ingest
from store import FeatureStore, open_view


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    root = tmp_path_factory.mktemp("align-flow-data")
    generate_dataset(root, n_clips=4, seed=3, max_seconds=4.0)
    cfg = PipelineConfig.model_validate({"store": str(tmp_path_factory.mktemp("align-flow") / "store"),
                                         "dataset": {"path": str(root)}})
    run_ingest(cfg)
    st = FeatureStore.open(cfg.store)
    for p in plan(st, ExtractConfig(extractors={"text.bert": {}, "audio.mfcc": {}}, batch_clips=8)):
        for b in p.batches:
            process_batch(cfg.store, b, "test-align-flow")
    return cfg


def test_align_flow_builds_the_view_once_then_is_a_no_op(config: PipelineConfig, prefect_harness) -> None:
    first = align_flow(config, AlignConfig(view="flow", grid="window", window=1.0))
    assert first.changed and first.feature_sets.keys() == {"text", "audio"}
    assert any("vision" in n for n in first.notes)  # no vision set: the modality is left out, said so
    second = align_flow(config, AlignConfig(view="flow", grid="window", window=1.0))
    assert not second.changed and second.fingerprint == first.fingerprint
    assert "up to date" in second.message
    view = open_view(config.store, "flow")
    assert view.attrs["grid"] == "window" and view.modalities == ["audio", "text"]
    assert view.clips.num_rows == 4 and view.attrs["fingerprint"] == first.fingerprint


def test_run_align_and_the_dry_run_plan(config: PipelineConfig) -> None:
    assert align_config_of(config) == AlignConfig()  # no align section yet: the defaults
    p = plan_align(config, AlignConfig(view="plain", max_len=6))
    rows = plan_rows(p)
    assert {r["modality"] for r in rows} == {"text", "audio"} and all(r["L"] == 6 for r in rows)
    assert not p.up_to_date
    summary = run_align(config, AlignConfig(view="plain", max_len=6))
    assert summary.changed and summary.L == {"text": 6, "audio": 6}
    assert plan_align(config, AlignConfig(view="plain", max_len=6)).up_to_date
    # once the lead adds the `align:` section, a mapping or an AlignConfig there is used
    assert align_config_of(SimpleNamespace(align={"view": "x", "grid": "none"})).grid == "none"  # type: ignore[arg-type]


def test_align_into_a_memory_store(config: PipelineConfig) -> None:
    mem = fsspec.filesystem("memory")
    mem.put(FeatureStore.open(config.store).fs.root, "/align-mem", recursive=True)
    try:
        cfg = config.model_copy(update={"store": "memory://align-mem"})
        summary = run_align(cfg, AlignConfig(view="mem", grid="none"))
        assert summary.changed and mem.exists("/align-mem/aligned/mem/view.json")
        local = run_align(config, AlignConfig(view="mem", grid="none"))
        assert local.fingerprint == summary.fingerprint
        a = np.asarray(open_view("memory://align-mem", "mem").array("audio/values")[...])
        b = np.asarray(open_view(config.store, "mem").array("audio/values")[...])
        np.testing.assert_array_equal(a, b)
    finally:
        mem.rm("/align-mem", recursive=True)
