"""SLGM against values worked out by hand from the spec's equations (§4)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from training.slgm import SLGM, class_mean, distance, masked_class_mean, new_unimodal_label, relative_offset


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def epoch1_slgm(**kwargs: object) -> SLGM:
    """4 train clips, y_m = [2, -1, 0, 1]; after epoch 1 the centres are
    m: c+ = mean(F_m[0], F_m[3]) = (3, 0), c- = F_m[1] = (0, 4)   (clip 2, label 0, excluded)
    l: c+ = mean((6, 0), (0, 0)) = (3, 0), c- = (0, 8)."""
    slgm = SLGM(torch.tensor([2.0, -1.0, 0.0, 1.0]), {"m": 2, "l": 2}, **kwargs)  # type: ignore[arg-type]
    slgm.start_epoch(1)
    slgm.step(
        {"m": t([3, 0], [0, 4], [9, 9], [3, 0]), "l": t([6, 0], [0, 8], [9, 9], [0, 0])},
        torch.tensor([0, 1, 2, 3]),
    )
    return slgm


def test_epoch_one_fills_banks_and_centres_without_touching_labels() -> None:
    slgm = epoch1_slgm()
    assert torch.equal(slgm.centres["m"][0], torch.tensor([3.0, 0.0]))
    assert torch.equal(slgm.centres["m"][1], torch.tensor([0.0, 4.0]))
    assert torch.equal(slgm.centres["l"][0], torch.tensor([3.0, 0.0]))
    assert torch.equal(slgm.centres["l"][1], torch.tensor([0.0, 8.0]))
    assert torch.equal(slgm.labels["l"], torch.tensor([2.0, -1.0, 0.0, 1.0]))
    assert torch.equal(slgm.banks["l"][2], torch.tensor([9.0, 9.0]))


def test_zero_labels_join_the_positive_class_when_not_excluded() -> None:
    slgm = epoch1_slgm(exclude_zero=False)
    assert torch.allclose(slgm.centres["m"][0], torch.tensor([5.0, 3.0]))  # mean of (3,0), (9,9), (3,0)


def test_epoch_two_label_update_l2_by_hand() -> None:
    slgm = epoch1_slgm()
    slgm.start_epoch(2)
    targets = slgm.targets(torch.tensor([0]))
    assert float(targets["l"]) == 2.0  # the loss sees the labels before this step's update
    slgm.step({"m": t([0, 0]), "l": t([3, 8])}, torch.tensor([0]))
    # α_m: D+ = |(0,0)-(3,0)| = 3, D- = |(0,0)-(0,4)| = 4  -> α_m = 1/3
    # α_l: D+ = |(3,8)-(3,0)| = 8, D- = |(3,8)-(0,8)| = 3  -> α_l = -5/8
    # ỹ = 2 + (α_l - α_m)(2 + α_m) / (2 α_m) = 2 - 161/48;  n = 2: y = 1/3·2 + 2/3·ỹ = -17/72
    assert float(slgm.labels["l"][0]) == pytest.approx(-17 / 72, abs=1e-6)
    assert torch.equal(slgm.labels["l"][1:], torch.tensor([-1.0, 0.0, 1.0]))  # other clips untouched
    assert torch.equal(slgm.labels["m"], torch.tensor([2.0, -1.0, 0.0, 1.0]))  # y_m never changes
    # banks then centres: m keeps y_m -> c+ = mean((0,0), (3,0)); l now has y_l[0] < 0 -> it moved class
    assert torch.allclose(slgm.centres["m"][0], torch.tensor([1.5, 0.0]))
    assert torch.allclose(slgm.centres["l"][0], torch.tensor([0.0, 0.0]))
    assert torch.allclose(slgm.centres["l"][1], torch.tensor([1.5, 8.0]))


def test_new_label_formula_both_forms_and_clipping() -> None:
    y_m, a_m, a_u = torch.tensor([2.0]), torch.tensor([1 / 3]), torch.tensor([-5 / 8])
    assert float(new_unimodal_label(y_m, a_m, a_u, 3.0)) == pytest.approx(2 - 161 / 48, abs=1e-6)
    # ratio half: 0.5·(α_u/α_m)·y_m = -15/8; difference half: 0.5·(y_m + α_u - α_m) = 25/48
    assert float(new_unimodal_label(y_m, a_m, a_u, 3.0)) == pytest.approx(-15 / 8 + 25 / 48, abs=1e-6)
    big = new_unimodal_label(torch.tensor([2.0, -2.0]), torch.tensor([0.1, 0.1]), torch.tensor([1.0, 1.0]), 3.0)
    assert big.tolist() == [3.0, -3.0]  # 11.45 and -8.55 clipped to ±H


def _one_clip_slgm(momentum: str) -> SLGM:
    slgm = SLGM(torch.tensor([1.0]), {"m": 2, "l": 2}, momentum=momentum)  # type: ignore[arg-type]
    slgm.start_epoch(1)
    slgm.step({"m": t([0, 0]), "l": t([0, 0])}, torch.tensor([0]))
    return slgm


def _set_centres(slgm: SLGM) -> None:
    slgm.centres["m"] = (torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0]))
    slgm.centres["l"] = (torch.tensor([3.0, 0.0]), torch.tensor([0.0, 8.0]))


@pytest.mark.parametrize(("momentum", "expected_epoch3"), [("selfmm", 49 / 36), ("paper3", 121 / 72)])
def test_momentum_rules(momentum: str, expected_epoch3: float) -> None:
    slgm = _one_clip_slgm(momentum)
    # epoch 2: α_m = 1/3, α_l = -5/8, y_m = 1 -> ỹ = 1 - 23/12 = -11/12; both rules use the
    # two-term update at n = 2: y = 1/3·1 + 2/3·(-11/12) = -5/18
    slgm.start_epoch(2)
    _set_centres(slgm)
    slgm.step({"m": t([0, 0]), "l": t([3, 8])}, torch.tensor([0]))
    assert float(slgm.labels["l"][0]) == pytest.approx(-5 / 18, abs=1e-6)
    # epoch 3: F_l sits on c+ -> D+ = 0, α_l = 8/ε, ỹ clipped to 3.
    # selfmm: 2/4·(-5/18) + 2/4·3 = 49/36
    # paper3: ½·2/4·y^(1) + ½·2/4·y^(2) + 2/4·3 = 1/4·1 + 1/4·(-5/18) + 3/2 = 121/72
    slgm.start_epoch(3)
    _set_centres(slgm)
    slgm.step({"m": t([0, 0]), "l": t([3, 0])}, torch.tensor([0]))
    assert float(slgm.labels["l"][0]) == pytest.approx(expected_epoch3, abs=1e-5)


def test_empty_class_keeps_previous_centre() -> None:
    slgm = SLGM(torch.tensor([1.0, 2.0]), {"m": 2, "l": 2})  # no negative clip at all
    slgm.start_epoch(1)
    slgm.centres["m"] = (slgm.centres["m"][0], torch.tensor([7.0, 7.0]))
    slgm.step({"m": t([1, 1], [3, 3]), "l": t([1, 1], [3, 3])}, torch.tensor([0, 1]))
    assert torch.equal(slgm.centres["m"][1], torch.tensor([7.0, 7.0]))
    assert torch.equal(slgm.centres["l"][1], torch.zeros(2))  # initial centre, not NaN
    assert torch.equal(slgm.centres["m"][0], torch.tensor([2.0, 2.0]))


def test_bhattacharyya_distance_by_hand() -> None:
    c = torch.tensor([3.0, 1.0])
    # p = (1/4, 3/4), q = (3/4, 1/4): BC = 2·sqrt(3/16) = sqrt(3)/2, D = sqrt(1 - sqrt(3)/2)
    expected = math.sqrt(1 - math.sqrt(3) / 2)
    assert float(distance(t([1, 3]), c, "bhattacharyya")) == pytest.approx(expected, abs=1e-6)
    assert float(distance(t([2, 6]), c, "bhattacharyya")) == pytest.approx(expected, abs=1e-6)  # scale-free
    assert float(distance(t([3, 1]), c, "bhattacharyya")) == pytest.approx(0.0, abs=1e-3)
    assert float(distance(t([1, 0]), t([0, 1])[0], "bhattacharyya")) == pytest.approx(1.0)
    assert float(distance(t([0, 0]), c, "bhattacharyya")) == pytest.approx(1.0)  # all-zero F*
    assert float(distance(t([3, 4]), torch.zeros(2), "l2")) == pytest.approx(5.0)


def test_bhattacharyya_label_update_by_hand() -> None:
    slgm = _one_clip_slgm("selfmm")
    slgm.distance = "bhattacharyya"
    slgm.start_epoch(2)
    for x in ("m", "l"):
        slgm.centres[x] = (torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    slgm.step({"m": t([1, 3]), "l": t([3, 1])}, torch.tensor([0]))
    # m: p = (1/4, 3/4): D+ = sqrt(1 - 1/2), D- = sqrt(1 - sqrt(3)/2); l mirrors it
    d_small, d_big = math.sqrt(1 - math.sqrt(3) / 2), math.sqrt(0.5)
    a_m = (d_small - d_big) / d_big
    a_l = (d_big - d_small) / d_small
    y_new = 0.5 * (a_l / a_m) * 1.0 + 0.5 * (1.0 + a_l - a_m)
    y_new = max(-3.0, min(3.0, y_new))
    assert float(slgm.labels["l"][0]) == pytest.approx(1 / 3 + 2 / 3 * y_new, abs=1e-5)
    assert float(relative_offset(t([1, 3]), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), "bhattacharyya")) == (
        pytest.approx(a_m, abs=1e-5)
    )


def test_epochs_must_be_consecutive_and_started() -> None:
    slgm = SLGM(torch.tensor([1.0]), {"m": 2, "l": 2})
    with pytest.raises(RuntimeError):
        slgm.step({"m": t([0, 0]), "l": t([0, 0])}, torch.tensor([0]))
    with pytest.raises(ValueError):
        slgm.start_epoch(2)


@given(
    rows=st.lists(st.tuples(st.sampled_from([-1, 0, 1]), st.floats(-5, 5, width=32)), min_size=1, max_size=40),
    dim=st.integers(1, 5),
)
def test_the_gpu_centre_mean_without_host_reads_equals_the_indexed_mean(
    rows: list[tuple[int, float]], dim: int
) -> None:
    side = torch.tensor([r[0] for r in rows])
    bank = torch.tensor([r[1] for r in rows]).unsqueeze(1) * torch.linspace(0.5, 2.0, dim)
    old = torch.full((dim,), 7.0)
    for member in (side > 0, side < 0):
        indexed = class_mean(bank, member, old)  # the CPU path
        masked = masked_class_mean(bank, member, old)  # what a GPU runs
        assert torch.allclose(masked, indexed, rtol=1e-5, atol=1e-5)
        assert torch.equal(indexed, old) == (not bool(member.any()))
