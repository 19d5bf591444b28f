"""``emoflow demo -e``: optional extractors join the demo's defaults without changing what it trains on."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from flows.demo import DEMO_OPTIONAL_EXTRACTORS, demo_config


def test_demo_config_adds_optional_extractors(tmp_path: Path) -> None:
    base = demo_config(tmp_path)
    assert sorted(base.extract.extractors) == ["audio.mfcc", "text.bert", "vision.cnn"]
    extra = demo_config(tmp_path, DEMO_OPTIONAL_EXTRACTORS)
    assert sorted(extra.extract.extractors) == ["audio.egemaps", "audio.mfcc", "text.bert", "vision.cnn"]
    assert extra.align == base.align and extra.train == base.train  # the view and model still use audio.mfcc


def test_help_names_the_egemaps_licence() -> None:
    for command in ("extract", "demo"):
        out = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
        assert "audio.egemaps" in out and "non-commercial" in out
