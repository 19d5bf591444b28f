"""``stages.config``: YAML, ``--set`` overrides and typed options into one checked ``PipelineConfig``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from features.align.config import VIEW_NAME_LIMIT
from stages.config import load_config
from store.errors import ConfigError


def test_set_overrides_reach_dotted_extractor_names_through_brackets() -> None:
    cfg = load_config(None, ["extract.extractors[vision.cnn].batch_size=8", "train.k=32", "executor.dask=null"])
    assert cfg.extract.extractors == {"vision.cnn": {"batch_size": 8}}
    assert cfg.train.k == 32 and cfg.executor.dask is None


def test_a_view_name_longer_than_a_file_name_is_refused_naming_the_limit() -> None:
    assert load_config(None, [f"align.view={'v' * VIEW_NAME_LIMIT}"]).align.view == "v" * 255  # fits aligned/<view>
    with pytest.raises(ConfigError, match=r"align\.view: .*256 characters; a view is the folder aligned/<view>, "
                                          r"so at most 255"):
        load_config(None, [f"align.view={'v' * 256}"])


def test_an_invalid_value_names_where_it_may_come_from(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr_other: -1\n")
    with pytest.raises(ConfigError, match=rf"^invalid config \({re.escape(str(path))}\): train.lr_other"):
        load_config(path)
    with pytest.raises(ConfigError, match=rf"^invalid config \({re.escape(str(path))} \+ the command's options\)"):
        load_config(path, ["train.k=7"])
    with pytest.raises(ConfigError, match=r"^invalid config \(the command's options\): train.lr_other"):
        load_config(None, ["train.lr_other=-1"])
