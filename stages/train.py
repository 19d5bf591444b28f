"""Training and evaluation runs: MCMF+SLGM over an aligned view, one run per seed, aggregated.

A run directory ``<runs>/<name>/`` holds one ``seed-<n>/`` run per seed (resolved config, view
fingerprint, per-epoch metrics, best checkpoint, metrics) and ``summary.json``/``summary.md``
with the mean ± std over seeds, as MMSA reports them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from store.errors import ConfigError
from store.featurestore import new_id
from training.config import TrainConfig, with_ablation
from training.metrics import METRIC_NAMES, format_table
from training.runs import RunDir, evaluate_run, train_on_view


def aggregate(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """split -> metric -> {mean, std} over seeds (population std, as numpy computes it)."""
    splits = sorted({s for m in per_seed.values() for s in m})
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split in splits:
        out[split] = {}
        for name in METRIC_NAMES:
            vals = np.array([m[split][name] for m in per_seed.values() if split in m], dtype=np.float64)
            out[split][name] = {"mean": float(vals.mean()), "std": float(vals.std())}
    return out


def summary_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: one row per label (split or ablation), metrics as 'mean ± std' (training.metrics' rule)."""
    return format_table(rows, label="")


def _write_summary(run_root: Path, kind: str, per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """``<run_root>/<kind>.json`` (per seed and mean ± std) and ``<kind>.md`` (the table); returns the JSON."""
    agg = aggregate(per_seed)
    summary = {"kind": kind, "seeds": sorted(per_seed), "per_seed": {str(k): v for k, v in per_seed.items()}, "mean_std": agg}
    (run_root / f"{kind}.json").write_text(json.dumps(summary, indent=2))
    (run_root / f"{kind}.md").write_text(summary_table(agg))
    return summary


def run_train(
    store: str, view: str, config: TrainConfig, runs_dir: str | Path, *, ablation: str = "full",
    seeds: int | None = None, name: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train ``ablation`` of ``config`` with 1 (``config.seed``) or the first ``seeds`` seeds."""
    try:
        cfg = with_ablation(config, ablation)
    except ValidationError as exc:  # the ablation's switches contradict the config
        raise ConfigError.from_validation(exc, f"train config with ablation {ablation!r}") from None
    except ValueError as exc:  # an unknown ablation
        raise ConfigError(str(exc)) from None
    seed_list = cfg.seeds[:seeds] if seeds else [cfg.seed]
    if seeds and len(seed_list) < seeds:
        raise ConfigError(f"--seeds {seeds} but train.seeds lists only {len(cfg.seeds)} seeds")
    run_root = Path(runs_dir) / (name or f"{view}-{ablation}-{new_id()}")
    per_seed = {}
    for seed in seed_list:
        run, _ = train_on_view(store, view, cfg.model_copy(update={"seed": seed}), run_root / f"seed-{seed}")
        per_seed[seed] = json.loads((run.path / "metrics.json").read_text())
    return run_root, _write_summary(run_root, "summary", per_seed)


def seed_runs(run: str | Path) -> list[Path]:
    """The seed run directories of RUN (RUN itself when it is a single run directory)."""
    run = Path(run)
    if (run / "run.json").exists():
        return [run]
    found = sorted(p for p in run.glob("seed-*") if (p / "run.json").exists())
    if not found:
        raise ConfigError(f"{run}: not a run directory (no run.json, no seed-*/run.json)")
    return found


def run_evaluate(run: str | Path, split: str = "test", store: str | None = None) -> dict[str, Any]:
    """Evaluate every seed run of RUN on ``split``; mean ± std written to ``eval-<split>.json/.md``."""
    per_seed = {RunDir(r).config().seed: {split: evaluate_run(r, split, store)} for r in seed_runs(run)}
    return _write_summary(Path(run), f"eval-{split}", per_seed)
