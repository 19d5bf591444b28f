"""``emoflow export mmsa``: an aligned view as the feature pickle thuiar/MMSA trains on.

The view already holds what MMSA's 19 models read (padded ``[N, L, D]`` arrays, lengths, token ids,
labels); this module only re-keys it by split into ``MMSA.data_loader.MMDataset``'s layout
(``interop.mmsa``), so emoflow's fingerprinted features can be compared against MMSA's models on
MMSA's own loader.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from interop.mmsa import FEATURE_KEYS, LENGTH_KEYS, SPLITS, TEXT_BERT, UNIMODAL, annotation, mmsa_id
from store import FeatureStore, open_view
from store.errors import StoreError
from store.fs import atomic_path, output_file, writing_out
from store.schema import MODALITIES
from store.views import AlignedView

PICKLE_PROTOCOL = 4  # what every Python 3 MMSA install reads


@dataclass
class MMSAExport:
    """What an export wrote: samples per split, the train split's shapes, and notes."""

    path: str
    view: str
    aligned: bool
    samples: dict[str, int]
    shapes: dict[str, list[int]]
    notes: list[str] = field(default_factory=list)


def _text_bert(view: AlignedView, length: int | None) -> np.ndarray | None:
    """[N, 3, L] float32 (input ids, attention mask, token type ids = 0) from the view's token ids,
    cut or zero-padded to ``length`` (None: the view's own token length T)."""
    if not view.has_array("text_tokens/input_ids"):
        return None
    ids = view.read("text_tokens/input_ids")
    att = view.read("text_tokens/attention_mask")
    if not att.any():  # the text set stores no token ids (align writes an all-padding placeholder)
        return None
    width = ids.shape[1] if length is None else length
    out = np.zeros((ids.shape[0], 3, width), np.float32)
    k = min(width, ids.shape[1])
    out[:, 0, :k] = ids[:, :k]
    out[:, 1, :k] = att[:, :k]
    return out


def build_mmsa(store: FeatureStore | str, view_name: str) -> tuple[dict[str, dict[str, Any]], MMSAExport]:
    """The MMSA dict of view ``view_name`` and what it holds (``path`` left empty).

    Values are the view's as stored (standardised when the view is ``normalized``); lengths are at
    least 1 (MMSA's LSTM encoders pack sequences and refuse length 0: an absent modality is one zero
    step). ``text_bert`` has the text's L on grid ``none`` (token i is text row i) and the view's
    token length T on the word/window grids, whose steps are words or windows, not tokens.
    """
    st = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    view = open_view(st, view_name)
    aligned = view.attrs.get("grid") != "none"
    notes: list[str] = []
    clips = view.clips.sort_by("row").to_pylist()
    table = {c["clip_id"]: c for c in st.clips().to_pylist()}
    stale = [c["clip_id"] for c in clips if c["clip_id"] not in table]
    if stale:
        raise StoreError(f"view {view_name!r} holds clips no longer in the clip table ({stale[:3]}...); "
                         "run `emoflow align` again")
    scored = [c["label"] is not None and math.isfinite(c["label"]) for c in clips]
    if not any(scored):
        raise StoreError(f"view {view_name!r} has no clip with a score label: an MMSA file carries one per sample "
                         "(a class-only dataset has no MMSA form)")
    if not all(scored):
        notes.append(f"{len(scored) - sum(scored)} clip(s) without a score label left out (an MMSA file carries "
                     "one per sample)")
    n = len(clips)
    values: dict[str, np.ndarray] = {}
    lengths: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        if m in view.modalities:
            values[m] = view.read(f"{m}/values")
            lengths[m] = np.maximum(view.read(f"{m}/lengths").astype(np.int64), 1)
        else:
            values[m] = np.zeros((n, 1, 1), np.float32)
            lengths[m] = np.ones(n, np.int64)
            notes.append(f"{m}: not in the view; written as one zero step of dim 1 (MMSA reads every modality)")
    text_len = values["text"].shape[1] if not aligned and "text" in view.modalities else None
    bert = _text_bert(view, text_len)
    if bert is None:
        notes.append("text_bert: not written (the view's text set stores no token ids); use_bert models need it")
    if view.attrs.get("normalized"):
        notes.append("values are the view's standardised ones (normalized: true); align with normalize: false "
                     "for raw features")
    unimodal = [k for k in UNIMODAL if any(table[c["clip_id"]][k] is not None for c in clips)]
    data: dict[str, dict[str, Any]] = {}
    samples: dict[str, int] = {}
    for split in SPLITS:
        rows = [i for i, c in enumerate(clips) if c["split"] == split and scored[i]]
        if not rows:
            notes.append(f"split {split!r} is empty (MMSA's loader needs samples in every split)")
        idx = np.asarray(rows, np.int64)
        sel = [table[clips[i]["clip_id"]] for i in rows]
        labels = np.asarray([clips[i]["label"] for i in rows], np.float32)
        part: dict[str, Any] = {
            "id": np.asarray([mmsa_id(c["clip_id"], c["video_id"]) for c in sel], dtype=object),
            "raw_text": np.asarray([c["text"] for c in sel], dtype=object),
            "regression_labels": labels,
            "annotations": np.asarray([annotation(float(y)) for y in labels], dtype=object),
        }
        for mod, key in FEATURE_KEYS.items():
            part[key] = values[mod][idx].astype(np.float32, copy=False)
        if bert is not None:
            part[TEXT_BERT] = bert[idx]
        for mod, key in LENGTH_KEYS.items():  # also for aligned views: MMSA ignores them there
            part[key] = lengths[mod][idx]
        for k in unimodal:
            part[UNIMODAL[k]] = np.asarray([np.nan if c[k] is None else c[k] for c in sel], np.float32)
        data[split] = part
        samples[split] = len(rows)
    shapes = {k: list(np.shape(v)) for k, v in data["train"].items() if isinstance(v, np.ndarray) and v.ndim > 1}
    return data, MMSAExport(path="", view=view_name, aligned=aligned, samples=samples, shapes=shapes, notes=notes)


def export_mmsa(store: FeatureStore | str, view_name: str, out: str | os.PathLike[str]) -> MMSAExport:
    """Write view ``view_name`` as an MMSA feature pickle at ``out`` (atomically: a reader never sees
    half a file, and a failed write leaves an existing ``out`` as it was); returns what was written.
    ``out`` is checked first, so a bad name fails before the view is read; an OS error while writing
    (a full disk, a name too long) is a ``StoreError`` naming the file."""
    target = output_file(out, "the pickle's file").absolute()
    data, summary = build_mmsa(store, view_name)
    with writing_out(target, "the pickle"), atomic_path(target) as tmp, open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=PICKLE_PROTOCOL)
    summary.path = str(target)
    return summary
