"""Which statistics report a run makes: explicit arguments, else the config's ``stats`` section."""

from __future__ import annotations

from stages.config import PipelineConfig


def stats_options(config: PipelineConfig, view: str | None = None, name: str | None = None,
                  read_values: bool | None = None) -> tuple[str | None, str | None, bool]:
    """Explicit arguments over the config's ``stats:`` section (when it has one) over the defaults."""
    section = getattr(config, "stats", None)
    get = (lambda k, d: section.get(k, d)) if isinstance(section, dict) else (lambda k, d: getattr(section, k, d))
    return (view if view is not None else get("view", None),
            name if name is not None else get("name", None),
            read_values if read_values is not None else bool(get("read_values", True)))
