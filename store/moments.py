"""Streaming per-dimension moments: the one implementation behind a view's train mean/std
(``features.align``) and the value statistics of a report (``reports.compute``).

Batches combine with Chan et al.'s pairwise update, so no [rows, D] copy of a whole split or
feature set is ever made; non-finite entries are counted and left out of every moment.
"""

from __future__ import annotations

import numpy as np


class Moments:
    """Per-dimension count, mean, M2 (sum of squared deviations), min and max of the finite
    entries, plus the rows seen and the NaN and inf entries skipped."""

    def __init__(self, dim: int) -> None:
        self.n = np.zeros(dim, np.float64)
        self.mean = np.zeros(dim, np.float64)
        self.m2 = np.zeros(dim, np.float64)
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)
        self.rows = 0
        self.nan = 0
        self.inf = 0

    def add(self, x: np.ndarray) -> None:
        """Fold in a batch of rows ``[rows, dim]``."""
        x = np.asarray(x, np.float64).reshape(-1, len(self.n))
        if not len(x):
            return
        self.rows += len(x)
        self.nan += int(np.isnan(x).sum())
        self.inf += int(np.isinf(x).sum())
        ok = np.isfinite(x)
        nb = ok.sum(axis=0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mb = np.where(ok, x, 0.0).sum(axis=0) / np.maximum(nb, 1)
            m2b = (np.where(ok, x - mb, 0.0) ** 2).sum(axis=0)
            tot = self.n + nb
            delta = mb - self.mean
            self.mean = np.where(tot > 0, self.mean + delta * nb / np.maximum(tot, 1), self.mean)
            self.m2 = self.m2 + m2b + delta**2 * self.n * nb / np.maximum(tot, 1)
        self.n = tot
        self.min = np.minimum(self.min, np.where(ok, x, np.inf).min(axis=0))
        self.max = np.maximum(self.max, np.where(ok, x, -np.inf).max(axis=0))

    @property
    def seen(self) -> np.ndarray:
        """[dim] bool: dimensions with at least one finite entry."""
        return self.n > 0

    def std(self) -> np.ndarray:
        """Population std per dimension (0 where nothing was seen)."""
        return np.sqrt(np.where(self.seen, self.m2 / np.maximum(self.n, 1), 0.0))
