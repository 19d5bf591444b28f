"""``stages.config``: YAML, ``--set`` overrides and typed options into one checked ``PipelineConfig``."""

from __future__ import annotations

from stages.config import load_config


def test_set_overrides_reach_dotted_extractor_names_through_brackets() -> None:
    cfg = load_config(None, ["extract.extractors[vision.cnn].batch_size=8", "train.k=32", "executor.dask=null"])
    assert cfg.extract.extractors == {"vision.cnn": {"batch_size": 8}}
    assert cfg.train.k == 32 and cfg.executor.dask is None
