"""The plain ``run_align`` and the dry-run plan: a view per config, unchanged runs are no-ops, and
memory:// stores work like directories."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import fsspec
import numpy as np
import pytest

from features.align import AlignConfig
from features.extractors.packaged import default_model_path
from stages.align import align_config_of, plan_align, plan_rows, run_align
from stages.config import PipelineConfig
from store import FeatureStore, open_view
from tests.helpers.paths import REPO
from tests.helpers.stores import text_audio_store


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    return text_audio_store(tmp_path_factory.mktemp("align-data"), tmp_path_factory.mktemp("align") / "store",
                            "test-align")


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


def test_align_records_the_text_model_without_importing_torch(config: PipelineConfig) -> None:
    """Aligning needs the text model's path (what fine-tuning will load), not the model: the align
    command does not pay torch's second-long import for it."""
    code = textwrap.dedent(f"""
        import sys
        from features.align import AlignConfig
        from stages.align import run_align
        from stages.config import PipelineConfig
        from store import open_view
        config = PipelineConfig.model_validate_json({config.model_dump_json()!r})
        run_align(config, AlignConfig(view="light", max_len=6))
        print(open_view(config.store, "light").attrs["text_model_path"])
        print("torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    model_path, torch_imported = out.stdout.strip().splitlines()[-2:]
    assert model_path == str(default_model_path()) and torch_imported == "False"


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
