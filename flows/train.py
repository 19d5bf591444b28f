"""The training flow: ``stages.train.run_train`` under Prefect, every epoch and the mean metrics in
the run log, and progress hooks for the CLI's bar."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.hooks import Hooks
from stages.train import EpochProgress, ProgressHook, run_train
from training.config import TrainConfig

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
    for split, metrics in summary["mean_std"].items():
        log.info("%s: Non0_acc_2 %.4f  MAE %.4f  Corr %.4f", split, metrics["Non0_acc_2"]["mean"],
                 metrics["MAE"]["mean"], metrics["Corr"]["mean"])
    for split, metrics in summary.get("ensemble", {}).items():
        log.info("%s (ensemble of %d seeds): Non0_acc_2 %.4f  MAE %.4f  Corr %.4f", split, len(summary["seeds"]),
                 metrics["Non0_acc_2"], metrics["MAE"], metrics["Corr"])
    return {"run": str(run_root), **summary}


def run_training(store: str, view: str, config: TrainConfig, runs_dir: str, *, ablation: str = "full",
                 seeds: int | None = None, name: str | None = None,
                 progress: ProgressHook | None = None, ensemble: bool = False) -> dict[str, Any]:
    """Run the flow with an optional progress hook (called in this process after every epoch)."""
    with _progress.added(progress):
        return train_flow(store, view, config, runs_dir, ablation=ablation, seeds=seeds, name=name,
                          ensemble=ensemble)
