"""``TrainConfig`` refuses, when it is read, values that could only fail (or mislead) once training runs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from training.config import TrainConfig


@pytest.mark.parametrize("bad, good, problem", [
    ({"seed": -1}, {"seed": 0}, "seed\n  Input should be greater than or equal to 0"),
    ({"seed": 2**32}, {"seed": 2**32 - 1}, "seed\n  Input should be less than or equal to 4294967295"),
    ({"seeds": [1111, -2]}, {"seeds": [1111, 2]}, "seeds.1\n  Input should be greater than or equal to 0"),
    ({"seeds": [1111, 1112, 1111]}, {"seeds": [1111, 1112]}, "seeds has duplicates: [1111]"),
    ({"adam_betas": [1.5, 0.9]}, {"adam_betas": [0.0, 0.9]}, "adam_betas.0\n  Input should be less than 1"),
    ({"adam_betas": [0.9, -0.1]}, {"adam_betas": [0.9, 0.9999]},
     "adam_betas.1\n  Input should be greater than or equal to 0"),
    ({"target": "sentiment", "classes": ["positive", "negative", "positive"]},
     {"target": "sentiment", "classes": ["positive", "negative"]}, "classes has duplicates: ['positive']"),
    ({"target": "sentiment", "classes": ["positive"]}, {"target": "sentiment", "classes": None},
     "a classifier needs at least two"),
])
def test_a_value_torch_numpy_or_a_classifier_cannot_use_is_refused_and_its_nearest_good_one_kept(
    bad: dict[str, object], good: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        TrainConfig.model_validate(bad)
    assert problem in str(caught.value)
    config = TrainConfig.model_validate(good)
    assert all(getattr(config, k) == (tuple(v) if k == "adam_betas" else v) for k, v in good.items())
