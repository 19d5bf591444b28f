"""Batches for the model: a lazy Dataset over an aligned view, padding collate, loaders.

Zarr 3 drives I/O from a background event-loop thread, and a fork after the parent has read
anything can deadlock DataLoader workers (conventions §2.9). So the dataset holds only the store
URL, the view name, its build id and row numbers; each process opens the arrays on its first item
(refused when the view was rebuilt since: ``store.views.view_group``), and worker processes are
spawned, never forked. Each process keeps decompressed chunks in a bounded LRU
cache, so while the view fits the budget, epochs after the first read nothing from the store.

Batching: padding is the main waste of these models (every padded step runs through the LSTMs,
the attention and, in finetune mode, the whole text encoder), so training batches are by default
length-bucketed (``LengthBuckets``), which measured 1.5x faster per epoch than uniform shuffling
on a MOSI-sized view (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import zarr
from cachetools import LRUCache
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from store.errors import ConfigError, StoreError
from store.fs import damaged_as_store_error
from store.runtime import resolve_device
from store.schema import STD_FLOOR
from store.views import VIEW_SHARD, AlignedView, group_array, view_group
from training.config import SHORT, TrainConfig
from training.model import ModalityInput, check_text_model
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


def no_labelled_clip(view: str, split: str, n: int, target: Target) -> ConfigError:
    """The refusal of a split whose ``n`` clips have no label for ``target``."""
    hint = "" if target.categorical else "; a view with class labels only trains with --target sentiment|emotion"
    return ConfigError(f"view {view!r}: none of the {n} {split} clips has a {target.name} label (column "
                       f"{target.column!r}){hint}")


def view_dims(view: AlignedView) -> dict[str, int]:
    """Feature size D_m of each modality of the view (store names), from the arrays themselves."""
    group = view.group()
    return {m: int(group_array(group, f"{m}/values").shape[-1]) for m in view.modalities}


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


class LengthBuckets(Sampler[list[int]]):
    """Training batches of clips with similar lengths, in random order.

    Each epoch: shuffle all clips, cut them into pools of ``pool × batch_size``, sort each pool by
    length, cut it into batches, shuffle the batches. Batches stay random in content and order (a
    pool is a random 1/N of the data) while padding shrinks: on MOSI word pieces (batch 16) the steps
    computed per real token fall from 2.38 (uniform shuffle) to 1.08. Seeded by (seed, epoch), so a run
    is reproducible and every epoch differs.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, pool: int = 50) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.pool = pool
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        size = self.batch_size * self.pool
        batches: list[list[int]] = []
        for lo in range(0, len(order), size):
            batches += _length_sorted_batches(order[lo : lo + size], self.lengths, self.batch_size)
        for i in rng.permutation(len(batches)):
            yield batches[i]


