"""Training and evaluation runs: MCMF+SLGM over an aligned view, one run per seed, aggregated.

A run directory ``<runs>/<name>/`` holds one ``seed-<n>/`` run per seed (resolved config, view
fingerprint, per-epoch metrics, best checkpoint, metrics) and ``summary.json``/``summary.md``
with the mean ± std over seeds, as MMSA reports them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from torch import nn

from store.errors import ConfigError
from store.featurestore import quote_name
from store.fs import atomic_path
from store.ids import new_id
from store.runtime import resolve_device
from store.views import open_view
from training.checks import open_training_view
from training.config import TrainConfig, with_ablation
from training.loop import EpochCallback
from training.metrics import format_table, metric_columns, metrics_json, undefined_notes
from training.model import check_text_model
from training.runs import RunDir
from training.targets import selection_metric
from training.train import evaluate_run, load_run_model, train_on_view


def aggregate(
    per_seed: Mapping[int, Mapping[str, Mapping[str, float | None]]],
) -> dict[str, dict[str, dict[str, float]]]:
    """split -> metric -> {mean, std} over seeds (population std, as numpy computes it). An undefined
    value (NaN, or null read back from a metrics.json) makes the mean and std undefined (NaN) too:
    a mean over the other seeds would pass for one over all of them."""
    splits = sorted({s for m in per_seed.values() for s in m})
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split in splits:
        seeds = [m[split] for m in per_seed.values() if split in m]
        out[split] = {}
        for name in metric_columns({split: seeds[0]}):
            vals = np.array([np.nan if m[name] is None else m[name] for m in seeds], dtype=np.float64)
            out[split][name] = {"mean": float(vals.mean()), "std": float(vals.std())}
    return out


def summary_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: one row per label (split or ablation), metrics as 'mean ± std' (training.metrics' rule)."""
    return format_table(rows, label="")


def ensemble_predictions(runs: list[Path]) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """split -> (clip ids, mean prediction over the runs, labels): the seeds' ``predictions.csv``
    averaged clip by clip (every run must have predicted the same clips of a split); for a
    categorical target the class probabilities are averaged."""
    preds = [RunDir(r).predictions() for r in runs]
    out: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
    for split in sorted(set.intersection(*(set(p) for p in preds))):
        first = preds[0][split]
        ids = sorted(first.clip_ids)
        stacked = []
        for p in preds:
            by_id = dict(zip(p[split].clip_ids, p[split].pred))
            if sorted(by_id) != ids:
                raise ConfigError(f"the runs predicted different {split} clips; cannot average them")
            stacked.append([by_id[c] for c in ids])
        labels = dict(zip(first.clip_ids, first.label))
        out[split] = (ids, np.mean(np.asarray(stacked, dtype=np.float64), axis=0),
                      np.array([labels[c] for c in ids], dtype=first.label.dtype))
    return out


def ensemble_metrics(runs: list[Path]) -> dict[str, dict[str, float]]:
    """split -> metrics of the seed ensemble (the runs' predictions averaged per clip)."""
    target = RunDir(runs[0]).target()
    return {s: target.metrics(pred, label) for s, (_, pred, label) in ensemble_predictions(runs).items()}


