"""Near-duplicate frame reuse (issue 19): the mean-abs rule on synthetic frames, drift against the last
computed frame, the identity (the default rule enters it; None and older records keep the identity of
the sets extracted before the rule), the extractors on generated clips, and the measured error bound
on the real shared clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corpora.synth import write_clip
from corpora.synth.encode import encode_media
from features.clips import ClipInput
from features.extractors.base import FeatureResult, create_extractor, recorded_extractor
from features.extractors.efficientnet import EfficientNetLite0, load_efficientnet_lite0
from features.extractors.vision import (
    EVERY_FRAME,
    NEAR_DUPLICATE,
    features_with_still_skip,
    reuse_reason,
    reuse_sources,
)

SIZE = (224, 224, 3)
RECOMMENDED = 0.5  # docs/extraction.md: the knee of benchmarks/frame_skip.py's measurements
# What benchmarks/frame_skip.py measured at RECOMMENDED on the shared clips for reused frames
# (rel L2 <= 0.128, cos >= 0.9917), with a margin: the bound docs/extraction.md states.
MAX_REL_L2, MIN_COS = 0.15, 0.99
# vision.cnn / vision.face default identities before near_duplicate existed: with it None, a store's sets
# keep their names.
CNN_DEFAULT_IDENTITY = "b013669285485324d9fcecd24fd109d5f85fa67eb711cd977e522138858de003"
FACE_DEFAULT_IDENTITY = "f038e2cfe159ef54468ae8df9fdacac373fe8591cd7c0de6cb232a6d935eca2d"


def texture(seed: int = 0) -> np.ndarray:
    """A mid-grey 224x224 picture of 8x8-pixel blocks (room to add or subtract noise without clipping)."""
    blocks = np.random.default_rng(seed).integers(60, 196, (28, 28, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)


def with_square(x: int) -> np.ndarray:
    """A uniform grey picture with a 40x40 white square whose left edge is at ``x``."""
    img = np.full(SIZE, 100, np.uint8)
    img[92:132, x : x + 40] = 255
    return img


def test_small_uniform_noise_is_a_near_duplicate() -> None:
    base = texture()
    noise = np.random.default_rng(1).integers(-2, 3, SIZE)  # mean abs 1.2 levels, max 2
    frame = (base.astype(np.int16) + noise).astype(np.uint8)
    assert reuse_reason(frame, base, max_diff=1, near_duplicate=1.5) == "near_duplicate"
    assert reuse_reason(frame, base, max_diff=None, near_duplicate=1.5) == "near_duplicate"
    assert reuse_reason(frame, base, max_diff=3, near_duplicate=1.5) == "still"  # max abs 2: the old rule
    assert reuse_reason(frame, base, max_diff=1, near_duplicate=1.0) is None  # mean 1.2 > 1
    assert reuse_reason(frame, base, max_diff=1, near_duplicate=None) is None  # off: the old rule alone
    assert reuse_reason(frame, None, max_diff=3, near_duplicate=255.0) is None  # no computed frame yet


def test_a_moved_object_is_computed() -> None:
    a, b = with_square(40), with_square(70)  # moved 30 px: 2 x 40 x 30 px changed by 155, mean abs 7.4
    assert reuse_reason(b, a, max_diff=3, near_duplicate=RECOMMENDED) is None
    assert reuse_reason(b, a, max_diff=3, near_duplicate=6.0) is None
    assert reuse_reason(b, a, max_diff=3, near_duplicate=8.0) == "near_duplicate"  # too lax a threshold hides it
    assert reuse_reason(with_square(41), a, max_diff=3, near_duplicate=RECOMMENDED) == "near_duplicate"  # 1 px: 0.25


def test_drift_is_measured_against_the_last_computed_frame() -> None:
    base = texture()
    # one level brighter per frame: every step is a near duplicate of the previous frame (mean 1 <= 2.5),
    # but against the last computed one the difference grows, so every third frame is computed again
    frames = np.stack([base + k for k in range(10)]).astype(np.uint8)
    assert all(reuse_reason(b, a, None, 2.5) for a, b in zip(frames, frames[1:]))
    assert reuse_sources(frames, max_diff=None, near_duplicate=2.5).tolist() == [0, 0, 0, 3, 3, 3, 6, 6, 6, 9]
    assert reuse_sources(frames, max_diff=None, near_duplicate=None).tolist() == list(range(10))


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    return load_efficientnet_lite0(device="cpu")


def test_features_with_skip_reuse_the_computed_frames(model: EfficientNetLite0) -> None:
    base = texture()
    frames = np.stack([base + k for k in range(4)] + [texture(2)]).astype(np.uint8)
    feats, computed = features_with_still_skip(model, frames, max_diff=0, batch_size=2, near_duplicate=1.5)
    every, _ = features_with_still_skip(model, frames, max_diff=None)
    assert computed.tolist() == [True, False, True, False, True]
    np.testing.assert_array_equal(feats[1], feats[0])
    np.testing.assert_array_equal(feats[3], feats[2])
    np.testing.assert_allclose(feats[computed], every[computed], atol=1e-5)


@pytest.mark.parametrize("name,golden,default_rule", [
    ("vision.cnn", CNN_DEFAULT_IDENTITY, NEAR_DUPLICATE),
    ("vision.face", FACE_DEFAULT_IDENTITY, None),  # off by default: a small face's expression is a small change
])
def test_the_rule_enters_the_identity_unless_it_is_off_as_in_older_records(
    name: str, golden: str, default_rule: float | None,
) -> None:
    default = create_extractor(name)
    assert default.config.model_dump()["near_duplicate"] == default_rule
    off = create_extractor(name, {"near_duplicate": None})
    assert "near_duplicate" not in off.identity()["config"] and off.identity_hash() == golden
    assert (default.identity_hash() == golden) is (default_rule is None)
    # a config recorded before the field existed (a feature set's attrs, a training run's view)
    recorded = {k: v for k, v in off.config.model_dump(mode="json").items() if k != "near_duplicate"}
    assert recorded_extractor(name, recorded).identity_hash() == golden
    assert recorded_extractor(name, default.config.model_dump(mode="json")).identity_hash() == default.identity_hash()
    on = create_extractor(name, {"near_duplicate": RECOMMENDED})
    assert on.identity()["config"]["near_duplicate"] == RECOMMENDED
    assert on.identity_hash() not in (golden, default.identity_hash())
    same = create_extractor(name, {"near_duplicate": RECOMMENDED, "batch_size": 16, "device": "cpu"})
    assert same.identity_hash() == on.identity_hash()  # runtime knobs still stay out


def talking_head(path: Path) -> Path:
    """4 s at 10 fps, 160x120: a still textured background (lossy h264, so its compression noise
    exceeds ``still_max_diff``) and a small "mouth" that opens to a new height every 0.5 s."""
    rng = np.random.default_rng(5)
    background = np.repeat(np.repeat(rng.integers(60, 196, (15, 20, 3), dtype=np.uint8), 8, axis=0), 8, axis=1)
    frames = np.repeat(background[None], 40, axis=0)
    for k, frame in enumerate(frames):
        opening = 1 + (k // 5) % 4 * 2
        frame[70 : 70 + opening, 72:88] = 20
    encode_media(path, frames=frames, fps=10, audio=None, sample_rate=16000, qp=30)
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ClipInput]:
    d = tmp_path_factory.mktemp("near-dup")
    demo = write_clip(d / "demo.mp4", seconds=4.0, size=(160, 120), v=1.0, seed=3, audio=False)
    head = talking_head(d / "head.mp4")
    return {p.stem: ClipInput(p.stem, str(p), None, None, "", 4.0) for p in (demo, head)}


@pytest.mark.parametrize("clip", ["demo", "head"])
def test_vision_cnn_computes_fewer_frames_and_keeps_every_row(generated: dict[str, ClipInput], clip: str) -> None:
    (default,) = create_extractor("vision.cnn", {"device": "cpu", "near_duplicate": None}).extract([generated[clip]])
    (near,) = create_extractor("vision.cnn", {"device": "cpu", "near_duplicate": 1.0}).extract([generated[clip]])
    assert isinstance(default, FeatureResult) and isinstance(near, FeatureResult)
    assert near.values.shape == default.values.shape == (8, 1280)
    np.testing.assert_array_equal(near.times, default.times)
    assert near.meta["n_computed"] <= default.meta["n_computed"]
    assert default.meta["n_near_duplicate"] == 0 and default.meta["near_duplicate"] is None
    assert near.meta["near_duplicate"] == 1.0
    assert near.meta["n_computed"] + near.meta["n_near_duplicate"] <= near.meta["n_frames"]
    if clip == "head":  # the moving mouth defeats max-abs, not the mean
        assert default.meta["n_computed"] == 8 and near.meta["n_computed"] == 1
        assert near.meta["n_near_duplicate"] == 7
        assert (near.values == near.values[0]).all()


def test_vision_face_uses_the_same_rule(generated: dict[str, ClipInput]) -> None:
    (default,) = create_extractor("vision.face", {"device": "cpu"}).extract([generated["head"]])
    (near,) = create_extractor("vision.face", {"device": "cpu", "near_duplicate": 1.0}).extract([generated["head"]])
    assert isinstance(default, FeatureResult) and isinstance(near, FeatureResult)
    assert default.meta["n_detected"] == 8 and near.meta["n_detected"] == 1 and near.meta["n_near_duplicate"] == 7
    assert near.values.shape == default.values.shape


@pytest.mark.parametrize("name,window", [
    ("manifesto_audiobook.mp4", (10.0, 25.0)),  # a still cover: compression noise defeats max-abs
    ("nasa_webb_narration.mp4", (None, None)),  # slow pans over space footage
])
def test_real_clip_saving_and_error_bound(
    clips_dir: Path, make_clip, name: str, window: tuple[float | None, float | None],
) -> None:
    clip = make_clip(clips_dir / name, start=window[0], end=window[1])
    (strict,) = create_extractor("vision.cnn", {"device": "cpu", "near_duplicate": None}).extract([clip])
    (near,) = create_extractor("vision.cnn", {"device": "cpu", "near_duplicate": RECOMMENDED}).extract([clip])
    (every,) = create_extractor("vision.cnn", {"device": "cpu", **EVERY_FRAME}).extract([clip])
    assert isinstance(near, FeatureResult) and isinstance(every, FeatureResult) and isinstance(strict, FeatureResult)
    assert near.values.shape == every.values.shape
    assert near.meta["n_computed"] < strict.meta["n_computed"] and near.meta["n_near_duplicate"] > 0
    own, got = every.values, near.values  # computed rows match to float noise, reused ones within the bound
    rel = np.linalg.norm(got - own, axis=1) / np.linalg.norm(own, axis=1)
    cos = np.sum(got * own, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(own, axis=1))
    assert rel.max() <= MAX_REL_L2 and cos.min() >= MIN_COS


@pytest.mark.parametrize("name,window,still", [
    ("manifesto_audiobook.mp4", (None, None), True),
    ("nasa_webb_narration.mp4", (None, None), False),
    ("nasa_webb_narration.vp9_opus.webm", (None, None), False),
])
def test_the_default_reuses_on_a_still_cover_and_on_none_of_the_moving_footage(
    clips_dir: Path, make_clip, name: str, window: tuple[float | None, float | None], still: bool,
) -> None:
    """The claim behind the default (docs/extraction.md): 76 → 15 of 177 CNN frames on the cover, no
    near-duplicate at all among the NASA pans, so moving footage keeps its features exactly."""
    clip = make_clip(clips_dir / name, start=window[0], end=window[1])
    (default,) = create_extractor("vision.cnn", {"device": "cpu"}).extract([clip])
    (strict,) = create_extractor("vision.cnn", {"device": "cpu", "near_duplicate": None}).extract([clip])
    assert isinstance(default, FeatureResult) and isinstance(strict, FeatureResult)
    if still:
        assert default.meta["n_computed"] <= strict.meta["n_computed"] // 4
    else:
        assert default.meta["n_near_duplicate"] == 0
        np.testing.assert_array_equal(default.values, strict.values)
