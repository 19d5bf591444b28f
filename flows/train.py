"""The training flow: ``stages.train.run_train`` under Prefect, its mean metrics in the run log."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from stages.train import run_train
from training.config import TrainConfig


@flow(name="emoflow-train")
def train_flow(store: str, view: str, config: TrainConfig, runs_dir: str, ablation: str = "full",
               seeds: int | None = None, name: str | None = None) -> dict[str, Any]:
    run_root, summary = run_train(store, view, config, runs_dir, ablation=ablation, seeds=seeds, name=name)
    log = get_run_logger()
    log.info("run %s (%s, seeds %s)", run_root, ablation, summary["seeds"])
    for split, metrics in summary["mean_std"].items():
        log.info("%s: Non0_acc_2 %.4f  MAE %.4f  Corr %.4f", split, metrics["Non0_acc_2"]["mean"],
                 metrics["MAE"]["mean"], metrics["Corr"]["mean"])
    return {"run": str(run_root), **summary}
