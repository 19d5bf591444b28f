"""One training run on an aligned view into a run directory, and a run's model scored again later:
what ``emoflow train``, ``evaluate`` and ``predict`` call."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from store.errors import StoreConflictError, StoreError
from store.runtime import resolve_device
from store.views import AlignedView, open_view
from training.batching import make_loader
from training.checks import check_clip_table, checked_view, finetune_model_path
from training.config import SHORT, TrainConfig
from training.data import Collator, ViewDataset, read_stats
from training.loop import EpochCallback, FitResult, Predictions, evaluate, fit, predict, seed_everything
from training.model import MCMF, build_model
from training.runs import RunDir, load_checkpoint
from training.targets import Target, class_weights


def _dims_short(dims: dict[str, int]) -> dict[str, int]:
    return {SHORT[m]: d for m, d in dims.items()}


def train_on_view(
    store: Any, view_name: str, config: TrainConfig, run_dir: str | os.PathLike[str],
    on_epoch: EpochCallback | None = None,
) -> tuple[RunDir, FitResult]:
    """Train MCMF(+SLGM) on an aligned view and leave a complete run directory.

    ``store`` is a FeatureStore, a path or a URL. Refuses (ConfigError), before writing anything, a
    view whose fingerprint, modalities or dims differ from ``config.view``, one whose clips and labels
    cannot train this target (``training_target``: repeated clips, off-scale scores, a modality no
    training clip has, one training class, one-signed scores under SLGM), and (StoreError) one whose
    statistics are not finite;
    clips without a label for the target are left out (``run.json["unlabelled"]``). A diverging
    run (``TrainingError`` from ``fit``) stops there and writes no metrics: it is not finished; so
    does a run whose view is rebuilt while it reads it (``StoreError``, checked at every array open,
    after each epoch and before the metrics are written), rather than train on two views.
    Final metrics are those of the best-validation checkpoint on valid and test (test only if the
    view has it). ``on_epoch`` is called after each epoch is logged (progress reporting).
    """
    view, dims, target = checked_view(store, view_name, config)
    splits = set(view.clips.column("split").to_pylist())
    text_path = finetune_model_path(view, config)
    device = resolve_device(config.device)
    tokens = config.text_mode == "finetune"
    datasets = {
        s: ViewDataset(view, s, config.modalities, tokens=tokens, cache_mb=config.cache_mb, target=target,
                       whole_shards=config.batching == "shards")
        for s in ("train", "valid", "test")
        if s in splits
    }
    stats = read_stats(view, config.modalities)
    if config.class_weights == "balanced" and target.categorical:
        target = Target(target.name, target.classes, class_weights(datasets["train"].labels, len(target.classes)))
    run = RunDir.create(
        run_dir,
        config,
        {
            "store": view.fs.url,
            "view": view.name,
            "view_fingerprint": view.fingerprint,
            "view_attrs": view.attrs,
            "dims": dims,
            "text_model_path": text_path,
            "device": str(device),
            "unlabelled": {s: d.unlabelled for s, d in datasets.items()},
            **({"classes": list(target.classes), "class_weights": target.weights} if target.categorical else {}),
        },
    )
    run.write_view_stats(view, config.modalities)
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, config.deterministic)
    model = build_model(config, _dims_short(dims), text_path, target.outputs)
    collator = Collator(stats, finetune_text=tokens)
    loaders = {s: make_loader(ds, collator, config, train=s == "train") for s, ds in datasets.items()}
    result = fit(
        model,
        loaders["train"],
        loaders["valid"],
        config,
        train_labels=datasets["train"].labels,
        on_epoch_end=_chain(_view_unchanged(view), run.log_epoch, *([on_epoch] if on_epoch else [])),
        target=target,
    )
    predictions: dict[str, Predictions] = {
        s: predict(model, loaders[s], target=target) for s in ("valid", "test") if s in loaders
    }
    view.check_unchanged()
    run.write_predictions(predictions, target)
    run.write_metrics({s: target.metrics(p.pred, p.label) for s, p in predictions.items()})
    if target.categorical:
        run.write_confusion({s: target.confusion(p.pred, p.label) for s, p in predictions.items()})
    run.finish(
        best_epoch=result.best_epoch,
        best_valid_loss=result.best_valid_loss,
        epochs_run=len(result.history),
        stopped_early=result.stopped_early,
    )
    return run, result


def _view_unchanged(view: AlignedView) -> EpochCallback:
    """After each epoch, before it is logged: the view is still the build the run opened. Loader
    workers keep their arrays open for the whole run and read chunks by path, so a rebuild swapped
    in mid-run is caught here (one small read an epoch) and the run stops unfinished."""
    def check(record: dict[str, float], model: nn.Module, improved: bool) -> None:
        view.check_unchanged()

    return check


def _chain(*callbacks: EpochCallback) -> EpochCallback:
    def call(record: dict[str, float], model: nn.Module, improved: bool) -> None:
        for callback in callbacks:
            callback(record, model, improved)

    return call


def load_run_model(run_dir: str | os.PathLike[str], device: str | None = None) -> MCMF:
    """Rebuild a run's model from its config and load the best checkpoint; a damaged or missing file
    of the run is a ``StoreError`` naming it (``reading_run_file``), and a run that did not finish a
    ``ConfigError`` (``RunDir.check_finished``), so evaluate and predict call this for every seed
    before any other work."""
    run = RunDir(run_dir)
    run.check_finished()
    config = run.config()
    info = run.info()
    model = build_model(config, _dims_short(info["dims"]), info.get("text_model_path"), run.target().outputs)
    model.to(resolve_device(device or config.device))
    load_checkpoint(model, run.checkpoint)
    return model


def evaluate_run(
    run_dir: str | os.PathLike[str], split: str, store: Any | None = None, model: MCMF | None = None,
) -> dict[str, float]:
    """MMSA metrics of a run's best checkpoint on ``split`` of its view (``store`` overrides the
    recorded store location, e.g. after moving it; ``model``: the run's model already loaded with
    ``load_run_model``); refuses a view whose fingerprint changed, or that is rebuilt while it is
    read (``StoreError``)."""
    run = RunDir(run_dir)
    config = run.config()
    info = run.info()
    try:
        view = open_view(store if store is not None else info["store"], info["view"])
    except StoreError as exc:
        if store is not None:
            raise
        raise StoreError(f"{exc}; it is the store {run.path / 'run.json'} records: if the store moved, give its "
                         "new location (evaluate --store)") from None
    if view.fingerprint != info["view_fingerprint"]:
        raise StoreConflictError(
            f"view {view.name!r} fingerprint is now {view.fingerprint!r}; run {run.path} was trained on "
            f"{info['view_fingerprint']!r}"
        )
    model = model if model is not None else load_run_model(run_dir)
    target = run.target()
    check_clip_table(view)  # runs trained before these checks
    target.check_labels(view.clips, view.name, [split])
    tokens = config.text_mode == "finetune"
    dataset = ViewDataset(view, split, config.modalities, tokens=tokens, cache_mb=config.cache_mb, target=target,
                          whole_shards=config.batching == "shards")
    loader = make_loader(dataset, Collator(read_stats(view, config.modalities), tokens), config, train=False)
    metrics = evaluate(model, loader, target=target)
    view.check_unchanged()  # not rebuilt while its arrays were read
    return metrics
