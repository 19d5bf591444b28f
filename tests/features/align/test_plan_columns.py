"""Align planning works on Arrow columns (issue 18: 10^6 clips plan in seconds): the column-wise
rules must give exactly what the per-clip rules give, or every existing view would rebuild and
L could change."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.align import AlignConfig, clip_grid, grid_lengths
from features.align.view import _clip_rows
from store import schema
from store.fingerprint import canonical_column, canonical_json, hash_obj

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
words = st.one_of(st.none(), st.lists(st.fixed_dictionaries(
    {"word": st.text(max_size=6), "start": st.floats(0, 60), "end": st.floats(0, 60)}), max_size=5))
clip = st.fixed_dictionaries({
    "clip_id": st.text(min_size=1, max_size=12),
    "clip_fingerprint": st.text(max_size=8),
    "text": st.one_of(st.none(), st.text(alphabet=st.sampled_from("ab \t\n\u00a0\u3000x"), max_size=30)),
    "words": words,
    "duration": st.one_of(st.none(), st.floats(-1, 120, allow_nan=False)),
    "label": st.one_of(st.none(), finite),
    "split": st.sampled_from(["train", "valid", "test"]),
    "label_emotion": st.one_of(st.none(), st.sampled_from(["joy", "anger"])),
    "label_sentiment": st.one_of(st.none(), st.sampled_from(["positive", "neutral"])),
})


def _table(clips: list[dict]) -> pa.Table:
    return schema.conform(pa.Table.from_pylist(clips), schema.CLIPS) if clips else schema.CLIPS.empty_table()


@settings(max_examples=80, deadline=None)
@given(clips=st.lists(clip, max_size=8), grid=st.sampled_from(["word", "window"]),
       window=st.floats(0.05, 5), hop=st.floats(0.05, 5))
def test_grid_lengths_count_the_steps_of_every_clip_grid(
    clips: list[dict], grid: str, window: float, hop: float
) -> None:
    cfg = AlignConfig(grid=grid, window=window, hop=hop)
    assert grid_lengths(_table(clips), cfg).tolist() == [len(clip_grid(c, cfg)) for c in clips]


def _classes(clip: dict) -> list[dict[str, str]]:
    """The per-clip rule the view fingerprint was defined with."""
    classes = {k: clip[k] for k in schema.CLASS_LABELS if clip.get(k) is not None}
    return [classes] if classes else []


@settings(max_examples=80, deadline=None)
@given(clips=st.lists(clip, max_size=8))
def test_the_fingerprints_clip_rows_serialise_as_the_per_clip_rule(clips: list[dict]) -> None:
    for c in clips:
        c["duration"] = c["duration"] if c["duration"] is not None else 1.0  # the clip table requires one
    per_clip = [[c["clip_id"], c["clip_fingerprint"], c["label"], c["split"], c["duration"], *_classes(c)]
                for c in clips]
    assert canonical_json({"clips": _clip_rows(_table(clips))}) == canonical_json({"clips": per_clip})
    assert hash_obj({"clips": _clip_rows(_table(clips))}) == hash_obj({"clips": per_clip})


def test_a_non_finite_float_column_cannot_be_fingerprinted() -> None:
    assert canonical_column(pa.chunked_array([[1.0000004, None]])) == [1.0, None]
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="non-finite"):
            canonical_column(pa.array([1.0, bad]))
