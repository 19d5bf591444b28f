"""Degenerate but possible data for training and evaluation (docs/reliability.md, "Training on
degenerate data"): what no run can learn from or score honestly is refused before any work, naming
the view, split, clip or setting; what is unusual but legitimate trains, and an undefined metric is
null with a note saying why."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.train import train_plan
from store.errors import ConfigError, StoreError
from store.views import open_view
from tests.helpers.training import one_torch_thread, rewrite_view, tiny_config, write_tiny_view
from training.metrics import undefined_notes
from training.targets import Target, view_classes
from training.train import evaluate_run, train_on_view

CLASSES = ("negative", "neutral", "positive")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _with_column(root: Path, column: str, values: Any, typ: pa.DataType, **view: Any) -> pa.Table:
    """A tiny view whose clip-table ``column`` is replaced: ``values(clips)`` gives the new values."""
    arrays = write_tiny_view(root, **view)
    clips = open_view(root, "tiny").clips
    changed = clips.set_column(clips.column_names.index(column), column, pa.array(values(clips), typ))
    rewrite_view(root, arrays, clips=changed)
    return changed


def _per_split(clips: pa.Table, column: str, new: Any) -> list[Any]:
    """``column`` with each clip's value replaced by ``new(split, old, position)``."""
    return [new(s, v, i) for i, (s, v) in enumerate(zip(clips.column("split").to_pylist(),
                                                         clips.column(column).to_pylist()))]


def _first_in(split: str, value: float) -> Any:
    """Scores with the first clip of ``split`` set to ``value``."""
    def values(clips: pa.Table) -> list[Any]:
        first = clips.column("split").to_pylist().index(split)
        return _per_split(clips, "label", lambda s, v, i: value if i == first else v)
    return values


# -- scores off the scale ---------------------------------------------------------------------------
@pytest.mark.parametrize(("split", "value", "shown"), [
    ("train", 1e6, "1e+06"),  # trained on silently
    ("train", float("inf"), "inf"),  # was "training diverged ... lower the learning rates"
    ("test", float("-inf"), "-inf"),  # was a ValueError traceback after training, from the metrics
])
def test_a_score_outside_minus_3_to_3_is_refused_naming_the_clip_before_any_work(
    tmp_path: Path, split: str, value: float, shown: str,
) -> None:
    clips = _with_column(tmp_path / "store", "label", _first_in(split, value), pa.float64())
    clip = clips.column("clip_id")[clips.column("split").to_pylist().index(split)].as_py()
    message = re.escape(f"aligned view 'tiny': 1 clip(s) have a score label outside [-3, 3] "
                        f"('{clip}' ({split}): {shown})")
    with pytest.raises(ConfigError, match=message):
        train_plan(tiny_config(), "full", None, store=str(tmp_path / "store"), view="tiny")  # train --dry-run
    with pytest.raises(ConfigError, match=message):
        train_on_view(tmp_path / "store", "tiny", tiny_config(max_epochs=1), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.none()), min_size=1,
                max_size=12))
def test_check_labels_refuses_exactly_the_scores_outside_the_scale(labels: list[float | None]) -> None:
    clips = pa.table({"clip_id": [f"c{i}" for i in range(len(labels))], "split": ["train"] * len(labels),
                      "label": pa.array(labels, pa.float64())})
    y = np.array([np.nan if v is None else v for v in labels], dtype=np.float64)
    off = int(np.count_nonzero(~np.isnan(y) & ~(np.abs(y) <= 3.0)))
    if off:
        with pytest.raises(ConfigError, match=rf"^aligned view 'v': {off} clip\(s\) have a score label outside"):
            Target("score").check_labels(clips, "v")
    else:  # NaN/None is no label (left out and counted), not a bad one
        Target("score").check_labels(clips, "v")


