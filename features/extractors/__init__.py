"""The feature extractors: the interface and registry (``base``) and the built-in extractors,
registered here by importing their modules (the base never imports its subclasses).

Importing this package loads the built-ins' libraries (torch, transformers, librosa, decord, dlib);
code that only needs clip inputs or media decoding imports ``features.clips`` / ``features.media``.
"""

from features.extractors import audio, egemaps, face, text, vision  # noqa: F401  (their decorators register them)
from features.extractors.base import (
    ClipFailure,
    Extractor,
    ExtractorConfig,
    FeatureResult,
    available_extractors,
    clear_model_caches,
    create_extractor,
    get_extractor_class,
    register_extractor,
)

__all__ = [
    "ClipFailure",
    "Extractor",
    "ExtractorConfig",
    "FeatureResult",
    "available_extractors",
    "clear_model_caches",
    "create_extractor",
    "get_extractor_class",
    "register_extractor",
]
