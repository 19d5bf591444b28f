"""vision.cnn: the EfficientNet-Lite0 weights are the real ImageNet ones, the forward matches an
independent functional reference, still frames reuse features, and the extractor's rows/absences."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - PyTorch's own convention

from features.clips import ClipInput
from features.extractors.base import FeatureResult, create_extractor
from features.extractors.efficientnet import (
    EfficientNetLite0,
    frame_features,
    imagenet_logits,
    load_efficientnet_lite0,
)
from features.extractors.packaged import default_weights_path
from features.extractors.vision import EVERY_FRAME, CnnVisionExtractor, features_with_still_skip
from features.media.video import decode_video

# The few ImageNet-1k indices asserted on (the weights package ships no class names).
CROSSWORD_PUZZLE = 918
SPOTLIGHT = 818
CRANE = 517
STAGE = 819
TORCH = 862

NASA = "nasa_webb_narration.mp4"


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    return load_efficientnet_lite0(device="cpu")


@pytest.fixture(scope="module")
def unfolded() -> EfficientNetLite0:
    """The model as the weights file defines it, BatchNorm layers kept."""
    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")})
    return model.eval()


@pytest.fixture(scope="module")
def nasa_frames(clips_dir: Path) -> np.ndarray:
    frames, _, _ = decode_video(str(clips_dir / NASA), end=8.0)
    return frames


def crossword(seed: int = 0) -> np.ndarray:
    """A 15x15 crossword grid (black squares, grid lines) as a 224x224 RGB image."""
    rng = np.random.default_rng(seed)
    cells = np.full((15, 15), 255, np.uint8)
    cells[rng.random((15, 15)) < 0.2] = 0
    img = np.kron(cells, np.ones((14, 14), np.uint8))
    img[::14, :] = 0
    img[:, ::14] = 0
    img = np.pad(img, 7, constant_values=255)[:224, :224]
    return np.repeat(img[..., None], 3, axis=2)


def reference_logits(state: dict[str, torch.Tensor], image: np.ndarray) -> np.ndarray:
    """EfficientNet-Lite0 written directly with torch.nn.functional over the raw state dict:
    one unbatched NCHW-contiguous image, TF "same" padding computed here, BN eps 1e-3, ReLU6."""
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() - 127.5) / 127.5

    def conv(x: torch.Tensor, w: torch.Tensor, stride: int, groups: int = 1) -> torch.Tensor:
        k = w.shape[-1]
        pads = []
        for n in (x.shape[3], x.shape[2]):  # F.pad order: width first
            total = max((math.ceil(n / stride) - 1) * stride + k - n, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), w, stride=stride, groups=groups)

    def bn(x: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(x, state[f"{p}.running_mean"], state[f"{p}.running_var"],
                            state[f"{p}.weight"], state[f"{p}.bias"], training=False, eps=1e-3)

    relu6 = F.relu6
    x = relu6(bn(conv(x, state["_conv_stem.weight"], 2), "_bn0"))
    stride2 = {1, 3, 5, 11}  # first block of the stages that downsample
    for i in range(16):
        p = f"_blocks.{i}"
        inp = x
        if f"{p}._expand_conv.weight" in state:
            x = relu6(bn(conv(x, state[f"{p}._expand_conv.weight"], 1), f"{p}._bn0"))
        dw = state[f"{p}._depthwise_conv.weight"]
        x = relu6(bn(conv(x, dw, 2 if i in stride2 else 1, groups=dw.shape[0]), f"{p}._bn1"))
        x = bn(conv(x, state[f"{p}._project_conv.weight"], 1), f"{p}._bn2")
        if i not in stride2 and x.shape == inp.shape:
            x = x + inp
    x = relu6(bn(conv(x, state["_conv_head.weight"], 1), "_bn1"))
    return F.linear(x.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])[0].numpy()


def test_logits_match_functional_reference(model: EfficientNetLite0) -> None:
    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    rng = np.random.default_rng(1)
    images = np.stack([crossword(), rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)])
    ours = imagenet_logits(model, images)  # batched, channels_last
    with torch.inference_mode():
        for img, got in zip(images, ours):
            np.testing.assert_allclose(got, reference_logits(state, img), atol=2e-3, rtol=1e-3)
    # odd input sizes exercise the asymmetric padding as well
    odd = rng.integers(0, 256, (1, 161, 99, 3), dtype=np.uint8)
    with torch.inference_mode():
        np.testing.assert_allclose(
            imagenet_logits(model, odd)[0], reference_logits(state, odd[0]), atol=2e-3, rtol=1e-3
        )


def test_classifies_a_synthetic_crossword(model: EfficientNetLite0) -> None:
    p = torch.softmax(torch.from_numpy(imagenet_logits(model, crossword()[None])), 1)[0]
    assert int(p.argmax()) == CROSSWORD_PUZZLE and float(p[CROSSWORD_PUZZLE]) > 0.5


def test_classifies_a_real_frame_sensibly_and_stably(model: EfficientNetLite0, nasa_frames: np.ndarray) -> None:
    # frame 0: a worker on a red lift (crane) under a spotlight in a dark hall, beside the mirror
    first = imagenet_logits(model, nasa_frames[:1])[0]
    top5 = set(np.argsort(-first)[:5].tolist())
    assert {SPOTLIGHT, CRANE} <= top5 and top5 & {STAGE, TORCH}
    again = imagenet_logits(model, nasa_frames[:4])[0]  # another batch composition
    np.testing.assert_allclose(again, first, atol=1e-3)
    assert set(np.argsort(-again)[:5].tolist()) == top5


def test_normalisation_matches_the_weights(unfolded: EfficientNetLite0, nasa_frames: np.ndarray) -> None:
    """The stem BatchNorm's running mean (from training) is matched far better by
    (x - 127.5) / 127.5 (TF EfficientNet-Lite preprocessing) than by ImageNet mean/std."""
    x = torch.from_numpy(nasa_frames).permute(0, 3, 1, 2).float()
    model = unfolded
    rm, rv = model._bn0.running_mean, model._bn0.running_var
    live = rv > 1e-4

    def z(mean: tuple[float, ...], std: tuple[float, ...]) -> float:
        xi = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.inference_mode():
            mu = model._conv_stem(xi.contiguous()).mean(dim=(0, 2, 3))
        return float(((mu - rm)[live] / rv[live].sqrt()).abs().mean())

    tf = z((127.5,) * 3, (127.5,) * 3)
    imagenet = z((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    assert tf < 0.75 * imagenet


def test_folded_batchnorm_gives_the_features_of_the_unfolded_model(
    model: EfficientNetLite0, unfolded: EfficientNetLite0, nasa_frames: np.ndarray
) -> None:
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.modules()) == 2 + 16 * 3 - 1
    frames = nasa_frames[:4]
    folded = frame_features(model, frames)
    reference = frame_features(unfolded, frames, channels_last=False)
    np.testing.assert_allclose(folded, reference, atol=1e-4, rtol=1e-4)
    assert np.abs(folded - reference).max() > 0  # really two different computations


def test_channels_last_and_batching_do_not_change_features(model: EfficientNetLite0) -> None:
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (5, 224, 224, 3), dtype=np.uint8)
    a = frame_features(model, frames, channels_last=True)
    b = frame_features(model, frames, channels_last=False)
    c = np.concatenate([frame_features(model, frames[i : i + 1]) for i in range(5)])
    assert a.shape == (5, 1280) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(a, c, atol=1e-4)


def test_model_is_loaded_once_per_process() -> None:
    a = create_extractor("vision.cnn", {"device": "cpu"})
    b = create_extractor("vision.cnn", {"device": "cpu", "fps": 1.0})
    assert isinstance(a, CnnVisionExtractor)
    assert a.model() is b.model() is load_efficientnet_lite0(device="cpu")


def test_still_skipping_equals_computing_every_frame(model: EfficientNetLite0) -> None:
    rng = np.random.default_rng(3)
    distinct = rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    frames = distinct[[0, 0, 0, 1, 1, 2, 0]]
    skipped, computed = features_with_still_skip(model, frames, max_diff=0)
    every, all_computed = features_with_still_skip(model, frames, max_diff=None)
    assert computed.tolist() == [True, False, False, True, False, True, True] and all_computed.all()
    np.testing.assert_allclose(skipped, every, atol=1e-5)
    np.testing.assert_array_equal(skipped[1], skipped[0])


def test_extractor_on_a_still_video(synth_media, make_clip) -> None:
    clip = make_clip(synth_media.still)
    (skip,) = create_extractor("vision.cnn", {"device": "cpu"}).extract([clip])
    (every,) = create_extractor("vision.cnn", {"device": "cpu", **EVERY_FRAME}).extract([clip])
    assert skip.meta["n_frames"] == 8 and skip.meta["n_computed"] == 1 and every.meta["n_computed"] == 8
    np.testing.assert_allclose(skip.values, every.values, atol=1e-5)
    assert (skip.values == skip.values[0]).all()


def test_extractor_on_the_manifesto_still_clip(clips_dir: Path, make_clip) -> None:
    clip = make_clip(clips_dir / "manifesto_audiobook.mp4", start=10.0, end=25.0)
    (skip,) = create_extractor("vision.cnn", {"device": "cpu"}).extract([clip])
    (strict,) = create_extractor("vision.cnn", {"device": "cpu", "near_duplicate": None}).extract([clip])
    (every,) = create_extractor("vision.cnn", {"device": "cpu", **EVERY_FRAME}).extract([clip])
    assert skip.values.shape == strict.values.shape == every.values.shape == (30, 1280)
    assert every.meta["n_computed"] == 30
    # max abs alone: compression noise on the still picture keeps some pixel above 3 levels in
    # 13 of 30 frames, each of which reuses within 2%; the default near-duplicate rule sees the same
    # still picture, and its reused rows stay within the compression noise that separates this
    # cover's consecutive frames (up to 0.072, docs/extraction.md)
    assert strict.meta["n_computed"] < 25 and skip.meta["n_computed"] <= 5 < strict.meta["n_computed"]
    for got, bound in ((strict, 0.02), (skip, 0.072)):
        rel = np.linalg.norm(got.values - every.values, axis=1) / np.linalg.norm(every.values, axis=1)
        assert rel.max() < bound


def test_extractor_rows_streams_and_times(clips_dir: Path, make_clip) -> None:
    ex = create_extractor("vision.cnn", {"device": "cpu"})
    (r,) = ex.extract([make_clip(clips_dir / NASA, start=2.0, end=5.25)])
    assert isinstance(r, FeatureResult) and r.absent is None
    assert r.values.shape == (7, 1280) and np.isfinite(r.values).all() and (r.values >= 0).all()
    np.testing.assert_allclose(r.times[:, 0], np.arange(7) * 0.5)
    assert r.times[-1, 1] == pytest.approx(3.25)
    assert r.meta["video_stream"] == 3 and r.meta["source_size"] == [480, 270]
    assert r.meta["video_decoder"] == "decord" and r.meta["n_frames"] == 7


def test_batch_across_clips_equals_one_at_a_time(clips_dir: Path, synth_media, make_clip) -> None:
    ex = create_extractor("vision.cnn", {"device": "cpu", "batch_size": 4, "chunk_size": 3})
    clips = [
        make_clip(clips_dir / NASA, "a", start=1.0, end=3.0),
        make_clip(synth_media.av_mp4, "b"),
        make_clip(synth_media.audio_only, "no-video"),
        make_clip(clips_dir / "nasa_webb_narration.vp9_opus.webm", "c", start=6.0, end=8.0),
        ClipInput("no-media", None, None, None, "just text", 2.0),
    ]
    batched = ex.extract(clips)
    assert [r.absent for r in batched] == [None, None, "no video stream", None, "no media file"]
    assert batched[2].values.shape == (0, 1280)
    for clip, r in zip(clips, batched):
        (single,) = create_extractor("vision.cnn", {"device": "cpu", "prefetch": 0}).extract([clip])
        np.testing.assert_allclose(r.values, single.values, atol=1e-4)
        np.testing.assert_array_equal(r.times, single.times)


def test_pyav_decoder_gives_nearly_the_same_features(clips_dir: Path, make_clip) -> None:
    clip = make_clip(clips_dir / NASA, start=0.0, end=2.0)
    (d,) = create_extractor("vision.cnn", {"device": "cpu"}).extract([clip])
    (p,) = create_extractor("vision.cnn", {"device": "cpu", "decoder": "pyav"}).extract([clip])
    assert p.meta["video_decoder"] == "pyav"
    cos = (d.values * p.values).sum(1) / np.linalg.norm(d.values, axis=1) / np.linalg.norm(p.values, axis=1)
    assert cos.min() > 0.98


def test_identity_excludes_runtime_settings() -> None:
    a = create_extractor("vision.cnn", {"device": "cpu", "batch_size": 8, "prefetch": 0})
    b = create_extractor("vision.cnn", {"device": "auto"})
    assert a.identity_hash() == b.identity_hash()
    assert "device" not in a.identity()["config"]
    assert len(a.identity()["model"]["weights_sha256"]) == 64
    assert create_extractor("vision.cnn", {"fps": 1.0}).identity_hash() != a.identity_hash()
