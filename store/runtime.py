"""Process settings that extraction (``features/``) and training (``training/``) share: the torch
device a config names and the offline Hugging Face hub.

They live in ``store/`` because it is the one package both may import (docs/architecture.md);
torch is imported only when a device is resolved, so the CLI and store readers stay light.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def offline_hub() -> None:
    """Keep Hugging Face offline: every model is a local folder, so a missing one must fail rather
    than reach for the network. Call before transformers is imported (huggingface_hub reads the
    variables once, at import); a value the user set wins."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def resolve_device(setting: str) -> torch.device:
    """``auto`` → CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is a clear error."""
    import torch

    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(setting)
