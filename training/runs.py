"""Run directories: everything needed to trust, reproduce and re-evaluate one training run.

Layout of ``<run_dir>/``:
  config.yaml        the fully resolved TrainConfig
  run.json           store URL, view name + fingerprint + attrs, input dims, text model path,
                     device, versions, best epoch, timings
  epochs.json/.csv   one record per epoch (train losses, valid metrics, SLGM label gaps)
  best.safetensors   the best-validation weights (safetensors: loading runs no pickle)
  metrics.json/.md   final metrics per split of the best checkpoint (MMSA table; for a categorical
                     target accuracy, weighted/macro F1, per-class F1 and CE)
  confusion.json     categorical target only: confusion matrix per split (rows true, columns
                     predicted), also as confusion_<split>.csv
  predictions.csv    split, clip_id, label, pred of the best checkpoint on valid (and test), plus
                     p_<class> probabilities for a categorical target: what seed ensembles
                     average (``stages.train``)
  view_stats.safetensors  the view's per-modality train mean/std (``<modality>/mean|std``): new
                     data is normalised with them at predict time, even when the store has moved
"""

from __future__ import annotations

import csv
import json
import os
import platform
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from store.errors import ConfigError, StoreConflictError, StoreError
from store.fs import atomic_path, damaged_as_store_error, unreadable
from store.runtime import resolve_device
from store.schema import Modality
from store.views import AlignedView, group_array, open_view
from training.config import SHORT, TrainConfig
from training.data import (
    Collator,
    ViewDataset,
    check_view,
    finetune_model_path,
    make_loader,
    no_labelled_clip,
    read_stats,
    require_present,
)
from training.loop import EpochCallback, FitResult, Predictions, evaluate, fit, predict, seed_everything
from training.metrics import format_table, metrics_json, null_undefined
from training.model import MCMF, build_model
from training.slgm import class_members
from training.targets import SCORE, Target, class_weights, view_classes

CHECKPOINT = "best.safetensors"
VIEW_STATS = "view_stats.safetensors"
PREDICTIONS = "predictions.csv"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, obj: Any) -> None:
    """Strict JSON, undefined metrics as null (``metrics_json``)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(metrics_json(obj))


def save_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write every state-dict entry as its own contiguous CPU tensor in a safetensors file.

    Not ``safetensors.torch.save_model``: it refuses parameters that are views sharing one storage
    with no name covering all of it, which is exactly what cuDNN makes of an LSTM's weights on CUDA
    (``flatten_parameters``). Copying each entry out costs one model's size of host memory once per
    best epoch and works for any module on any device.
    """
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata={"format": "pt"})


def reading_run_file(path: str | os.PathLike[str], what: str) -> AbstractContextManager[None]:
    """The store's damaged-file rule (``store.fs.damaged_as_store_error``) for a run folder's files:
    every one of them is written by a run, so a missing one is damage too, and YAML and safetensors
    raise their own errors."""
    return damaged_as_store_error(path, what, missing=True, errors=(yaml.YAMLError, SafetensorError))