# -- SLGM needs both signs --------------------------------------------------------------------------
@pytest.mark.parametrize(("score", "missing", "zeros"), [
    (1.5, "a negative score", ""),  # every train score equal: the negative centre stays the zero vector
    (0.0, "a positive or a negative score", "; 24 are 0, which is in neither class (train.exclude_zero)"),
])
def test_slgm_on_train_scores_that_leave_a_class_centre_empty_is_refused_and_trains_without_slgm(
    tmp_path: Path, score: float, missing: str, zeros: str,
) -> None:
    _with_column(tmp_path / "store", "label", lambda clips: [score] * clips.num_rows, pa.float64())
    message = (f"aligned view 'tiny': SLGM needs positive and negative training scores for its class centres, but "
               f"none of the 24 labelled train clips has {missing}{zeros}; train without SLGM (--ablation no_slgm, "
               "or --set train.use_slgm=false)")
    with pytest.raises(ConfigError) as caught:
        train_plan(tiny_config(), "full", None, store=str(tmp_path / "store"), view="tiny")
    assert str(caught.value) == message
    with pytest.raises(ConfigError, match="SLGM needs positive and negative"):
        train_on_view(tmp_path / "store", "tiny", tiny_config(max_epochs=1), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    # the hint works, and every label being equal is reported, not hidden
    run, _ = train_on_view(tmp_path / "store", "tiny", tiny_config(max_epochs=1, use_slgm=False), tmp_path / "run")
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["test"]["Corr"] is None and "Note: Corr is undefined for valid, test" in \
        (run.path / "metrics.md").read_text()


# -- classes ----------------------------------------------------------------------------------------
def test_a_classifier_whose_train_clips_all_have_one_class_is_refused_before_any_work(tmp_path: Path) -> None:
    _with_column(tmp_path / "store", "label_sentiment",
                 lambda clips: _per_split(clips, "label_sentiment", lambda s, v, i: "positive" if s == "train" else v),
                 pa.string())
    with pytest.raises(ConfigError, match=r"^target 'sentiment': every labelled train clip of view 'tiny' has class "
                                          r"'positive' \(the view's classes: negative, neutral, positive\); a "
                                          r"classifier learns nothing from one class"):
        train_plan(tiny_config(target="sentiment"), "full", None, store=str(tmp_path / "store"), view="tiny")


def test_configured_classes_that_leave_out_a_class_of_the_clips_are_refused_not_its_clips_dropped() -> None:
    clips = pa.table({"label_sentiment": ["negative", "neutral", "positive", "neutral", None]})
    assert view_classes(clips, "sentiment", ["positive", "neutral", "negative"]) == ["positive", "neutral", "negative"]
    assert view_classes(clips, "sentiment", [*CLASSES, "surprise"]) == [*CLASSES, "surprise"]  # a class no clip has
    with pytest.raises(ConfigError, match=r"^train.classes \['negative', 'positive'\] leaves out class\(es\) "
                                          r"\['neutral'\] that 2 clip\(s\) of the view carry in 'label_sentiment'"):
        view_classes(clips, "sentiment", ["negative", "positive"])


@pytest.mark.parametrize("name", ["macro", "weighted"])
def test_a_class_named_like_an_f1_average_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"a class cannot be called '{name}' \(its per-class F1 would be reported "
                                          rf"as F1_{name}"):
        Target("emotion", ["anger", name])


def test_the_f1_of_a_class_a_split_has_no_clip_of_is_undefined_and_f1_macro_averages_the_classes_it_has() -> None:
    target = Target("sentiment", CLASSES)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    truth = np.array([0, 1, 0, 0])  # no positive clip; one negative clip predicted neutral
    m = target.metrics(probs, truth)
    assert np.isnan(m["F1_positive"])  # was 0.0: a score for a class that was never there
    assert m["F1_negative"] == pytest.approx(0.8) and m["F1_neutral"] == pytest.approx(2 / 3)
    assert m["F1_macro"] == pytest.approx((0.8 + 2 / 3) / 2)  # was (0.8 + 2/3 + 0) / 3
    notes = undefined_notes({"valid": m})
    assert notes == ["F1_positive is undefined for valid: the split has no clip of class 'positive', so no recall "
                     "and no F1 (F1_macro averages the classes the split has)"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=20))
def test_per_class_f1_is_undefined_exactly_for_the_classes_without_a_clip(pairs: list[tuple[int, int]]) -> None:
    from sklearn.metrics import f1_score

    truth = np.array([t for t, _ in pairs])
    probs = np.eye(4)[[p for _, p in pairs]] * 0.9 + 0.025
    m = Target("emotion", ["a", "b", "c", "d"]).metrics(probs, truth)
    for k, c in enumerate("abcd"):
        assert np.isnan(m[f"F1_{c}"]) == (k not in truth)
    held = sorted(set(truth.tolist()))
    assert m["F1_macro"] == pytest.approx(f1_score(truth, probs.argmax(1), labels=held, average="macro",
                                                   zero_division=0))


