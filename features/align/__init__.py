"""Alignment: pool every modality's feature rows onto one time grid and write a padded training view.

Every feature row carries its span ``[start, end]`` in seconds from the clip start, so any modality
can be pooled onto any grid:

* ``word`` — one step per transcript word (the clip table's word timings when present, else the
  words spread evenly over the clip, CMU-SDK style). Text pools its word pieces into words through
  ``extras["word_index"]``; audio and vision pool the rows overlapping each word's span.
* ``window`` — fixed windows of ``window`` seconds every ``hop`` seconds over the clip; every
  modality (text: word pieces, ``[CLS]``/``[SEP]`` left out) pools the rows overlapping each window.
* ``none`` — no pooling: each modality's raw rows at its own rate (text: token states including
  ``[CLS]``/``[SEP]``), as Self-MM consumes them.

A step that no row overlaps gets the nearest row (``empty="nearest"``) or zeros, and its mask bit
is False. Padding to ``L`` happens here, never in the feature sets, so a new ``max_len`` re-aligns
without re-extracting. Plain functions, no Prefect: ``flows/align.py`` wraps them in a flow.
"""

from features.align.config import ALIGN_VERSION, DEFAULT_EXTRACTORS, AlignConfig
from features.align.grid import (
    clip_grid,
    grid_lengths,
    nearest_rows,
    overlap_matrix,
    overlap_ranges,
    pool,
    window_grid,
    word_groups,
)
from features.align.view import (
    AlignPlan,
    AlignSummary,
    ModalitySource,
    align_view,
    build_view,
    modality_source,
    plan_alignment,
    resolve_feature_sets,
)

__all__ = [
    "ALIGN_VERSION",
    "DEFAULT_EXTRACTORS",
    "AlignConfig",
    "AlignPlan",
    "AlignSummary",
    "ModalitySource",
    "align_view",
    "build_view",
    "clip_grid",
    "grid_lengths",
    "modality_source",
    "nearest_rows",
    "overlap_matrix",
    "overlap_ranges",
    "plan_alignment",
    "pool",
    "resolve_feature_sets",
    "window_grid",
    "word_groups",
]