def _misfit(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """How a checkpoint's weights differ from ``model``'s (names, shapes), or None when they fit:
    one short line, where ``load_state_dict`` would list every one of hundreds of names."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    missing, extra = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
    reshaped = sorted(k for k in want.keys() & have.keys() if want[k] != have[k])
    problems = [f"{len(missing)} of the model's weights absent (first {missing[0]})"] if missing else []
    problems += [f"{len(extra)} weights the model has no place for (first {extra[0]})"] if extra else []
    problems += [f"{len(reshaped)} weights of another shape (first {reshaped[0]}: {have[reshaped[0]]} in the "
                 f"file, {want[reshaped[0]]} in the model)"] if reshaped else []
    return f"weights of another model: {', '.join(problems)}" if problems else None


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load weights saved by ``save_checkpoint``: every name and shape must match (strict), else
    (or when the file is damaged) a ``StoreError`` naming the file. The values are copied into the
    existing parameters, so views of a flat cuDNN buffer stay views of it."""
    device = str(next(model.parameters()).device)
    with reading_run_file(path, "checkpoint"):
        state = load_file(os.fspath(path), device=device)
    misfit = _misfit(model, state)
    if misfit is not None:
        raise unreadable(path, "checkpoint", misfit)
    model.load_state_dict(state, strict=True)


class RunInfo(BaseModel):
    """What readers of ``run.json`` (evaluate, predict, rebuilding the model) take from it by name;
    ``train_on_view`` writes all of it. Only checked: ``RunDir.info`` returns the JSON object."""

    model_config = ConfigDict(extra="allow")

    store: str
    view: str
    view_fingerprint: str
    view_attrs: dict[str, Any]
    dims: dict[Modality, int]
    text_model_path: str | None = None
    classes: list[str] | None = None


class RunDir:
    """Writer/reader of one run directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | os.PathLike[str], config: TrainConfig, info: dict[str, Any]) -> RunDir:
        """Start a run: write the resolved config and run info; refuse to overwrite a finished run."""
        run = cls(path)
        if (run.path / "metrics.json").exists():
            raise ConfigError(f"{run.path} already holds a finished run; choose a new run directory")
        run.path.mkdir(parents=True, exist_ok=True)
        (run.path / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        base = {"started": _now(), "torch": torch.__version__, "python": platform.python_version()}
        _write_json(run.path / "run.json", {**base, **info})
        for name in ("epochs.json", "epochs.csv", CHECKPOINT):
            (run.path / name).unlink(missing_ok=True)
        return run

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def write_view_stats(self, view: AlignedView, modalities: Sequence[str]) -> None:
        """Keep the view's train statistics with the run (scoring new data must not need the store)."""
        group = view.group()
        arrays = {f"{m}/{k}": torch.from_numpy(np.ascontiguousarray(group_array(group, f"{m}/{k}")[...], np.float32))
                  for m in modalities for k in ("mean", "std")}
        with atomic_path(self.path / VIEW_STATS) as tmp:
            save_file(arrays, tmp, metadata={"view_fingerprint": view.fingerprint})

    def view_stats(self) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """modality -> (mean, std) of the view this run trained on; None for runs older than the file."""
        path = self.path / VIEW_STATS
        if not path.exists():
            return None
        with reading_run_file(path, "view statistics"):
            flat = {k: v.numpy() for k, v in load_file(os.fspath(path)).items()}
            return {m: (flat[f"{m}/mean"], flat[f"{m}/std"]) for m in {k.split("/")[0] for k in flat}}

    def config(self) -> TrainConfig:
        path = self.path / "config.yaml"
        with reading_run_file(path, "run config"):
            return TrainConfig.model_validate(yaml.safe_load(path.read_text()))

    def info(self) -> dict[str, Any]:
        """``run.json``, checked to hold what its readers index (``RunInfo``)."""
        path = self.path / "run.json"
        with reading_run_file(path, "run info"):
            info = json.loads(path.read_text())
            RunInfo.model_validate(info)
        return info

    def update_info(self, **fields: Any) -> None:
        _write_json(self.path / "run.json", {**self.info(), **fields})

    def epochs(self) -> list[dict[str, float]]:
        p = self.path / "epochs.json"
        return json.loads(p.read_text()) if p.exists() else []

    def log_epoch(self, record: dict[str, float], model: nn.Module, improved: bool) -> None:
        """Append the epoch record (JSON + CSV) and save the checkpoint when validation improved."""
        records = [*self.epochs(), null_undefined(record)]  # as read back: the CSV shows every undefined value alike
        _write_json(self.path / "epochs.json", records)
        columns = list(dict.fromkeys(k for r in records for k in r))
        with open(self.path / "epochs.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(records)
        if improved:
            save_checkpoint(model, self.checkpoint)

    def target(self) -> Target:
        """What this run predicts (the classes were fixed from its view when it started)."""
        info = self.info()
        return Target(self.config().target, info.get("classes") or (), info.get("class_weights"))

    def write_predictions(self, predictions: dict[str, Predictions], target: Target = SCORE) -> None:
        """``predictions.csv``: one row per clip and split (split, clip_id, label, pred); for a
        categorical target label and pred are class names and p_<class> columns hold the probabilities."""
        classes = target.classes
        with atomic_path(self.path / PREDICTIONS) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["split", "clip_id", "label", "pred", *(f"p_{c}" for c in classes)])
            for split, p in predictions.items():
                if not classes:
                    writer.writerows([split, c, repr(float(y)), repr(float(q))]
                                     for c, y, q in zip(p.clip_ids, p.label, p.pred))
                    continue
                writer.writerows([split, c, classes[int(y)], classes[int(np.argmax(q))], *map(repr, map(float, q))]
                                 for c, y, q in zip(p.clip_ids, p.label, p.pred))

    def predictions(self) -> dict[str, Predictions]:
        """The predictions written by ``write_predictions``, per split in file order."""
        classes = self.target().classes
        index = {c: i for i, c in enumerate(classes)}
        rows: dict[str, list[tuple[str, Any, Any]]] = {}
        with open(self.path / PREDICTIONS, newline="") as f:
            for r in csv.DictReader(f):
                row: tuple[str, Any, Any]
                if classes:
                    row = (r["clip_id"], index[r["label"]], [float(r[f"p_{c}"]) for c in classes])
                else:
                    row = (r["clip_id"], float(r["label"]), float(r["pred"]))
                rows.setdefault(r["split"], []).append(row)
        return {s: Predictions([c for c, _, _ in v], np.array([q for _, _, q in v]), np.array([y for _, y, _ in v]))
                for s, v in rows.items()}

    def write_metrics(self, metrics: dict[str, dict[str, float]]) -> None:
        _write_json(self.path / "metrics.json", metrics)
        (self.path / "metrics.md").write_text(format_table(metrics))

    def write_confusion(self, confusion: dict[str, dict[str, Any]]) -> None:
        """``confusion.json`` (split -> classes, matrix) and one ``confusion_<split>.csv`` per split."""
        _write_json(self.path / "confusion.json", confusion)
        for split, c in confusion.items():
            with atomic_path(self.path / f"confusion_{split}.csv") as tmp, open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["true \\ predicted", *c["classes"]])
                writer.writerows([name, *row] for name, row in zip(c["classes"], c["matrix"]))


