"""Clips for the model: a lazy Dataset over an aligned view, the padding collate, the view's
train-split statistics. Which clips form a batch, and the loaders, are ``training.batching``.

Zarr 3 drives I/O from a background event-loop thread, and a fork after the parent has read
anything can deadlock DataLoader workers (conventions §2.9). So the dataset holds only the store
URL, the view name, its build id and row numbers; each process opens the arrays on its first item
(refused when the view was rebuilt since: ``store.views.view_group``), and worker processes are
spawned, never forked. Each process keeps decompressed chunks in a bounded LRU
cache, so while the view fits the budget, epochs after the first read nothing from the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import zarr
from cachetools import LRUCache
from torch import Tensor
from torch.utils.data import Dataset

from store.errors import ConfigError, StoreError
from store.fs import damaged_as_store_error
from store.schema import STD_FLOOR
from store.views import AlignedView, group_array, view_group
from training.checks import no_labelled_clip
from training.config import SHORT
from training.model import ModalityInput
from training.targets import SCORE, Target


@dataclass
class ClipItem:
    """One clip as the dataset returns it: unpadded per-modality values keyed by l/a/v."""

    clip_id: str
    label: float | int  # the score, or the class index of a categorical target
    index: int  # position among the train clips (SLGM banks); -1 outside the train split
    values: dict[str, np.ndarray] = field(default_factory=dict)  # [len, D], len may be 0
    input_ids: np.ndarray | None = None  # [T] text token ids (finetune mode)
    attention_mask: np.ndarray | None = None  # [T]


@dataclass
class PaddedBatch:
    """A padded batch of clips for the model: inputs, labels y_m [B], train indices [B] and clip ids
    (not ``stages.extract.Batch``, a batch of clips to extract)."""

    inputs: dict[str, ModalityInput]
    label: Tensor
    index: Tensor
    clip_ids: list[str]

    def __len__(self) -> int:
        return len(self.clip_ids)

    def to(self, device: torch.device) -> PaddedBatch:
        """The batch on ``device``; copies from pinned memory (``pin_memory``) do not block the host."""
        return PaddedBatch(
            inputs={u: x.to(device) for u, x in self.inputs.items()},
            label=self.label.to(device, non_blocking=True),
            index=self.index.to(device, non_blocking=True),
            clip_ids=self.clip_ids,
        )

    def pin_memory(self) -> PaddedBatch:
        """Page-locked copy, so the host-to-GPU copies can overlap computation (DataLoader calls it
        when ``pin_memory=True``)."""
        return PaddedBatch(
            inputs={u: x.pin_memory() for u, x in self.inputs.items()},
            label=self.label.pin_memory(),
            index=self.index.pin_memory(),
            clip_ids=self.clip_ids,
        )


class Collator:
    """Pads each modality to the batch's longest clip and z-normalises audio/vision.

    ``stats`` maps a/v to the view's train-split (mean, std), finite (``read_stats`` refuses
    others); text is used as is. NaN/±inf features of every modality become 0 (before
    normalisation): one NaN in one clip would otherwise make every loss, and then every weight,
    NaN. A missing modality gets one zero step so every mask has at least one real step (attention
    over no keys is undefined).
    """

    def __init__(self, stats: dict[str, tuple[np.ndarray, np.ndarray]], finetune_text: bool) -> None:
        self.stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for u, (mean, std) in stats.items():
            std = np.asarray(std, dtype=np.float32)
            self.stats[u] = (np.asarray(mean, dtype=np.float32), np.where(std > STD_FLOOR, std, 1.0))
        self.finetune_text = finetune_text

    def __call__(self, items: list[ClipItem]) -> PaddedBatch:
        modalities = list(items[0].values)
        if self.finetune_text and items[0].input_ids is not None:
            modalities.append("l")
        inputs = {}
        for u in modalities:
            if u == "l" and self.finetune_text:
                inputs[u] = self._tokens(items)
            else:
                inputs[u] = self._values(u, [it.values[u] for it in items])
        classes = isinstance(items[0].label, (int, np.integer))
        return PaddedBatch(
            inputs=inputs,
            label=torch.tensor([it.label for it in items], dtype=torch.int64 if classes else torch.float32),
            index=torch.tensor([it.index for it in items], dtype=torch.int64),
            clip_ids=[it.clip_id for it in items],
        )

    def _values(self, u: str, seqs: list[np.ndarray]) -> ModalityInput:
        lengths = [max(len(s), 1) for s in seqs]
        out = np.zeros((len(seqs), max(lengths), seqs[0].shape[-1]), dtype=np.float32)
        mask = np.zeros(out.shape[:2], dtype=bool)
        for i, (s, n) in enumerate(zip(seqs, lengths)):
            mask[i, :n] = True
            if len(s) == 0:
                continue
            x = np.nan_to_num(np.asarray(s, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            if u in self.stats:  # audio/vision: z-normalise
                mean, std = self.stats[u]
                x = (x - mean) / std
            out[i, : len(s)] = x
        return ModalityInput(
            mask=torch.from_numpy(mask), lengths=torch.tensor(lengths, dtype=torch.int64), values=torch.from_numpy(out)
        )

    @staticmethod
    def _tokens(items: list[ClipItem]) -> ModalityInput:
        width = max(max(len(it.input_ids), 1) for it in items if it.input_ids is not None)
        ids = np.zeros((len(items), width), dtype=np.int64)
        mask = np.zeros((len(items), width), dtype=bool)
        for i, it in enumerate(items):
            assert it.input_ids is not None and it.attention_mask is not None
            ids[i, : len(it.input_ids)] = it.input_ids
            mask[i, : len(it.attention_mask)] = it.attention_mask.astype(bool)
            mask[i, 0] |= not mask[i].any()  # empty transcript: one step so attention is defined
        m = torch.from_numpy(mask)
        return ModalityInput(mask=m, lengths=m.sum(1), input_ids=torch.from_numpy(ids))


def _nbytes(block: np.ndarray) -> int:
    return block.nbytes


def _rows_per_shard(arr: zarr.Array) -> int:
    """Clips per zarr shard of a view array (its chunk when it is not sharded)."""
    shards = getattr(arr, "shards", None)
    return int(shards[0]) if shards else int(arr.chunks[0])


class _BlockCache:
    """Decompressed row blocks in an LRU cache bounded in bytes: one zarr chunk of rows each (one
    clip in a view), or whole shards (``whole_shards``: one read per 256 clips, for loaders that
    visit a shard's clips together, ``ShardBuckets``)."""

    def __init__(self, budget_bytes: int, whole_shards: bool = False) -> None:
        self.blocks: LRUCache[tuple[str, int], np.ndarray] = LRUCache(budget_bytes, getsizeof=_nbytes)
        self.whole_shards = whole_shards

    def row(self, name: str, arr: zarr.Array, row: int) -> np.ndarray:
        step = _rows_per_shard(arr) if self.whole_shards else int(arr.chunks[0])
        key = (name, row // step)
        block = self.blocks.get(key)
        if block is None:
            start = key[1] * step
            with damaged_as_store_error(name, "aligned view array"):
                block = np.asarray(arr[start : start + step])
            with suppress(ValueError):  # a block larger than the whole budget is not kept
                self.blocks[key] = block
        return block[row - key[1] * step]


class ViewDataset(Dataset[ClipItem]):
    """The clips of one split of an aligned view, read lazily (store modality names in ``modalities``).

    ``tokens``: return text token ids instead of cached text states (finetune mode). ``target``:
    what the labels are; a clip without a label for it (``Target.labelled``) is left out of the
    split (``unlabelled`` counts them), as no loss or metric is defined for it, and a split left
    with no clip is refused. None: every clip, with its score or NaN (new clips to predict have
    no label). ``whole_shards``: read and cache whole view shards
    (256 clips a read) instead of one clip at a time, for ``ShardBuckets`` order. Either way the
    items are the same.
    """

    def __init__(
        self, view: AlignedView, split: str, modalities: Sequence[str], *, tokens: bool, cache_mb: int = 1024,
        target: Target | None = None, whole_shards: bool = False,
    ) -> None:
        table = view.clips.sort_by("row")
        clips = table.to_pydict()
        labels = (target or SCORE).labels(table)
        in_split = [i for i, s in enumerate(clips["split"]) if s == split]
        keep = np.ones(len(labels), dtype=bool) if target is None else target.labelled(labels)
        picked = [i for i in in_split if keep[i]]
        self.unlabelled = len(in_split) - len(picked)
        if not in_split:
            raise ConfigError(f"view {view.name!r} has no clips in split {split!r} (its splits: "
                              f"{', '.join(sorted(set(clips['split'])))})")
        if target is not None and not picked:
            raise no_labelled_clip(view.name, split, len(in_split), target)
        self.url = view.fs.url
        self.view_name = view.name
        self.build_id = view.build_id
        self.split = split
        self.modalities = list(modalities)
        self.tokens = tokens and "text" in self.modalities
        self.rows = [int(clips["row"][i]) for i in picked]
        self.clip_ids = [str(clips["clip_id"][i]) for i in picked]
        self.labels = labels[picked]
        self.lengths = self._clip_lengths(view)
        self.whole_shards = whole_shards
        #: one shard of every array (whole-shard reads); the cache holds at least that much
        self.shard_bytes = self._shard_bytes(view, self._names()) if whole_shards else 0
        self.cache_bytes = max(cache_mb * 2**20, self.shard_bytes)
        self._arrays: dict[str, zarr.Array] | None = None
        self._cache = _BlockCache(self.cache_bytes, whole_shards)

    def __len__(self) -> int:
        return len(self.rows)

    def _clip_lengths(self, view: AlignedView) -> np.ndarray:
        """Steps of each clip's longest sequence (word pieces for text in token mode); the batch's
        longest clip sets how many padded steps every clip of it costs."""
        group = view.group()
        per_modality = []
        for m in self.modalities:
            if m == "text" and self.tokens:
                n = np.asarray(group_array(group, "text_tokens/attention_mask")[...]).astype(bool).sum(axis=1)
            else:
                lengths = np.asarray(group_array(group, f"{m}/lengths")[...])
                n = lengths * np.asarray(group_array(group, f"{m}/present")[...]).astype(bool)
            per_modality.append(np.asarray(n, dtype=np.int64)[self.rows])
        return np.max(per_modality, axis=0)

    def __getstate__(self) -> dict[str, Any]:
        """Workers get the recipe, not open handles or cached blocks."""
        state = dict(self.__dict__)
        state["_arrays"] = None
        state["_cache"] = _BlockCache(self.cache_bytes, self.whole_shards)
        return state

    def _names(self) -> list[str]:
        names = []
        for m in self.modalities:
            if m == "text" and self.tokens:
                names += ["text_tokens/input_ids", "text_tokens/attention_mask"]
            else:
                names += [f"{m}/values", f"{m}/lengths", f"{m}/present"]
        return names

    def _open(self) -> dict[str, zarr.Array]:
        if self._arrays is None:
            group = view_group(self.url, self.view_name, self.build_id)  # the build this dataset was made from
            self._arrays = {n: group_array(group, n) for n in self._names()}
        return self._arrays

    @staticmethod
    def _shard_bytes(view: AlignedView, names: list[str]) -> int:
        """Decompressed bytes of one shard of every array read: what a whole-shard reader caches per shard."""
        group = view.group()
        arrays = [group_array(group, n) for n in names]
        return sum(_rows_per_shard(a) * int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize for a in arrays)

    def padded_nbytes(self) -> int:
        """Bytes of the whole split collated (``Collator``) at the view's full length: float32 values
        or int64 token ids, plus a bool mask, per step; what preloading it takes on a device."""
        total = 0
        for name, arr in self._open().items():
            if name.endswith("/values") or name == "text_tokens/input_ids":
                per_step = (4 if name.endswith("/values") else 8) * int(np.prod(arr.shape[2:], dtype=np.int64)) + 1
                total += len(self) * int(arr.shape[1]) * per_step
        return total

    def _read(self, name: str, row: int) -> np.ndarray:
        return self._cache.row(name, self._open()[name], row)

    def __getitem__(self, i: int) -> ClipItem:
        row = self.rows[i]
        label = self.labels[i]
        item = ClipItem(
            clip_id=self.clip_ids[i], label=int(label) if self.labels.dtype.kind == "i" else float(label),
            index=i if self.split == "train" else -1,
        )
        for m in self.modalities:
            if m == "text" and self.tokens:
                mask = self._read("text_tokens/attention_mask", row)
                n = int(np.flatnonzero(mask)[-1]) + 1 if mask.any() else 0
                item.input_ids = self._read("text_tokens/input_ids", row)[:n].astype(np.int64)
                item.attention_mask = mask[:n]
                continue
            values = self._read(f"{m}/values", row)
            n = int(self._read(f"{m}/lengths", row)) if bool(self._read(f"{m}/present", row)) else 0
            item.values[SHORT[m]] = values[:n]
        return item


def read_stats(view: AlignedView, modalities: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The view's train-split (mean, std) for audio/vision, keyed by short name; empty when the
    view's values are already standardised (``normalized`` attr), so they are not scaled twice.
    A NaN/inf statistic is refused (``StoreError``): it would turn every value of its dimension, and
    from there every loss, into NaN, and alignment never writes one (a damaged or hand-made view)."""
    if view.attrs.get("normalized"):
        return {}
    group = view.group()
    stats = {}
    for m in modalities:
        if m not in ("audio", "vision"):
            continue
        mean, std = (np.asarray(group_array(group, f"{m}/{k}")[...]) for k in ("mean", "std"))
        for k, values in (("mean", mean), ("std", std)):
            bad = int(values.size - np.count_nonzero(np.isfinite(values)))
            if bad:
                raise StoreError(f"aligned view {view.name!r}: {m}/{k} holds {bad} NaN/inf value(s) of {values.size}; "
                                 "a view's statistics must be finite (rebuild it: emoflow align --force)")
        stats[SHORT[m]] = (mean, std)
    return stats
