"""The training flow: ``stages.train.run_train`` under Prefect, every epoch and the mean metrics in
the run log, and progress hooks for the CLI's bar."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.hooks import Hooks
from stages.train import EpochProgress, ProgressHook, run_train
from training.config import TrainConfig
from training.metrics import format_cell
from training.targets import headline_metrics

_progress: Hooks[EpochProgress] = Hooks()


@flow(name="emoflow-train")
def train_flow(store: str, view: str, config: TrainConfig, runs_dir: str, ablation: str = "full",
               seeds: int | None = None, name: str | None = None, ensemble: bool = False) -> dict[str, Any]:
    log = get_run_logger()

    def progress(p: EpochProgress) -> None:
        log.info("%s", p.line)
        _progress(p)

    run_root, summary = run_train(store, view, config, runs_dir, ablation=ablation, seeds=seeds, name=name,
                                  progress=progress, ensemble=ensemble)
    log.info("run %s (%s, seeds %s)", run_root, ablation, summary["seeds"])
    names = headline_metrics(config.target)  # a categorical run has no Non0_acc_2, a score run no Acc

    def headline(metrics: dict[str, Any]) -> str:
        return "  ".join(f"{k} {format_cell(metrics[k], k)}" for k in names)

    for split, metrics in summary["mean_std"].items():
        log.info("%s: %s", split, headline(metrics))
    for split, metrics in summary.get("ensemble", {}).items():
        log.info("%s (ensemble of %d seeds): %s", split, len(summary["seeds"]), headline(metrics))
    for note in summary["notes"]:
        log.info("note: %s", note)
    return {"run": str(run_root), **summary}


def run_training(store: str, view: str, config: TrainConfig, runs_dir: str, *, ablation: str = "full",
                 seeds: int | None = None, name: str | None = None,
                 progress: ProgressHook | None = None, ensemble: bool = False) -> dict[str, Any]:
    """Run the flow with an optional progress hook (called in this process after every epoch)."""
    with _progress.added(progress):
        return train_flow(store, view, config, runs_dir, ablation=ablation, seeds=seeds, name=name,
                          ensemble=ensemble)
