"""Time grids (word, window) and pooling of time-stamped feature rows onto them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.align.config import AlignConfig
from features.clips import clip_words


def window_grid(duration: float, window: float, hop: float) -> np.ndarray:
    """Windows ``[k*hop, k*hop + window]`` (the last clipped to the clip end) covering the clip;
    at least one window. ``[n, 2]`` float64."""
    duration = max(float(duration), 0.0)
    n = 1 if duration <= window else int(math.ceil((duration - window) / hop - 1e-9)) + 1
    starts = np.arange(n, dtype=np.float64) * hop
    ends = np.minimum(starts + window, duration) if duration > 0 else starts + window
    return np.stack([starts, ends], axis=1)


def clip_grid(row: dict[str, Any], cfg: AlignConfig) -> np.ndarray:
    """The step spans [S, 2] of one clip for the word or window grid (S >= 1).

    A word grid over a clip with no words has one step covering the whole clip, so its audio and
    vision are still pooled (its text is absent)."""
    duration = float(row.get("duration") or 0.0)
    if cfg.grid == "word":
        _, spans = clip_words(row)
        return spans if len(spans) else np.array([[0.0, duration]], dtype=np.float64)
    if cfg.grid == "window":
        return window_grid(duration, cfg.window, cfg.step)
    raise ValueError("grid 'none' has no common grid")


def grid_lengths(clips: pa.Table, cfg: AlignConfig) -> np.ndarray:
    """``len(clip_grid(row, cfg))`` of every clip of a clip table, column-wise: planning needs the
    step counts only (for L), and building 10^6 grids to count them took 20 s."""
    if cfg.grid == "word":  # the given word timings, else the whitespace-split transcript; at least one step
        n = pc.list_value_length(clips.column("words")).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        untimed = np.flatnonzero(n == 0)
        if len(untimed):
            texts = clips.column("text").take(pa.array(untimed)).to_pylist()
            n[untimed] = [len((t or "").split()) for t in texts]
        return np.maximum(n, 1)
    if cfg.grid == "window":  # window_grid's count, element-wise in the same float arithmetic
        duration = np.maximum(clips.column("duration").fill_null(0.0).to_numpy(zero_copy_only=False), 0.0)
        n = np.ceil((duration - cfg.window) / cfg.step - 1e-9) + 1
        return np.where(duration <= cfg.window, 1, n).astype(np.int64)
    raise ValueError("grid 'none' has no common grid")


# -- pooling --------------------------------------------------------------------------------
def overlap_ranges(times: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For rows sorted by start whose ends never decrease (audio and vision frames, word pieces):
    each step's overlapping rows as a range ``[lo, hi)``. None when the rows are not monotone.

    A row ``[a, b]`` overlaps a step ``[s, e]`` when ``a < e`` and ``b > s``; a zero-length step
    ``[s, s]`` takes the rows with ``a <= s < b``."""
    starts, ends = times[:, 0], times[:, 1]
    if len(starts) > 1 and (np.any(np.diff(starts) < 0) or np.any(np.diff(ends) < 0)):
        return None
    s, e = steps[:, 0], steps[:, 1]
    lo = np.searchsorted(ends, s, side="right")
    hi = np.where(e > s, np.searchsorted(starts, e, side="left"), np.searchsorted(starts, s, side="right"))
    return lo, np.maximum(hi, lo)


