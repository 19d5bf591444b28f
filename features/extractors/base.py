"""The extractor interface and registry (the built-in extractors register in ``features.extractors``).

Extractors are plain classes that know nothing about Prefect or the store: they take a batch of
``ClipInput`` and return one ``FeatureResult`` (or a ``ClipFailure``) per clip, in order. The flow
layer decides batching, fingerprints and commits. Every output row carries its time span (seconds
from the clip's start) so alignment can pool any modality onto any grid.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import cachetools
import numpy as np
from pydantic import ConfigDict, ValidationError

from features.clips import ClipInput
from store.config_model import ConfigModel
from store.errors import ConfigError, MediaError, RegistryError


class ExtractorConfig(ConfigModel):
    """Base of every extractor config: strict, immutable, JSON-serialisable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
    # Fields added after feature sets were committed with identities that lack them: left out of the
    # identity while None (their off value), so those sets keep their names; a recorded config that
    # lacks one predates it, so it had the rule off (``recorded_extractor``).
    unset_fields_out_of_identity: ClassVar[tuple[str, ...]] = ()
    # An extras array of per-row booleans; a row where it is False carries no signal (a frame with no
    # face) and alignment leaves it out. None: every row counts.
    row_mask: ClassVar[str | None] = None
    # Rough CPU seconds per media second of a batch on the CPU, one thread (the batches' walls in
    # benchmarks/extract.py): the flow starts the costliest batches first, so the longest one does
    # not start last and run alone on one core.
    cost_per_second: ClassVar[float] = 0.01

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
        config = {k: v for k, v in self.config.model_dump(mode="json").items()
                  if k not in self.runtime_fields and not (k in self.unset_fields_out_of_identity and v is None)}
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
    return cached  # type: ignore[return-value]  # cachetools' wrapper has load's signature; its stubs lose it


def clear_model_caches() -> None:
    """Forget every model and extractor cached in this process, so the next use loads it cold
    (benchmarks time model loading; tests start from a known state)."""
    for cached in _MODEL_CACHES:
        cached.cache_clear()


_REGISTRY: dict[str, type[Extractor]] = {}

#: the built-in extractors' modules; their decorators register them when the registry is first
#: asked, so importing one extractor (or this base) does not load every extractor's libraries
BUILTIN_MODULES = (
    "features.extractors.audio",
    "features.extractors.egemaps",
    "features.extractors.face",
    "features.extractors.text",
    "features.extractors.vision",
)


@functools.cache
def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: add an extractor to the registry under ``cls.name`` (duplicates raise)."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"extractor {cls.name!r} is already registered by {_REGISTRY[cls.name]}")
    _REGISTRY[cls.name] = cls
    return cls


def available_extractors() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_extractor_class(name: str) -> type[Extractor]:
    """The registered class; an unknown name is a user error that lists the known ones."""
    _load_builtins()
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


def recorded_extractor(name: str, config: dict[str, Any]) -> Extractor:
    """The extractor a feature set or training run recorded (its config as dumped then). A field of
    ``unset_fields_out_of_identity`` that the record lacks did not exist yet, so it was off (None),
    whatever its default is now: an older run is reproduced, not refused as different."""
    cls = get_extractor_class(name)
    return create_extractor(name, {**{f: None for f in cls.unset_fields_out_of_identity}, **config})


# --------------------------------------------------------------------------------------------- failures


def clip_window_args(clip: ClipInput) -> dict[str, float | None]:
    """``start``/``end`` for the decoders from a clip row (``end`` falls back to start + duration)."""
    end = clip.end
    if end is None and clip.start is not None and clip.duration > 0:
        end = clip.offset + clip.duration
    return {"start": clip.start, "end": end}


def failure_from_exception(clip: ClipInput, exc: BaseException, stage: str = "decode") -> ClipFailure:
    """A ``ClipFailure`` whose message names the clip, the media and the problem.

    Media errors are deterministic (not retried); plain I/O errors are marked transient.
    """
    if isinstance(exc, MediaError):
        message = str(exc)
        if clip.clip_id not in message:
            message = f"clip {clip.clip_id!r}: {message}"
        return ClipFailure(clip.clip_id, stage, type(exc).__name__, message, transient=False)
    transient = isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, IsADirectoryError))
    message = f"clip {clip.clip_id!r}: {clip.media_uri}: {type(exc).__name__}: {exc}"
    return ClipFailure(clip.clip_id, stage, type(exc).__name__, message, transient=transient)
