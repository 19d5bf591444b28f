"""Training stage: MCMF + SLGM (model-spec.md) over aligned views of the store.

Imports ``store`` only (never ``flows`` or ``features``).
"""

from training.config import SEARCH_SPACE, ExpectedView, TrainConfig, resolve_device
from training.data import Batch, ClipItem, Collator, ViewDataset, check_view, make_loader
from training.loop import FitResult, Predictions, evaluate, fit, predict, seed_everything
from training.metrics import format_table, regression_metrics
from training.model import MCMF, ModalityInput, ModelOutput, TextEncoder, build_model
from training.runs import RunDir, evaluate_run, load_checkpoint, load_run_model, save_checkpoint, train_on_view
from training.slgm import SLGM

__all__ = [
    "MCMF",
    "SEARCH_SPACE",
    "SLGM",
    "Batch",
    "ClipItem",
    "Collator",
    "ExpectedView",
    "FitResult",
    "ModalityInput",
    "ModelOutput",
    "Predictions",
    "RunDir",
    "TextEncoder",
    "TrainConfig",
    "ViewDataset",
    "build_model",
    "check_view",
    "evaluate",
    "evaluate_run",
    "fit",
    "format_table",
    "load_checkpoint",
    "load_run_model",
    "make_loader",
    "predict",
    "regression_metrics",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "train_on_view",
]
