"""What a view must offer before a run of a config trains or scores on it. Every refusal comes here,
before any work (``train --dry-run`` included), as a ``ConfigError`` naming the view, the split,
the clip or the setting: a run must never learn from padding, a test copy or an empty class centre
and still report metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from store.errors import ConfigError
from store.views import AlignedView, group_array, open_view
from training.config import TrainConfig
from training.model import check_text_model
from training.slgm import class_members
from training.targets import Target, view_classes


def no_labelled_clip(view: str, split: str, n: int, target: Target) -> ConfigError:
    """The refusal of a split whose ``n`` clips have no label for ``target``."""
    hint = "" if target.categorical else "; a view with class labels only trains with --target sentiment|emotion"
    return ConfigError(f"view {view!r}: none of the {n} {split} clips has a {target.name} label (column "
                       f"{target.column!r}){hint}")


def view_dims(view: AlignedView) -> dict[str, int]:
    """Feature size D_m of each modality of the view (store names), from the arrays themselves."""
    group = view.group()
    return {m: int(group_array(group, f"{m}/values").shape[-1]) for m in view.modalities}


def require_present(view: AlignedView, modalities: Sequence[str], rows: Sequence[int] | np.ndarray,
                    split: str = "train") -> None:
    """Refuse ``modalities`` that no clip of ``rows`` (view rows: the training split's labelled clips)
    has: a model that uses one learns from its padding only and reports metrics all the same. Some
    absent clips are normal (a clip without video) and are not refused."""
    group = view.group()
    rows = np.asarray(rows, dtype=np.int64)
    absent = [m for m in modalities
              if not np.asarray(group_array(group, f"{m}/present")[...]).astype(bool)[rows].any()]
    if absent:
        which = f"modality {absent[0]!r} is" if len(absent) == 1 else f"modalities {', '.join(map(repr, absent))} are"
        raise ConfigError(f"view {view.name!r}: {which} present for no {split} clip; the model would "
                          "learn from padding alone (a single-modality --ablation trains on one the view has)")


def finetune_model_path(view: AlignedView, config: TrainConfig) -> str | None:
    """The local text-model folder fine-tuning loads: the config's override, else the folder the
    view's text set was extracted with (its ``text_model_path`` attr)."""
    return config.text_model_path or view.attrs.get("text_model_path")


def check_view(view: AlignedView, config: TrainConfig) -> dict[str, int]:
    """Refuse a view that does not match the config, or a text model folder to fine-tune (the config's
    or the view's) that is not one; returns the view's dims (store modality names)."""
    expected = config.view
    problems = []
    if expected.fingerprint is not None and expected.fingerprint != view.fingerprint:
        problems.append(f"fingerprint is {view.fingerprint!r}, config expects {expected.fingerprint!r}")
    if expected.modalities is not None and sorted(expected.modalities) != view.modalities:
        problems.append(f"modalities are {view.modalities}, config expects {sorted(expected.modalities)}")
    missing = [m for m in config.modalities if m not in view.modalities]
    if missing:
        problems.append(f"lacks modalities {missing} that config.modalities={config.modalities} trains on")
    dims = view_dims(view)
    for m, d in (expected.dims or {}).items():
        if dims.get(m) != d:
            problems.append(f"{m} has dim {dims.get(m)}, config expects {d}")
    if config.text_mode == "finetune" and "text" in config.modalities:
        if not view.has_array("text_tokens/input_ids"):
            problems.append("has no text_tokens/input_ids, which text_mode=finetune needs (or use text_mode=frozen)")
        if finetune_model_path(view, config) is None:
            problems.append("names no text_model_path and the config sets none (needed by text_mode=finetune)")
    if problems:
        raise ConfigError(f"aligned view {view.name!r} does not match the training config: " + "; ".join(problems))
    text_path = finetune_model_path(view, config)
    if config.text_mode == "finetune" and "text" in config.modalities and text_path is not None:
        check_text_model(text_path, "train.text_model_path" if config.text_model_path
                         else f"text_model_path of aligned view {view.name!r}")
    return dims


def open_training_view(store: Any, view_name: str, config: TrainConfig) -> tuple[AlignedView, dict[str, int]]:
    """The view ``config`` trains on and its dims, refused before any work (also by ``train
    --dry-run``): a missing store or view (``StoreError``), one that does not match ``config``
    (``check_view``), that has no train or no valid clips, or whose clips and labels cannot train
    this target (``training_target``) (``ConfigError``)."""
    view, dims, _ = checked_view(store, view_name, config)
    return view, dims


def checked_view(store: Any, view_name: str, config: TrainConfig) -> tuple[AlignedView, dict[str, int], Target]:
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
