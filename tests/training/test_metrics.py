"""MMSA metrics against hand-computed cases (§8)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from training.metrics import (
    METRIC_NAMES,
    UNDEFINED,
    format_cell,
    format_table,
    format_value,
    metrics_json,
    regression_metrics,
)

PRED = np.array([1.4, -0.5, 0.5, 2.5, -2.6, 0.2])
TRUTH = np.array([1.0, 0.0, 0.5, 3.0, -3.0, -0.4])


def test_acc2_has0_and_non0_differ_as_computed_by_hand() -> None:
    m = regression_metrics(PRED, TRUTH)
    # has0: t>=0 = TTTTFF, p>=0 = TFTTFT -> 4/6
    assert m["Has0_acc_2"] == pytest.approx(4 / 6)
    # non0: drop t == 0 (clip 1): t>0 = TTTFF, p>0 = TTTFT -> 4/5
    assert m["Non0_acc_2"] == pytest.approx(4 / 5)
    # weighted F1 has0: class T (support 4) P = R = 3/4; class F (support 2) P = R = 1/2 -> (3 + 1)/6
    assert m["Has0_F1_score"] == pytest.approx(4 / 6)
    # non0: class T (3): P 3/4, R 1 -> 6/7; class F (2): P 1, R 1/2 -> 2/3; weighted (18/7 + 4/3)/5
    assert m["Non0_F1_score"] == pytest.approx((18 / 7 + 4 / 3) / 5)


def test_multiclass_mae_and_corr_by_hand() -> None:
    m = regression_metrics(PRED, TRUTH)
    # Acc-7 rounds: p -> 1, -0, 0, 2, -3, 0 ; t -> 1, 0, 0, 3, -3, -0 -> 5/6
    assert m["Mult_acc_7"] == pytest.approx(5 / 6)
    # Acc-5 clips to ±2 first: p -> 1, -0, 0, 2, -2, 0 ; t -> 1, 0, 0, 2, -2, -0 -> 6/6
    assert m["Mult_acc_5"] == pytest.approx(1.0)
    assert m["MAE"] == pytest.approx((0.4 + 0.5 + 0.0 + 0.5 + 0.4 + 0.6) / 6)
    dp, dt = PRED - PRED.mean(), TRUTH - TRUTH.mean()
    assert m["Corr"] == pytest.approx(float((dp * dt).sum() / math.sqrt((dp**2).sum() * (dt**2).sum())))
    assert list(m) == list(METRIC_NAMES)


def test_acc7_rounds_half_to_even() -> None:
    # half to even: 2.5 -> 2, 0.5 -> 0, -1.5 -> -2 (half away from zero would give 1/3)
    m = regression_metrics(np.array([2.5, 0.5, -1.5]), np.array([2.0, 0.0, -2.0]))
    assert m["Mult_acc_7"] == 1.0


def test_all_zero_labels_leave_non0_undefined_and_bad_shapes_fail() -> None:
    m = regression_metrics(np.array([0.3, -0.2]), np.zeros(2))
    assert math.isnan(m["Non0_acc_2"]) and math.isnan(m["Non0_F1_score"])
    with pytest.raises(ValueError):
        regression_metrics(np.zeros(3), np.zeros(2))


def test_table_prints_accuracies_as_percent_and_mae_corr_as_decimals() -> None:
    m = regression_metrics(PRED, TRUTH)
    table = format_table({"test": m})
    header, rule, row = table.strip().splitlines()
    assert header.split("|")[2].strip() == "Has0_acc_2"
    assert row.split("|")[2].strip() == "66.67"
    assert row.split("|")[8].strip() == "0.400"  # MAE 0.4 stays 0.400 (it is not a percentage)
    assert row.split("|")[9].strip() == f"{m['Corr']:.3f}"


def test_mean_std_table_uses_the_same_rule_per_metric() -> None:
    m = regression_metrics(PRED, TRUTH)
    table = format_table({"full": {k: {"mean": v, "std": 0.01} for k, v in m.items()}}, label="")
    header, _, row = table.strip().splitlines()
    assert header.startswith("| | Has0_acc_2")
    assert row.split("|")[2].strip() == "66.67 ± 1.00"
    assert row.split("|")[8].strip() == "0.400 ± 0.010"
    assert format_value(0.88684, "MAE") == "0.887" and format_value(0.8868, "Non0_acc_2") == "88.68"


def test_nan_labels_and_predictions_are_refused_instead_of_scored() -> None:
    # a NaN label and a negative prediction are both "not >= 0": scored, that was a 100% Has0_acc_2
    with pytest.raises(ValueError, match="labels: 2 of 2 values are NaN"):
        regression_metrics(np.array([0.3, -1.0]), np.array([np.nan, np.nan]))
    with pytest.raises(ValueError, match="predictions: 1 of 2 values are NaN or infinite"):
        regression_metrics(np.array([np.inf, -1.0]), np.array([0.5, -0.5]))


def test_undefined_metrics_are_a_dash_with_a_note_in_tables_and_null_in_strict_json() -> None:
    m = regression_metrics(np.array([0.3, -0.2, 0.1]), np.full(3, 1.0))  # every label equal: no correlation
    assert math.isnan(m["Corr"]) and not math.isnan(m["MAE"])
    assert format_value(m["Corr"], "Corr") == UNDEFINED and format_value(None, "Corr") == UNDEFINED
    assert format_cell({"mean": math.nan, "std": math.nan}, "Corr") == UNDEFINED
    table = format_table({"valid": m, "test": regression_metrics(PRED, TRUTH)})
    assert table.splitlines()[2].split("|")[9].strip() == UNDEFINED
    assert table.splitlines()[3].split("|")[9].strip() == f"{regression_metrics(PRED, TRUTH)['Corr']:.3f}"
    note = table.splitlines()[-1]
    assert note.startswith("Note: Corr is undefined for valid:") and "labels and predictions" in note

    def no_constants(name: str) -> float:
        raise AssertionError(f"{name} is not JSON")

    text = metrics_json({"valid": m})
    assert json.loads(text, parse_constant=no_constants)["valid"]["Corr"] is None