def overlap_matrix(times: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """[S, R] bool: row r overlaps step s (the definition ``overlap_ranges`` implements fast)."""
    a, b = times[None, :, 0], times[None, :, 1]
    s, e = steps[:, 0:1], steps[:, 1:2]
    span = (a < e) & (b > s)
    point = (a <= s) & (s < b)
    return np.where(e > s, span, point)


def _pool_ranges(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, how: str) -> np.ndarray:
    n_steps, dim = len(lo), values.shape[1]
    out = np.zeros((n_steps, dim), np.float32)
    has = hi > lo
    if not has.any():
        return out
    if how == "last":
        out[has] = values[hi[has] - 1]
    elif how == "mean" and np.isfinite(values).all():
        csum = np.zeros((len(values) + 1, dim), np.float64)
        np.cumsum(values, axis=0, dtype=np.float64, out=csum[1:])
        out[has] = ((csum[hi[has]] - csum[lo[has]]) / (hi[has] - lo[has])[:, None]).astype(np.float32)
    else:
        reduce = np.mean if how == "mean" else np.max
        for i in np.flatnonzero(has):
            out[i] = reduce(values[lo[i] : hi[i]], axis=0)
    return out


def _pool_matrix(values: np.ndarray, members: np.ndarray, how: str) -> np.ndarray:
    out = np.zeros((members.shape[0], values.shape[1]), np.float32)
    for i in range(members.shape[0]):
        idx = np.flatnonzero(members[i])
        if len(idx) == 0:
            continue
        if how == "last":
            out[i] = values[idx[-1]]
        else:
            out[i] = (np.mean if how == "mean" else np.max)(values[idx], axis=0)
    return out


def nearest_rows(times: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """For each step the row closest in time: smallest gap between the spans, ties by centre.
    Steps go in chunks so the [steps, rows] work arrays stay small on long clips."""
    out = np.zeros(len(steps), np.int64)
    chunk = max(1, (1 << 20) // max(1, len(times)))
    mid = times.mean(axis=1)[None, :]
    for lo in range(0, len(steps), chunk):
        st = steps[lo : lo + chunk]
        gap = np.maximum(0.0, np.maximum(times[None, :, 0] - st[:, 1:2], st[:, 0:1] - times[None, :, 1]))
        centre = np.abs(mid - st.mean(axis=1)[:, None])
        out[lo : lo + chunk] = np.lexsort((centre, gap), axis=-1)[:, 0]
    return out


def pool(
    values: np.ndarray,
    times: np.ndarray,
    steps: np.ndarray,
    how: str = "mean",
    empty: str = "nearest",
    groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pool rows (``values [R, D]`` with spans ``times [R, 2]``) into ``steps [S, 2]``.

    Returns ``(pooled [S, D] float32, has_data [S] bool)``. Rows go to the steps they overlap in
    time, unless ``groups`` gives each step's rows as ranges ``(lo, hi)`` (text: word pieces of a
    word). A step with no rows gets the nearest row (``empty="nearest"``) or zeros; either way its
    ``has_data`` is False.
    """
    values = np.asarray(values, np.float32)
    times = np.asarray(times, np.float64).reshape(-1, 2)
    steps = np.asarray(steps, np.float64).reshape(-1, 2)
    if groups is None:
        groups = overlap_ranges(times, steps) if len(times) else (np.zeros(len(steps), int), np.zeros(len(steps), int))
    if groups is not None:
        lo, hi = groups
        out = _pool_ranges(values, lo, hi, how)
        has = hi > lo
    else:
        members = overlap_matrix(times, steps)
        out = _pool_matrix(values, members, how)
        has = np.asarray(members.any(axis=1))
    if empty == "nearest" and len(values) and not has.all():
        miss = np.flatnonzero(~has)
        out[miss] = values[nearest_rows(times, steps[miss])]
    return out, has


def word_groups(word_index: np.ndarray, n_words: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Each word's word-piece rows as ranges ``[lo, hi)`` (pieces are in word order); None if not."""
    wi = np.asarray(word_index).astype(np.int64)
    real = np.flatnonzero(wi >= 0)
    if len(real) and (np.any(np.diff(wi[real]) < 0) or np.any(np.diff(real) != 1)):
        return None
    base = real[0] if len(real) else 0
    words = np.arange(n_words)
    lo = np.searchsorted(wi[real], words, side="left") + base
    hi = np.searchsorted(wi[real], words, side="right") + base
    return lo, hi


# -- planning -------------------------------------------------------------------------------
