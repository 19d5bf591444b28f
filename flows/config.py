"""Pipeline configuration: pydantic models loaded from YAML with ``--set key=value`` overrides.

Precedence: defaults < YAML file < overrides. The resolved config is printed by ``--dry-run`` and
stored next to every output it produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
import os
import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.align import AlignConfig
from store.errors import ConfigError
from training.config import TrainConfig


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(Section):
    path: str | None = Field(None, description="dataset root or manifest file")
    layout: Literal["auto", "manifest", "mmsa", "mosi"] = "auto"
    folds: str | None = Field(None, description="CMU-MOSI folds CSV (video_id,split) if not <root>/folds.csv")

    @field_validator("path", "folds")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return os.path.abspath(value) if value else value


class ExecutorConfig(Section):
    """Where tasks run: threads in this process, or Dask (``local`` cluster or a scheduler address)."""

    dask: str | None = Field(None, description="None: threads; 'local': a LocalCluster; 'tcp://host:port'")
    workers: int = Field(2, ge=1, description="threads, or Dask worker processes for 'local'")
    threads_per_worker: int = Field(1, ge=1)


class ExtractConfig(Section):
    extractors: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"text.bert": {}, "audio.mfcc": {}, "vision.cnn": {}}, description="extractor name -> its config"
    )
    batch_clips: int = Field(8, ge=1, description="at most this many clips per task")
    batch_seconds: float = Field(300.0, gt=0, description="at most this many media seconds per task")
    retries: int = Field(2, ge=0, description="Prefect retries of a batch after a store I/O error")
    force: bool = Field(False, description="recompute clips that are already committed")
    only_failed: bool = Field(False, description="only retry clips with an active failure row")


class StatsConfig(Section):
    view: str | None = Field(None, description="aligned view to summarise (null: every view)")
    name: str | None = Field(None, description="report name under reports/ (null: the view's name, else 'dataset')")
    read_values: bool = Field(True, description="read every feature value for NaN/inf counts and mean/std")


class PipelineConfig(Section):
    store: str = Field("work/store", description="store directory or fsspec URL")
    dataset: DatasetConfig = DatasetConfig()
    executor: ExecutorConfig = ExecutorConfig()
    extract: ExtractConfig = ExtractConfig()
    align: AlignConfig = Field(default_factory=AlignConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    train: TrainConfig = Field(default_factory=TrainConfig, description="MCMF+SLGM settings (training/config.py)")
    runs: str = Field("work/runs", description="where training runs go")

    def with_extractors(self, names: list[str] | None) -> PipelineConfig:
        """This config restricted to extractors ``names`` (their configured settings, else defaults)."""
        if not names:
            return self
        chosen = {name: self.extract.extractors.get(name, {}) for name in names}
        return self.model_copy(update={"extract": self.extract.model_copy(update={"extractors": chosen})})

    @field_validator("store", "runs")
    @classmethod
    def _absolute_store(cls, value: str) -> str:
        """Local paths become absolute: Dask workers and deployments may run from another cwd."""
        return value if "://" in value else os.path.abspath(value)


def _parse_value(text: str) -> Any:
    """YAML scalar parsing, so ``--set extract.batch_clips=8`` gives an int and ``a=null`` None."""
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. store=work/store)")
        key, value = item.split("=", 1)
        node = data
        # dots separate sections, except inside brackets: extract.extractors[vision.cnn].batch_size
        parts = [p.strip("[]") for p in re.findall(r"\[[^\]]*\]|[^.\[\]]+", key.strip())]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(value)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, model: type[BaseModel] = PipelineConfig) -> Any:
    data: dict[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config file must be a mapping")
    data = apply_overrides(data, overrides or [])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid config{f' {path}' if path else ''}:\n" + "\n".join(lines)) from None


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