def _length_sorted_batches(pool: np.ndarray, lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """``pool`` (clip indices, in random order) sorted by length, stably, and cut into batches."""
    pool = pool[np.argsort(lengths[pool], kind="stable")]
    return [pool[i : i + batch_size].tolist() for i in range(0, len(pool), batch_size)]


class ShardBuckets(Sampler[list[int]]):
    """Length-bucketed training batches drawn window by window over the view's shards, for views
    larger than the loader's cache.

    Each epoch: shuffle the shards (``VIEW_SHARD`` clips of view rows each), take them ``window`` at
    a time, and within a window do what ``LengthBuckets`` does with one pool (shuffle, sort by length,
    cut batches, shuffle the batches). A shard is then read once per epoch, as a whole, and at most
    ``window`` shards per array need to stay cached; batches stay random within a window of
    ``window × 256`` clips. Seeded by (seed, epoch).
    """

    def __init__(self, rows: Sequence[int], lengths: np.ndarray, batch_size: int, seed: int, window: int = 8,
                 shard_rows: int = VIEW_SHARD) -> None:
        self.shards = np.asarray(rows, np.int64) // shard_rows
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.window = window
        self.epoch = 0

    def _windows(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The epoch's windows: the clip indices of each ``window`` shards, in a shuffled shard order."""
        order = rng.permutation(np.unique(self.shards))
        return [np.flatnonzero(np.isin(self.shards, order[lo : lo + self.window]))
                for lo in range(0, len(order), self.window)]

    def __len__(self) -> int:
        """Batches of the coming epoch (windows hold different clip counts, so it depends on its order)."""
        windows = self._windows(np.random.default_rng([self.seed, self.epoch]))
        return sum(-(-len(items) // self.batch_size) for items in windows)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for items in self._windows(rng):  # the windows __len__ counted for this epoch
            batches = _length_sorted_batches(rng.permutation(items), self.lengths, self.batch_size)
            for i in rng.permutation(len(batches)):
                yield batches[i]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """Evaluation batches in length order: least padding, and order does not change metrics."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


class PreloadedBatches:
    """A split's batches gathered from tensors held on the training device.

    The whole split is collated once (``Collator``, padded to its longest clip) and moved to
    ``device``; each batch of ``batches`` (a batch sampler, iterated once per epoch like a
    DataLoader's) is then one ``index_select`` per tensor there, trimmed to the batch's longest
    clip. The batches equal the DataLoader's element for element, but a GPU step no longer waits
    for Python collation, pinning and a host-to-device copy per batch (the per-step host work
    that left the GPU idle, docs/performance.md). Lengths stay on the CPU, where packing wants them.
    """

    def __init__(self, dataset: ViewDataset, collator: Collator, batches: Sampler[list[int]] | list[list[int]],
                 device: torch.device, generator: torch.Generator | None = None) -> None:
        whole = collator([dataset[i] for i in range(len(dataset))])
        self.batches = batches
        self.device = device
        self.generator = generator
        self.clip_ids = whole.clip_ids
        #: per modality, each clip's padded width in a collated batch (its last real step + 1)
        self.widths = {u: (x.mask.shape[1] - x.mask.flip(1).int().argmax(1)).numpy() for u, x in whole.inputs.items()}
        self.whole = whole.to(device)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]  # every batch sampler here has a length

    def __iter__(self) -> Iterator[PaddedBatch]:
        # a DataLoader draws its workers' base seed here, from ``generator`` (None: torch's global
        # generator, which dropout also draws from): drawn alike, a run follows the same random stream
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        batches = [list(b) for b in self.batches]
        order = torch.tensor([i for b in batches for i in b], dtype=torch.int64)
        on_device = order.to(self.device)  # one copy per epoch; each batch's rows are a slice of it
        start = 0
        for rows in batches:
            stop = start + len(rows)
            yield self._gather(rows, order[start:stop], on_device[start:stop])
            start = stop

    def _gather(self, rows: list[int], idx_cpu: Tensor, idx: Tensor) -> PaddedBatch:
        inputs = {}
        for u, x in self.whole.inputs.items():
            w = int(self.widths[u][rows].max())
            inputs[u] = ModalityInput(
                mask=x.mask[:, :w].index_select(0, idx),
                lengths=x.lengths.index_select(0, idx_cpu),
                values=None if x.values is None else x.values[:, :w].index_select(0, idx),
                input_ids=None if x.input_ids is None else x.input_ids[:, :w].index_select(0, idx),
            )
        return PaddedBatch(inputs=inputs, label=self.whole.label.index_select(0, idx),
                           index=self.whole.index.index_select(0, idx), clip_ids=[self.clip_ids[i] for i in rows])


def _preload(dataset: ViewDataset, config: TrainConfig, device: torch.device) -> bool:
    """Whether ``config.preload`` holds this split on ``device`` (None: on CUDA when it takes at most
    a quarter of the free memory)."""
    if config.preload is not None:
        return config.preload
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return dataset.padded_nbytes() <= free // 4


def make_loader(dataset: ViewDataset, collator: Collator, config: TrainConfig, *, train: bool,
                device: torch.device | None = None) -> DataLoader[Any] | PreloadedBatches:
    """The loader of one split for a model on ``device`` (default: the config's): ``config.batching`` =
    ``bucket`` (length-bucketed training batches, length-sorted evaluation batches), ``shards``
    (length-bucketed within windows of view shards, ``ShardBuckets``; evaluation in view order) or
    ``shuffle`` (uniform seeded shuffle; evaluation in view order). Preloaded (``PreloadedBatches``)
    when ``config.preload`` says so, else a DataLoader whose workers (if any) are spawned and
    persistent. Either way the same batches in the same order."""
    device = device or resolve_device(config.device)
    batches: Sampler[list[int]] | list[list[int]]
    generator = None
    if config.batching == "bucket":
        batches = (LengthBuckets(dataset.lengths, config.batch_size, config.seed, config.bucket_pool)
                   if train else sorted_batches(dataset.lengths, config.batch_size))
    elif config.batching == "shards" and train:  # a window is as many shards as the cache holds, at most shard_window
        window = max(1, min(config.shard_window, dataset.cache_bytes // max(1, dataset.shard_bytes)))
        batches = ShardBuckets(dataset.rows, dataset.lengths, config.batch_size, config.seed, window)
    elif config.batching == "shuffle" and train:  # what DataLoader(shuffle=True, generator=...) builds
        generator = torch.Generator().manual_seed(config.seed)  # also draws the loader's base seed, as before
        batches = BatchSampler(RandomSampler(dataset, generator=generator), config.batch_size, drop_last=False)
    else:
        batches = [list(range(i, min(i + config.batch_size, len(dataset))))
                   for i in range(0, len(dataset), config.batch_size)]
    if _preload(dataset, config, device):
        return PreloadedBatches(dataset, collator, batches, device, generator)
    extra: dict[str, Any] = {"pin_memory": device.type == "cuda"}
    if config.num_workers > 0:
        extra |= {"multiprocessing_context": "spawn", "persistent_workers": True}
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collator, num_workers=config.num_workers,
                      generator=generator, **extra)
