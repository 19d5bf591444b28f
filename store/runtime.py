"""Process settings that extraction (``features/``) and training (``training/``) share: the torch
device a config names and the offline Hugging Face hub.

They live in ``store/`` because it is the one package both may import (docs/architecture.md);
torch is imported only when a device is resolved, so the CLI and store readers stay light.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from store.errors import ConfigError

if TYPE_CHECKING:
    import torch


def offline_hub() -> None:
    """Keep Hugging Face offline: every model is a local folder, so a missing one must fail rather
    than reach for the network. Call before transformers is imported (huggingface_hub reads the
    variables once, at import); a value the user set wins."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def resolve_device(setting: str) -> torch.device:
    """``auto`` → CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is a ``ConfigError``:
    a setting that cannot work on this machine, not a bug.

    Resolving to CUDA also switches the process to full fp32 there (``full_fp32_on_cuda``): the
    device is not part of a feature set's identity, so features must not depend on it.
    """
    import torch

    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device (use device 'auto' or 'cpu')")
    device = torch.device(setting)
    if device.type == "cuda":
        full_fp32_on_cuda()
    return device


def full_fp32_on_cuda() -> None:
    """Turn TF32 off for CUDA matmuls and cuDNN convolutions/RNNs. torch's default runs cuDNN
    convolutions in TF32 (10-bit mantissa): EfficientNet-Lite0 features then differ from the CPU's
    by up to 0.019, against 1.4e-6 in full fp32 (issue 19, measured on an H200). The legacy flags
    are used because mixing them with ``fp32_precision`` makes torch refuse to read either."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
