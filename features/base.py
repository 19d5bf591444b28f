"""The extractor interface and registry.

Extractors are plain classes that know nothing about Prefect or the store: they take a batch of
``ClipInput`` and return one ``FeatureResult`` (or a ``ClipFailure``) per clip, in order. The flow
layer decides batching, fingerprints and commits. Every output row carries its time span (seconds
from the clip's start) so alignment can pool any modality onto any grid.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict


class ExtractorConfig(BaseModel):
    """Base of every extractor config: strict, immutable, JSON-serialisable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Word:
    """One transcript word with its span in seconds from the clip start."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class ClipInput:
    """What an extractor needs to know about one clip (a row of the clip table)."""

    clip_id: str
    media_uri: str | None
    start: float | None  # window start within the media, seconds (None: from 0)
    end: float | None  # window end within the media, seconds (None: to the end)
    text: str
    duration: float  # clip duration in seconds (end - start, or the media duration)
    words: tuple[Word, ...] | None = None

    @property
    def offset(self) -> float:
        return self.start or 0.0


@dataclass
class FeatureResult:
    """Features of one clip.

    ``values`` [rows, dim] float32; ``times`` [rows, 2] float64 (start, end seconds within the
    clip); ``extras`` maps a name to an array whose first axis is ``rows`` (e.g. token ids, the
    word index of each word piece); ``meta`` is small JSON-able provenance (streams chosen, sample
    rate). ``absent`` names why a modality is missing (no audio stream, empty transcript): such a
    result has zero rows and is committed like any other, so it is not retried.
    """

    values: np.ndarray
    times: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    absent: str | None = None

    @classmethod
    def empty(cls, dim: int, reason: str, meta: dict[str, Any] | None = None) -> FeatureResult:
        return cls(
            values=np.zeros((0, dim), np.float32),
            times=np.zeros((0, 2), np.float64),
            meta=meta or {},
            absent=reason,
        )


@dataclass(frozen=True)
class ClipFailure:
    """A per-clip failure: recorded in the store's failure table, never raised out of a batch."""

    clip_id: str
    stage: str  # "decode", "extract", ...
    error_type: str  # exception class name, e.g. "CorruptMediaError"
    message: str
    transient: bool = False  # True: worth retrying (I/O), False: deterministic (bad media)


class Extractor(ABC):
    """One feature extractor. Subclasses set the class attributes and implement ``extract``.

    Heavy state (models) is loaded lazily and once per process by the subclass, never per clip.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    modality: ClassVar[str]  # "text" | "audio" | "vision"
    config_cls: ClassVar[type[ExtractorConfig]]
    # Config fields that change how fast features are computed, not what they are (device, batch
    # sizes): kept out of identity(), so they never invalidate committed features.
    runtime_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ExtractorConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    @property
    @abstractmethod
    def dim(self) -> int:
        """Feature dimension of ``values``."""

    def model_identity(self) -> dict[str, Any]:
        """What, beyond the config, determines the output (weights hash, tokenizer). Override."""
        return {}

    def identity(self) -> dict[str, Any]:
        """Everything that determines this extractor's output; hashed into feature fingerprints."""
        config = {k: v for k, v in self.config.model_dump(mode="json").items() if k not in self.runtime_fields}
        return {"name": self.name, "version": self.version, "config": config, "model": self.model_identity()}

    def identity_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @abstractmethod
    def extract(self, clips: list[ClipInput]) -> list[FeatureResult | ClipFailure]:
        """Extract a batch; one result per input clip, in order. Never raises for one bad clip."""


def resolve_device(setting: str) -> torch.device:
    """``auto`` → CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is a clear error."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(setting)


_REGISTRY: dict[str, type[Extractor]] = {}


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: add an extractor to the registry under ``cls.name`` (duplicates raise)."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"extractor {cls.name!r} is already registered by {_REGISTRY[cls.name]}")
    _REGISTRY[cls.name] = cls
    return cls


def available_extractors() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_extractor_class(name: str) -> type[Extractor]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown extractor {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def create_extractor(name: str, config: dict[str, Any] | None = None) -> Extractor:
    cls = get_extractor_class(name)
    return cls(cls.config_cls.model_validate(config or {}))


def _load_builtin() -> None:
    """Import the built-in extractor modules so their decorators run."""
    from features import audio, text, vision  # noqa: F401