def _dims_short(dims: dict[str, int]) -> dict[str, int]:
    return {SHORT[m]: d for m, d in dims.items()}


def open_training_view(store: Any, view_name: str, config: TrainConfig) -> tuple[AlignedView, dict[str, int]]:
    """The view ``config`` trains on and its dims, refused before any work (also by ``train
    --dry-run``): a missing store or view (``StoreError``), one that does not match ``config``
    (``check_view``), that has no train or no valid clips, or whose clips and labels cannot train
    this target (``training_target``) (``ConfigError``)."""
    view, dims, _ = _checked_view(store, view_name, config)
    return view, dims


def _checked_view(store: Any, view_name: str, config: TrainConfig) -> tuple[AlignedView, dict[str, int], Target]:
    view = open_view(store, view_name)
    dims = check_view(view, config)
    splits = set(view.clips.column("split").to_pylist())
    if not {"train", "valid"} <= splits:
        raise ConfigError(f"aligned view {view.name!r} needs train and valid clips, has splits {sorted(splits)}")
    return view, dims, training_target(view, config)


def check_clip_table(view: AlignedView) -> None:
    """Refuse a view whose clip table lists a clip id, or points at a row of its arrays, more than once
    (or at a row it does not have). Ingest and align never write one; a view written another way can.
    A clip twice in one split is trained and scored twice, in two splits its test copy is trained on,
    and a seed ensemble cannot match predictions up by clip id."""
    clips = view.clips
    ids = clips.column("clip_id").to_pylist()
    count = Counter(ids)
    repeated = [c for c, n in count.items() if n > 1]
    if repeated:
        split = clips.column("split").to_pylist()
        where = sorted(Counter(s for c, s in zip(ids, split) if c == repeated[0]).items())
        more = f" and {len(repeated) - 1} more clip(s)" if len(repeated) > 1 else ""
        raise ConfigError(f"aligned view {view.name!r}: its clip table lists clip {repeated[0]!r} {count[repeated[0]]} "
                          f"times (in {', '.join(s if k == 1 else f'{s} {k} times' for s, k in where)}){more}; a "
                          "clip is one row of a view (rebuild it: emoflow align --force)")
    rows = clips.column("row").to_pylist()
    seen: set[int] = set()
    for c, r in zip(ids, rows):
        if r is None or not 0 <= r < len(rows) or r in seen:
            which = "another clip has" if r in seen else f"is not one of its {len(rows)} rows"
            raise ConfigError(f"aligned view {view.name!r}: its clip table points clip {c!r} at array row {r}, which "
                              f"{which}; rebuild it: emoflow align --force")
        seen.add(r)