def _write_summary(run_root: Path, kind: str, per_seed: Mapping[int, Mapping[str, Mapping[str, float | None]]],
                   ensemble: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """``<run_root>/<kind>.json`` (per seed, mean ± std, the seed ensemble's metrics when given, and
    ``notes``: why a metric is undefined, if one is) and ``<kind>.md`` (the table: a row per split,
    then a row per split of the ensemble, then the notes); returns the summary. Undefined metrics are
    null in the JSON (``metrics_json``)."""
    agg = aggregate(per_seed)
    summary: dict[str, Any] = {"kind": kind, "seeds": sorted(per_seed),
                               "per_seed": {str(k): v for k, v in per_seed.items()}, "mean_std": agg}
    rows: dict[str, Any] = dict(agg)
    if ensemble is not None:
        summary["ensemble"] = ensemble
        rows.update({f"{split} (ensemble of {len(per_seed)})": m for split, m in ensemble.items()})
    summary["notes"] = undefined_notes(rows)
    # the table first: the JSON is what marks a run whole (``run_train``)
    with atomic_path(run_root / f"{kind}.md") as tmp:
        Path(tmp).write_text(summary_table(rows))
    with atomic_path(run_root / f"{kind}.json") as tmp:
        Path(tmp).write_text(metrics_json(summary))
    return summary


@dataclass(frozen=True)
class EpochProgress:
    """Where a training run stands after one epoch of one seed, for progress bars and logs."""

    seed: int
    seed_index: int  # 1-based position of this seed in the run
    n_seeds: int
    epoch: int
    max_epochs: int | None
    train_loss: float
    valid_loss: float  # this epoch's validation L_m: MAE for a score, CE for classes
    best_loss: float
    best_epoch: int
    seconds: float  # this epoch
    eta_seconds: float  # the whole run, see ``EpochClock``
    selection: str = "MAE"  # the name of valid_loss

    @property
    def line(self) -> str:
        """One log line: seed k/N, epoch, losses, best so far, ETA."""
        cap = f"/{self.max_epochs}" if self.max_epochs else ""
        return (f"seed {self.seed_index}/{self.n_seeds} ({self.seed}) epoch {self.epoch}{cap}: "
                f"train loss {self.train_loss:.4f}, valid {self.selection} {self.valid_loss:.4f} "
                f"(best {self.best_loss:.4f} at epoch {self.best_epoch}), {self.seconds:.1f} s, "
                f"ETA {self.eta_seconds / 60:.1f} min")


ProgressHook = Callable[[EpochProgress], None]

#: A run is the folder ``<runs>/<name>``: one file name, which ext4, APFS and NTFS cap at 255 bytes.
RUN_NAME_LIMIT = 255


def run_dir_name(view: str, ablation: str, name: str | None) -> str:
    """The run's folder name. ``name`` (``--name``) is used as typed, so a longer one is refused
    before any training rather than cut into a folder the user did not ask for. The default
    ``<view>-<ablation>-<id>`` goes through ``quote_name``: unchanged while it fits (view names,
    ablations and ids hold only characters it keeps), else a readable prefix and a hash."""
    if not name:
        return quote_name(f"{view}-{ablation}-{new_id()}")
    if name in (".", "..") or any(c in name for c in "/\\\0"):  # nested folders, or ones outside <runs>
        raise ConfigError(f"run name {name!r} is not one folder name (no '/', '\\', NUL, '.' or '..')")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > RUN_NAME_LIMIT:
        raise ConfigError(f"run name {name[:40]!r}... is {size} bytes; a run is the folder <runs>/<name>, "
                          f"so at most {RUN_NAME_LIMIT} bytes (UTF-8)")
    return name


@dataclass
class EpochClock:
    """Estimates the time left in a multi-seed run. Early stopping makes epoch counts unknown: the
    current seed has at most ``min(cap, patience)`` epochs left, a seed not yet started is assumed to
    run as long as the finished ones did on average (the current seed's bound while none has)."""

    n_seeds: int
    patience: int
    max_epochs: int | None
    epoch_seconds: list[float] = field(default_factory=list)
    finished_epochs: list[int] = field(default_factory=list)

    def eta(self, seed_index: int, epoch: int, best_epoch: int, seconds: float) -> float:
        self.epoch_seconds.append(seconds)
        left = self.patience - (epoch - best_epoch)
        if self.max_epochs is not None:
            left = min(left, self.max_epochs - epoch)
        per_seed = float(np.mean(self.finished_epochs)) if self.finished_epochs else epoch + left
        epochs_left = max(left, 0) + (self.n_seeds - seed_index) * per_seed
        return epochs_left * float(np.mean(self.epoch_seconds))


def _progress_callback(hook: ProgressHook, clock: EpochClock, seed: int, seed_index: int,
                       selection: str) -> EpochCallback:
    """A training-loop callback that turns each epoch record into an ``EpochProgress`` for ``hook``."""
    best = {"loss": float("inf"), "epoch": 0}

    def on_epoch(record: dict[str, float], model: nn.Module, improved: bool) -> None:
        epoch = int(record["epoch"])
        if improved:
            best.update(loss=record["valid_loss_m"], epoch=epoch)
        hook(EpochProgress(
            seed=seed, seed_index=seed_index, n_seeds=clock.n_seeds, epoch=epoch, max_epochs=clock.max_epochs,
            train_loss=record["train_loss"], valid_loss=record["valid_loss_m"], best_loss=best["loss"],
            best_epoch=int(best["epoch"]), seconds=record["seconds"],
            eta_seconds=clock.eta(seed_index, epoch, int(best["epoch"]), record["seconds"]), selection=selection,
        ))

    return on_epoch


def train_plan(config: TrainConfig, ablation: str, seeds: int | None, *, store: Any = None,
               view: str | None = None) -> tuple[TrainConfig, list[int]]:
    """``config`` with ``ablation`` applied and the seeds to train: ``config.seed``, or the first
    ``seeds`` of ``config.seeds``. Checked before any work (``run_train`` and ``train --dry-run``):
    the ablation, the seed count, what the config needs of this machine (the device, the text model
    folder it names) and, given ``store`` and ``view``, the view (``open_training_view``: it exists,
    matches the config, has train and valid clips; a text model folder it names is checked too)."""
    try:
        cfg = with_ablation(config, ablation)
    except ValidationError as exc:  # the ablation's switches contradict the config
        raise ConfigError.from_validation(exc, f"train config with ablation {ablation!r}") from None
    except ValueError as exc:  # an unknown ablation
        raise ConfigError(str(exc)) from None
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds {seeds}: train at least 1 seed (leave it out to train train.seed alone)")
    seed_list = cfg.seeds[:seeds] if seeds else [cfg.seed]
    if seeds and len(seed_list) < seeds:
        raise ConfigError(f"--seeds {seeds} but train.seeds lists only {len(cfg.seeds)} seeds")
    try:
        resolve_device(cfg.device)
    except ConfigError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    if cfg.text_mode == "finetune" and "text" in cfg.modalities and cfg.text_model_path is not None:
        check_text_model(cfg.text_model_path, "train.text_model_path")
    if store is not None and view is not None:
        open_training_view(store, view, cfg)
    return cfg, seed_list


def run_train(
    store: str, view: str, config: TrainConfig, runs_dir: str | Path, *, ablation: str = "full",
    seeds: int | None = None, name: str | None = None, progress: ProgressHook | None = None,
    ensemble: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Train ``ablation`` of ``config`` with 1 (``config.seed``) or the first ``seeds`` seeds;
    ``progress`` hears about every epoch of every seed. ``ensemble``: also score the seeds'
    predictions averaged per clip (``summary["ensemble"]``, next to the mean ± std). The run is
    whole once ``summary.json`` is written; run again under the same ``name`` after a stop, it keeps
    the seeds that finished (``_kept_seed``) and trains the others afresh."""
    run_root = Path(runs_dir) / run_dir_name(view, ablation, name)
    cfg, seed_list = train_plan(config, ablation, seeds, store=store, view=view)
    if (run_root / "summary.json").exists():
        raise ConfigError(f"{run_root} already holds a finished run; choose a new run name")
    view_fingerprint = open_view(store, view).fingerprint
    per_seed = {}
    run_dirs: list[Path] = []
    clock = EpochClock(len(seed_list), cfg.patience, cfg.max_epochs)
    for k, seed in enumerate(seed_list, start=1):
        seed_cfg = cfg.model_copy(update={"seed": seed})
        path = run_root / f"seed-{seed}"
        if _kept_seed(RunDir(path), seed_cfg, view_fingerprint):  # a rerun after a stop keeps finished seeds
            clock.finished_epochs.append(len(RunDir(path).epochs()))
        else:
            on_epoch = _progress_callback(progress, clock, seed, k, selection_metric(cfg.target)) if progress else None
            _, fitted = train_on_view(store, view, seed_cfg, path, on_epoch=on_epoch)
            clock.finished_epochs.append(len(fitted.history))
        per_seed[seed] = json.loads((path / "metrics.json").read_text())
        run_dirs.append(path)
    ens = ensemble_metrics(run_dirs) if ensemble else None
    return run_root, _write_summary(run_root, "summary", per_seed, ens)


def _kept_seed(run: RunDir, config: TrainConfig, view_fingerprint: str) -> bool:
    """Whether a seed of a run started again (the same name, after it was stopped) is kept as it is:
    finished with this config on this build of the view. A finished seed of another config or view
    is refused: the run's seeds would not be one experiment. An unfinished one is trained afresh."""
    if not run.finished():
        return False
    if run.config() != config or run.info()["view_fingerprint"] != view_fingerprint:
        raise ConfigError(f"{run.path} holds a finished seed trained with another config or view build; "
                          "choose a new run name")
    return True


def seed_runs(run: str | Path) -> list[Path]:
    """The seed run directories of RUN (RUN itself when it is a single run directory)."""
    run = Path(run)
    if (run / "run.json").exists():
        return [run]
    found = sorted(p for p in run.glob("seed-*") if (p / "run.json").exists())
    if not found:
        raise ConfigError(f"{run}: not a run directory (no run.json, no seed-*/run.json)")
    return found


def runs_by_seed(run: str | Path) -> dict[int, Path]:
    """seed -> seed run directory of RUN, the seed as its ``config.yaml`` says; two directories of
    one seed (one copied in from another run) are refused, naming both, as averaging over seeds
    would silently drop one of them."""
    by_seed: dict[int, Path] = {}
    for r in seed_runs(run):
        seed = RunDir(r).config().seed
        if seed in by_seed:
            raise ConfigError(f"run {run}: {by_seed[seed]} and {r} both hold seed {seed} (their config.yaml); "
                              "remove or move one of them")
        by_seed[seed] = r
    return by_seed


def run_evaluate(run: str | Path, split: str = "test", store: str | None = None) -> dict[str, Any]:
    """Evaluate every seed run of RUN on ``split``; mean ± std written to ``eval-<split>.json/.md``.
    Every seed's model is rebuilt from its files before any seed is scored (a damaged seed fails
    the command before any work), and scored as rebuilt."""
    dirs = runs_by_seed(run)
    models = {seed: load_run_model(r) for seed, r in dirs.items()}
    per_seed = {seed: {split: evaluate_run(r, split, store, models[seed])} for seed, r in dirs.items()}
    return _write_summary(Path(run), f"eval-{split}", per_seed)
