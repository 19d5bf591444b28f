"""Feature results made up for store and planning tests (no extractor needed)."""

from __future__ import annotations

import numpy as np

from features.extractors.base import FeatureResult


def feature_result(rows: int, dim: int = 4, seed: int = 0) -> FeatureResult:
    """``rows`` seeded random rows of ``dim`` values, 0.1 s apart, with a ``word_index`` extra."""
    rng = np.random.default_rng(seed)
    times = np.stack([np.arange(rows) * 0.1, np.arange(rows) * 0.1 + 0.1], axis=1)
    return FeatureResult(
        values=rng.normal(size=(rows, dim)).astype(np.float32),
        times=times,
        extras={"word_index": np.arange(rows, dtype=np.int32)},
        meta={"stream": 1},
    )
