"""Streaming moments (view normalisation and report statistics): batches combine to the whole
sample's mean/std/min/max, and non-finite entries are counted and left out."""

from __future__ import annotations

import numpy as np

from store.moments import Moments


def test_batches_combine_to_the_moments_of_the_whole_sample() -> None:
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(101, 5))
    mom = Moments(5)
    for lo, hi in ((0, 1), (1, 40), (40, 40), (40, 101)):
        mom.add(x[lo:hi])
    np.testing.assert_allclose(mom.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(mom.std(), x.std(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(mom.min, x.min(axis=0))
    np.testing.assert_array_equal(mom.max, x.max(axis=0))
    assert mom.rows == 101 and mom.nan == mom.inf == 0


def test_non_finite_entries_are_counted_and_skipped_per_dimension() -> None:
    x = np.array([[1.0, np.nan, 5.0], [3.0, np.inf, np.nan], [5.0, np.nan, np.nan]])
    mom = Moments(3)
    mom.add(x)
    assert (mom.rows, mom.nan, mom.inf) == (3, 4, 1)
    assert mom.seen.tolist() == [True, False, True]
    np.testing.assert_allclose(mom.mean, [3.0, 0.0, 5.0])
    np.testing.assert_allclose(mom.std(), [np.sqrt(8 / 3), 0.0, 0.0])