def training_target(view: AlignedView, config: TrainConfig) -> Target:
    """What a run of ``config`` on ``view`` predicts, with everything its clips must offer for that
    checked before any work (``ConfigError`` naming the view, the split, the clip or the setting):
    each clip once (``check_clip_table``); scores in [-3, 3] (``Target.check_labels``); a class list
    that covers every class the clips carry (``view_classes``); a labelled clip in every split; each
    modality the model uses present for some labelled train clip (``require_present``); two classes
    among a classifier's train clips (one class teaches nothing: every prediction would be it); and
    with SLGM, positive and negative train scores (``_require_slgm_classes``)."""
    check_clip_table(view)
    clips = view.clips
    target = Target(config.target, view_classes(clips, config.target, config.classes)
                    if config.target != "score" else ())
    target.check_labels(clips, view.name)
    labels = target.labels(clips)
    labelled = target.labelled(labels)
    split = np.asarray(clips.column("split").to_pylist(), dtype=object)
    for s in ("train", "valid", "test"):
        if (split == s).any() and not labelled[split == s].any():
            raise no_labelled_clip(view.name, s, int((split == s).sum()), target)
    train = labelled & (split == "train")
    require_present(view, config.modalities, clips.column("row").to_numpy()[train])
    if target.categorical:
        held = sorted({target.classes[i] for i in labels[train]})
        if len(held) < 2:
            raise ConfigError(f"target {target.name!r}: every labelled train clip of view {view.name!r} has class "
                              f"{held[0]!r} (the view's classes: {', '.join(target.classes)}); a classifier learns "
                              "nothing from one class (it would predict it for every clip)")
    elif config.use_slgm:
        _require_slgm_classes(view.name, labels[train], config.exclude_zero)
    return target


def _require_slgm_classes(view: str, y: np.ndarray, exclude_zero: bool) -> None:
    """SLGM generates unimodal labels from each clip's distance to the positive and the negative class
    centre of the training labels (spec §4.2-4.4); with no training label of one class that centre
    stays the zero vector it starts as, and every generated label is measured against it."""
    pos, neg = class_members(torch.as_tensor(y), exclude_zero)
    missing = [name for name, member in (("positive", pos), ("negative", neg)) if not bool(member.any())]
    if not missing:
        return
    zeros = int(np.count_nonzero(y == 0))
    why = f"; {zeros} are 0, which is in neither class (train.exclude_zero)" if exclude_zero and zeros else ""
    raise ConfigError(f"aligned view {view!r}: SLGM needs positive and negative training scores for its class "
                      f"centres, but none of the {len(y)} labelled train clips has a {' or a '.join(missing)} "
                      f"score{why}; train without SLGM (--ablation no_slgm, or --set train.use_slgm=false)")


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
    view, dims, target = _checked_view(store, view_name, config)
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
    run.update_info(
        finished=_now(),
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
    of the run is a ``StoreError`` naming it (``reading_run_file``), so evaluate and predict call this
    for every seed before any other work."""
    run = RunDir(run_dir)
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
