"""Pipeline configuration: pydantic models loaded from YAML with ``--set key=value`` overrides.

Precedence: defaults < YAML file < ``--set`` overrides < typed CLI options. The file and each
override value are read as YAML 1.2 (``read_yaml``), OmegaConf sets each override at its key path
(brackets quote a name with dots: ``extract.extractors[vision.cnn].batch_size=8``); override values
are YAML scalars or flow collections; the pydantic models then type and check the result. The
resolved config is printed by ``--dry-run`` and stored next to every output it produced.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAMLError

from corpora.segments import SegmentConfig
from features.align import AlignConfig
from store.config_model import ConfigModel
from store.errors import ConfigError
from store.yaml12 import read_yaml, yaml_problem
from training.config import TrainConfig


def local_path(value: str) -> str:
    """A local path made absolute (Dask workers and deployments may run from another cwd), ``~`` being
    the home folder as in a shell: a config file or a quoted ``--set`` has no shell to expand it, and
    ``<cwd>/~/...`` is never what was meant."""
    return os.path.abspath(os.path.expanduser(value))


def absolute_location(value: str) -> str:
    """A store or output location: URLs stay as they are, local paths go through ``local_path``. An
    empty one is refused: it would be the working directory, and it is what an unset variable gives
    (``--store "$STORE"``, or ``{{ $EMOFLOW_STORE }}`` in ``prefect.yaml``)."""
    if not value.strip():
        raise ValueError("is empty, which would put the store in the working directory; give a folder or URL "
                         "(for a deployment: export EMOFLOW_STORE before `prefect deploy`)")
    return value if "://" in value else local_path(value)


class Section(ConfigModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(Section):
    path: str | None = Field(None, description="dataset root or manifest file")
    # media: new unlabeled media to score; mmsa-pkl: an MMSA feature pickle (docs/interop.md)
    layout: Literal["auto", "manifest", "mmsa", "mosi", "media", "meld", "mmsa-pkl"] = "auto"
    folds: str | None = Field(None, description="CMU-MOSI folds CSV (video_id,split) if not <root>/folds.csv")

    @field_validator("path", "folds")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return local_path(value) if value else value


def scheduler_host_port(address: str) -> tuple[str, int]:
    """(host, port) of a Dask scheduler address, ``[tcp://|tls://]host:port``; ``ValueError`` naming
    the form otherwise (distributed's own parser fails later, with a traceback, on ``foo``)."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
        raise ValueError(f"{address!r} is neither 'local' nor a scheduler address tcp://host:port")
    return parts.hostname, port


class ExecutorConfig(Section):
    """Where tasks run: threads in this process, or Dask (``local`` cluster or a scheduler address)."""

    dask: str | None = Field(None, description="None: threads; 'local': a LocalCluster; 'tcp://host:port'")
    workers: int = Field(2, ge=1, description="threads, or Dask worker processes for 'local'")
    threads_per_worker: int = Field(1, ge=1)

    @field_validator("dask")
    @classmethod
    def _scheduler(cls, value: str | None) -> str | None:
        if value is not None and value != "local":
            scheduler_host_port(value)
        return value


def _default_extractors() -> dict[str, dict[str, Any]]:
    return {"text.bert": {}, "audio.mfcc": {}, "vision.cnn": {}}


class ExtractConfig(Section):
    extractors: dict[str, dict[str, Any]] = Field(
        default_factory=_default_extractors, description="extractor name -> its config"
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


class PredictConfig(Section):
    """``emoflow predict``: where new media's segments, features and predictions go, and how they are cut."""

    store: str = Field("work/predict", description="predict store: segments, features, predictions/<run>/")
    segment: SegmentConfig = Field(default_factory=SegmentConfig, description="how media is cut into segments")
    seed: int | None = Field(None, description="score with this seed of the run only (null: every seed, averaged)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the model runs")
    batch_size: int = Field(64, ge=1, description="segments per forward pass")

    @field_validator("store")
    @classmethod
    def _absolute_store(cls, value: str) -> str:
        return absolute_location(value)


class PipelineConfig(Section):
    store: str = Field("work/store", description="store directory or fsspec URL")
    dataset: DatasetConfig = DatasetConfig()
    executor: ExecutorConfig = ExecutorConfig()
    extract: ExtractConfig = ExtractConfig()
    align: AlignConfig = Field(default_factory=AlignConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    train: TrainConfig = Field(default_factory=TrainConfig, description="MCMF+SLGM settings (training/config.py)")
    runs: str = Field("work/runs", description="where training runs go")
    predict: PredictConfig = Field(default_factory=PredictConfig)

    def with_extractors(self, names: list[str] | None) -> PipelineConfig:
        """This config restricted to extractors ``names`` (their configured settings, else defaults);
        an unknown name raises ``RegistryError`` here, before any feature set is planned or created."""
        if not names:
            return self
        from features.extractors.base import (
            get_extractor_class,  # the registry imports torch: not for every config
        )

        for name in names:
            get_extractor_class(name)
        chosen = {name: self.extract.extractors.get(name, {}) for name in names}
        return self.model_copy(update={"extract": self.extract.model_copy(update={"extractors": chosen})})

    @field_validator("store", "runs")
    @classmethod
    def _absolute_store(cls, value: str) -> str:
        return absolute_location(value)


def _read_yaml(path: str | Path | None) -> DictConfig:
    """The config file ``path`` (none: empty) as OmegaConf nodes; every way it cannot be a config is a
    ``ConfigError`` naming the file."""
    if path is None:
        return OmegaConf.create()
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: a config file must be UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = read_yaml(text)
    except YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if data is None:  # an empty file (or only comments): the defaults
        return OmegaConf.create()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of settings, not a {type(data).__name__}")
    try:
        return OmegaConf.create(data)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {' '.join(str(exc).split())}") from None


def _override(item: str) -> tuple[str, Any]:
    """``key.sub=value`` -> (OmegaConf key path, YAML value): ``batch_clips=8`` gives an int, ``a=null`` None."""
    key, sep, value = item.partition("=")
    if not sep:
        raise ConfigError(f"override {item!r} is not key=value (e.g. store=work/store)")
    try:
        return key.strip(), read_yaml(value) if value else ""
    except YAMLError as exc:
        raise ConfigError(f"override {item!r}: the value is not YAML ({yaml_problem(exc)})") from None


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    options: Mapping[str, Any] | None = None,
    model: type[BaseModel] = PipelineConfig,
) -> Any:
    """``model`` from the YAML file ``path``, then ``overrides`` (``key.sub=value`` strings), then
    ``options`` (dotted key -> a value already typed, as CLI options give them: set as is, never
    re-parsed from text). Each replaces what it names, a mapping included."""
    data = _read_yaml(path)
    settings = [_override(item) for item in overrides or []] + list((options or {}).items())
    try:
        for key, value in settings:
            OmegaConf.update(data, key, value, merge=False)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"override: {' '.join(str(exc).split())}") from None
    try:
        return model.model_validate(OmegaConf.to_container(data, resolve=False))
    except ValidationError as exc:
        sources = [str(path)] * bool(path) + ["the command's options"] * bool(settings)  # where a bad value may be
        raise ConfigError.from_validation(exc, f"invalid config ({' + '.join(sources) or 'defaults'})") from None


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
