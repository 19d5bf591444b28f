"""The align flow under Prefect: a view per config, and an unchanged run is a no-op."""

from __future__ import annotations

import pytest

from features.align import AlignConfig
from flows.align import align_flow
from stages.config import PipelineConfig
from store import open_view
from tests.helpers.stores import text_audio_store


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    return text_audio_store(tmp_path_factory.mktemp("align-flow-data"),
                            tmp_path_factory.mktemp("align-flow") / "store", "test-align-flow")


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
