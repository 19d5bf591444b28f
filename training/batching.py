"""Which clips go into each batch, and how batches reach the model: length-bucketed or shard-ordered
training batches, preloaded splits on a GPU, and the DataLoaders that run them (``make_loader``).
Padding is the main waste of these models (every padded step runs through the LSTMs, the attention
and, in finetune mode, the whole text encoder), so training batches are length-bucketed by default
(``LengthBuckets``, measured 1.5x faster per epoch than uniform shuffling on a MOSI-sized view:
docs/performance.md)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler

from store.runtime import resolve_device
from store.views import VIEW_SHARD
from training.config import TrainConfig
from training.data import Collator, PaddedBatch, ViewDataset
from training.model import ModalityInput


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
