"""``stats_options``: explicit arguments over the config's ``stats`` section over the defaults."""

from __future__ import annotations

from types import SimpleNamespace

from stages.config import PipelineConfig, StatsConfig
from stages.stats import stats_options


def test_explicit_arguments_win_over_the_stats_section_then_the_defaults() -> None:
    cfg = PipelineConfig(stats=StatsConfig(view="demo", read_values=False))
    assert stats_options(cfg) == ("demo", None, False)
    assert stats_options(cfg, view="other", name="r", read_values=True) == ("other", "r", True)
    assert stats_options(SimpleNamespace(stats={"name": "n"})) == (None, "n", True)  # type: ignore[arg-type]
    assert stats_options(SimpleNamespace()) == (None, None, True)  # type: ignore[arg-type]
