"""The extractor interface and registry.

Extractors are plain classes that know nothing about Prefect or the store: they take a batch of
``ClipInput`` and return one ``FeatureResult`` (or a ``ClipFailure``) per clip, in order. The flow
layer decides batching, fingerprints and commits. Every output row carries its time span (seconds
from the clip's start) so alignment can pool any modality onto any grid.
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import cachetools
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from store.errors import ConfigError, RegistryError
from store.runtime import resolve_device  # noqa: F401 - extractors import it with the rest of their interface


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


def clip_words(clip: ClipInput | Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """The clip's words and their spans [n, 2]: the given word timings, else the whitespace-split
    transcript spread evenly over the clip duration. The one rule for the text extractor (a
    ``ClipInput``) and the aligner (a clip-table row), so a text set's ``word_index`` indexes exactly
    the words the aligner pools onto."""
    if isinstance(clip, ClipInput):
        given = [(w.word, w.start, w.end) for w in clip.words or ()]
        text, duration = clip.text, clip.duration
    else:
        given = [(w["word"], w["start"], w["end"]) for w in clip.get("words") or ()]
        text, duration = clip.get("text") or "", float(clip.get("duration") or 0.0)
    if given:
        return [w for w, _, _ in given], np.array([[a, b] for _, a, b in given], dtype=np.float64).reshape(-1, 2)
    words = text.split()
    edges = np.linspace(0.0, max(duration, 0.0), len(words) + 1)
    return words, np.stack([edges[:-1], edges[1:]], axis=1).reshape(len(words), 2)


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


Loader = TypeVar("Loader", bound=Callable[..., Any])
_MODEL_CACHES: list[Any] = []


def model_cache(load: Loader) -> Loader:
    """Memoise a model loader per process and (hashable) arguments. The condition makes a second
    thread asking for the same model wait for the first load instead of loading it again (a plain
    ``functools.cache`` would run both); loads of different models still run in parallel."""
    cached = cachetools.cached(cache={}, condition=threading.Condition())(load)
    _MODEL_CACHES.append(cached)
    return cached  # type: ignore[return-value]


def clear_model_caches() -> None:
    """Forget every model and extractor cached in this process, so the next use loads it cold
    (benchmarks time model loading; tests start from a known state)."""
    for cached in _MODEL_CACHES:
        cached.cache_clear()


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
    """The registered class; an unknown name is a user error that lists the known ones."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RegistryError(f"unknown extractor {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def create_extractor(name: str, config: dict[str, Any] | None = None) -> Extractor:
    """An extractor from its name and config dict; a bad config is a ``ConfigError`` naming the field."""
    cls = get_extractor_class(name)
    try:
        return cls(cls.config_cls.model_validate(config or {}))
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, f"invalid config of extractor {name!r}") from None


def _load_builtin() -> None:
    """Import the built-in extractor modules so their decorators run."""
    from features import audio, text, vision  # noqa: F401
