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

from store.errors import ConfigError
from store.fs import atomic_path, damaged_as_store_error, unreadable
from store.schema import Modality
from store.views import AlignedView, group_array
from training.config import TrainConfig
from training.loop import Predictions
from training.metrics import format_table, metrics_json, null_undefined
from training.targets import SCORE, Target

CHECKPOINT = "best.safetensors"
VIEW_STATS = "view_stats.safetensors"
PREDICTIONS = "predictions.csv"
#: what a run writes after its config and run.json: an unfinished attempt's are removed when it starts again
ATTEMPT_FILES = ("epochs.json", "epochs.csv", CHECKPOINT, VIEW_STATS, PREDICTIONS, "metrics.json", "metrics.md",
                 "confusion.json")


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
        """Start a run: write the resolved config and run info; refuse to overwrite a finished run.
        A run that did not finish (stopped, failed) is started afresh: what its attempt wrote goes
        first, so a killed start never leaves an older checkpoint under a newer run.json."""
        run = cls(path)
        if run.finished():
            raise ConfigError(f"{run.path} already holds a finished run; choose a new run directory")
        run.path.mkdir(parents=True, exist_ok=True)
        for name in (*ATTEMPT_FILES, *(p.name for p in run.path.glob("confusion_*.csv"))):
            (run.path / name).unlink(missing_ok=True)
        with atomic_path(run.path / "config.yaml") as tmp:
            Path(tmp).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        base = {"started": _now(), "torch": torch.__version__, "python": platform.python_version()}
        _write_json(run.path / "run.json", {**base, **info})
        return run

    def finished(self) -> bool:
        """Whether ``finish`` stamped this run (False also when it has no readable run.json yet)."""
        try:
            return "finished" in json.loads((self.path / "run.json").read_text())
        except (OSError, ValueError):
            return False

    def check_finished(self) -> None:
        """Refuse a run that did not finish (stopped, failed or still training): its checkpoint is
        an epoch's, not the run's result, and it has no metrics to compare with."""
        if "finished" not in self.info():
            raise ConfigError(
                f"run {self.path} did not finish training (its run.json has no 'finished' stamp: it was "
                "stopped, failed, or is still training); train it again (the same --name starts it afresh) "
                "or use a finished run")

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

    def finish(self, **results: Any) -> None:
        """Stamp ``run.json`` finished, with the fit's results: a run without it did not finish."""
        _write_json(self.path / "run.json", {**self.info(), **results, "finished": _now()})

    def epochs(self) -> list[dict[str, float]]:
        p = self.path / "epochs.json"
        return json.loads(p.read_text()) if p.exists() else []

    def log_epoch(self, record: dict[str, float], model: nn.Module, improved: bool) -> None:
        """Append the epoch record (JSON + CSV) and save the checkpoint when validation improved."""
        records = [*self.epochs(), null_undefined(record)]  # as read back: the CSV shows every undefined value alike
        _write_json(self.path / "epochs.json", records)
        columns = list(dict.fromkeys(k for r in records for k in r))
        with atomic_path(self.path / "epochs.csv") as tmp, open(tmp, "w", newline="") as f:
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
        with atomic_path(self.path / "metrics.md") as tmp:
            Path(tmp).write_text(format_table(metrics))

    def write_confusion(self, confusion: dict[str, dict[str, Any]]) -> None:
        """``confusion.json`` (split -> classes, matrix) and one ``confusion_<split>.csv`` per split."""
        _write_json(self.path / "confusion.json", confusion)
        for split, c in confusion.items():
            with atomic_path(self.path / f"confusion_{split}.csv") as tmp, open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["true \\ predicted", *c["classes"]])
                writer.writerows([name, *row] for name, row in zip(c["classes"], c["matrix"]))