def test_a_class_valid_has_no_clip_of_trains_and_its_valid_f1_is_null_with_a_note(tmp_path: Path) -> None:
    _with_column(tmp_path / "store", "label_sentiment",  # 'surprise' only in test: never trained, never validated
                 lambda clips: _per_split(clips, "label_sentiment",
                                          lambda s, v, i: "surprise" if s == "test" and i % 2 else v), pa.string())
    run, _ = train_on_view(tmp_path / "store", "tiny", tiny_config(target="sentiment", max_epochs=1), tmp_path / "run")
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["valid"]["F1_surprise"] is None and isinstance(metrics["test"]["F1_surprise"], float)
    assert "Note: F1_surprise is undefined for valid: the split has no clip of class 'surprise'" in \
        (run.path / "metrics.md").read_text()


# -- the clip table ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("where", "message"), [
    ("same split", r"lists clip '(clip\d+)' 2 times \(in (\w+) 2 times\)"),
    ("train and test", r"lists clip '(clip\d+)' 2 times \(in test, train\)"),  # test clips trained on
])
def test_a_clip_table_that_lists_a_clip_twice_is_refused_before_any_work(
    tmp_path: Path, where: str, message: str,
) -> None:
    def twice(clips: pa.Table) -> list[str]:
        ids, split = clips.column("clip_id").to_pylist(), clips.column("split").to_pylist()
        a = split.index("train")
        b = split.index("train", a + 1) if where == "same split" else split.index("test")
        ids[b] = ids[a]
        return ids

    _with_column(tmp_path / "store", "clip_id", twice, pa.string())
    with pytest.raises(ConfigError, match=rf"^aligned view 'tiny': its clip table {message}; a clip is one row"):
        train_on_view(tmp_path / "store", "tiny", tiny_config(max_epochs=1), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_clip_table_that_points_two_clips_at_one_row_is_refused(tmp_path: Path) -> None:
    _with_column(tmp_path / "store", "row", lambda clips: [0, *range(clips.num_rows - 1)], pa.int64())
    with pytest.raises(ConfigError, match=r"its clip table points clip 'clip001' at array row 0, which another clip "
                                          r"has"):
        train_plan(tiny_config(), "full", None, store=str(tmp_path / "store"), view="tiny")


# -- refused by train --dry-run as by the run -------------------------------------------------------
def test_train_dry_run_refuses_a_modality_no_train_clip_has_as_the_run_does(tmp_path: Path) -> None:
    arrays = write_tiny_view(tmp_path / "store")
    arrays["audio/present"][:] = False
    arrays["audio/lengths"][:] = 0
    rewrite_view(tmp_path / "store", arrays)
    with pytest.raises(ConfigError, match="view 'tiny': modality 'audio' is present for no train clip"):
        train_plan(tiny_config(), "full", None, store=str(tmp_path / "store"), view="tiny")


# -- evaluating a run -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run on a view without a test split, and its store moved elsewhere since: (run, store)."""
    root = tmp_path_factory.mktemp("moved")
    write_tiny_view(root / "store", splits={"train": 12, "valid": 6})
    train_on_view(root / "store", "tiny", tiny_config(max_epochs=1), root / "run")
    shutil.move(root / "store", root / "elsewhere")
    return root / "run", root / "elsewhere"


def test_evaluating_a_run_whose_store_moved_says_to_give_its_new_location(moved: tuple[Path, Path]) -> None:
    run, store = moved
    with pytest.raises(StoreError, match=r"no aligned view 'tiny' .*; it is the store .*run.json records: if the "
                                         r"store moved, give its new location \(evaluate --store\)"):
        evaluate_run(run, "valid")
    assert evaluate_run(run, "valid", str(store)) == json.loads((run / "metrics.json").read_text())["valid"]


def test_evaluating_a_split_the_view_lacks_names_the_splits_it_has(moved: tuple[Path, Path]) -> None:
    run, store = moved
    with pytest.raises(ConfigError, match=r"^view 'tiny' has no clips in split 'test' \(its splits: train, valid\)$"):
        evaluate_run(run, "test", str(store))
