"""The feature extractors: the interface and registry (``base``) and the built-in extractors
(``audio``, ``egemaps``, ``face``, ``text``, ``vision``).

The registry imports the built-ins' modules, and with them their libraries (transformers, librosa,
decord, dlib), on its first lookup; importing this package or one extractor module loads only what
that module needs.
"""

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
