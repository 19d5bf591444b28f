"""Collate (padding, normalisation) and the lazy Dataset over an aligned view."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from store.errors import ConfigError, StoreError
from store.views import open_view
from tests.helpers.training import DIMS, rewrite_view, tiny_config, write_tiny_view
from training.batching import LengthBuckets, PreloadedBatches, ShardBuckets, make_loader
from training.checks import check_view
from training.data import ClipItem, Collator, PaddedBatch, ViewDataset, _BlockCache, read_stats


def _item(i: int, lens: dict[str, int], ids: list[int] | None = None) -> ClipItem:
    values = {u: np.full((n, 2), float(i + 1), dtype=np.float32) for u, n in lens.items()}
    mask = None if ids is None else np.ones(len(ids), dtype=np.int32)
    return ClipItem(
        clip_id=f"c{i}", label=float(i), index=i, values=values,
        input_ids=None if ids is None else np.array(ids), attention_mask=mask,
    )


def test_collate_pads_to_batch_max_and_normalises_audio_vision_only() -> None:
    stats = {"a": (np.array([1.0, 0.0]), np.array([2.0, 0.0]))}  # std 0 is left unscaled
    batch = Collator(stats, finetune_text=False)([_item(0, {"l": 3, "a": 1}), _item(1, {"l": 1, "a": 4})])
    t, a = batch.inputs["l"], batch.inputs["a"]
    assert t.values is not None and a.values is not None
    assert t.values.shape == (2, 3, 2) and a.values.shape == (2, 4, 2)
    assert t.lengths.tolist() == [3, 1] and a.lengths.tolist() == [1, 4]
    assert t.mask.tolist() == [[True, True, True], [True, False, False]]
    assert torch.equal(t.values[0], torch.ones(3, 2))  # text as is
    assert a.values[1, 0].tolist() == [(2.0 - 1.0) / 2.0, 2.0]  # (x - mean) / std, std 0 -> 1
    assert a.values[0, 1:].abs().sum() == 0  # padding stays 0
    assert batch.label.tolist() == [0.0, 1.0] and batch.index.tolist() == [0, 1] and batch.clip_ids == ["c0", "c1"]


def test_collate_gives_missing_modalities_one_zero_step_and_zeroes_nan() -> None:
    bad = _item(0, {"a": 2})
    bad.values["a"][0, 0] = np.nan
    bad.values["a"][1, 1] = -np.inf
    batch = Collator({"a": (np.zeros(2), np.ones(2))}, finetune_text=False)([bad, _item(1, {"a": 0})])
    a = batch.inputs["a"]
    assert a.values is not None
    assert a.lengths.tolist() == [2, 1] and a.mask.tolist() == [[True, True], [True, False]]
    assert a.values[0].tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert a.values[1].abs().sum() == 0


def test_collate_tokens_for_finetuning() -> None:
    items = [_item(0, {}, ids=[101, 7, 102]), _item(1, {}, ids=[101, 102]), _item(2, {}, ids=[])]
    t = Collator({}, finetune_text=True)(items).inputs["l"]
    assert t.input_ids is not None and t.values is None
    assert t.input_ids.tolist() == [[101, 7, 102], [101, 102, 0], [0, 0, 0]]
    assert t.mask.tolist() == [[True, True, True], [True, True, False], [True, False, False]]
    assert t.lengths.tolist() == [3, 2, 1]


def test_view_dataset_reads_the_right_rows_lazily(tmp_path: Path) -> None:
    arrays = write_tiny_view(tmp_path)
    view = open_view(tmp_path, "tiny")
    clips = view.clips.to_pydict()
    train = ViewDataset(view, "train", ["text", "audio", "vision"], tokens=False, cache_mb=0)
    assert len(train) == 24 and train._arrays is None  # nothing opened until the first item
    for i in range(len(train)):
        item = train[i]
        row = clips["clip_id"].index(item.clip_id)
        assert clips["split"][row] == "train" and item.index == i
        assert item.label == pytest.approx(clips["label"][row])
        n = int(arrays["audio/lengths"][row])
        assert np.array_equal(item.values["a"], arrays["audio/values"][row, :n])
        if row == 3:  # vision absent for this clip
            assert item.values["v"].shape == (0, DIMS["vision"])
    state = pickle.loads(pickle.dumps(train))  # what a spawned worker receives
    assert state._arrays is None and state._cache.blocks.currsize == 0
    test = ViewDataset(view, "test", ["text"], tokens=True)
    item = test[0]
    row = clips["clip_id"].index(item.clip_id)
    n = int(arrays["text_tokens/attention_mask"][row].sum())
    assert item.index == -1 and item.values == {}
    assert item.input_ids is not None and item.input_ids.tolist() == arrays["text_tokens/input_ids"][row, :n].tolist()


def test_loader_with_spawned_worker(tmp_path: Path) -> None:
    write_tiny_view(tmp_path)
    view = open_view(tmp_path, "tiny")
    config = tiny_config(num_workers=1, batch_size=8, batching="shuffle")
    dataset = ViewDataset(view, "valid", config.modalities, tokens=False)
    batches = list(make_loader(dataset, Collator(read_stats(view, config.modalities), False), config, train=False))
    assert [len(b) for b in batches] == [8]
    assert batches[0].clip_ids == dataset.clip_ids


def test_view_dataset_lengths_are_the_longest_present_sequence_or_token_count(tmp_path: Path) -> None:
    arrays = write_tiny_view(tmp_path)
    view = open_view(tmp_path, "tiny")
    modalities = ["text", "audio", "vision"]
    train = ViewDataset(view, "train", modalities, tokens=False)
    expected = [
        max(int(arrays[f"{m}/lengths"][r]) * bool(arrays[f"{m}/present"][r]) for m in modalities) for r in train.rows
    ]
    assert train.lengths.tolist() == expected
    tokens = ViewDataset(view, "train", ["text"], tokens=True)
    assert tokens.lengths.tolist() == [int(arrays["text_tokens/attention_mask"][r].sum()) for r in train.rows]


def _padded_steps(batches: list[list[int]], lengths: np.ndarray) -> int:
    return sum(len(b) * int(lengths[b].max()) for b in batches)


def test_length_buckets_cover_every_clip_once_cut_padding_and_reshuffle_per_epoch() -> None:
    lengths = np.random.default_rng(0).integers(1, 60, size=1000)
    sampler = LengthBuckets(lengths, batch_size=16, seed=7, pool=10)
    first, second = list(sampler), list(sampler)
    for epoch in (first, second):
        assert len(epoch) == len(sampler) == 63
        assert sorted(i for b in epoch for i in b) == list(range(1000))
        assert all(1 <= len(b) <= 16 for b in epoch)
    assert first != second  # a new order every epoch ...
    assert list(LengthBuckets(lengths, 16, seed=7, pool=10)) == first  # ... reproducible from the seed
    uniform = [list(range(i, min(i + 16, 1000))) for i in range(0, 1000, 16)]  # lengths are i.i.d.
    assert _padded_steps(first, lengths) < 0.65 * _padded_steps(uniform, lengths)
    longest = [int(lengths[b].max()) for b in first]
    assert longest != sorted(longest)  # batches come in random order, not short-to-long


def test_bucket_loader_evaluates_in_length_order_with_every_clip(tmp_path: Path) -> None:
    write_tiny_view(tmp_path)
    view = open_view(tmp_path, "tiny")
    config = tiny_config(batch_size=3)
    assert config.batching == "bucket"
    dataset = ViewDataset(view, "train", config.modalities, tokens=False)
    collator = Collator(read_stats(view, config.modalities), False)
    batches = list(make_loader(dataset, collator, config, train=False))
    ids = [c for b in batches for c in b.clip_ids]
    assert sorted(ids) == sorted(dataset.clip_ids)
    order = [dataset.clip_ids.index(c) for c in ids]
    assert dataset.lengths[order].tolist() == sorted(dataset.lengths.tolist())
    train_ids = [c for b in make_loader(dataset, collator, config, train=True) for c in b.clip_ids]
    assert sorted(train_ids) == sorted(dataset.clip_ids)


def test_check_view_refuses_mismatches_with_a_clear_message(tmp_path: Path) -> None:
    write_tiny_view(tmp_path)
    view = open_view(tmp_path, "tiny")
    assert check_view(view, tiny_config()) == DIMS
    cases = {
        "fingerprint is 'fp-tiny'": tiny_config(view={"fingerprint": "other"}),
        "vision has dim 5, config expects 1280": tiny_config(view={"dims": {"vision": 1280}}),
        "modalities are ['audio', 'text', 'vision']": tiny_config(view={"modalities": ["text", "audio"]}),
        "names no text_model_path": tiny_config(text_mode="finetune"),
    }
    for message, config in cases.items():
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            check_view(view, config)
    write_tiny_view(tmp_path, "other", fingerprint="x")
    with pytest.raises(ConfigError, match="no clips in split 'nope'"):
        ViewDataset(open_view(tmp_path, "other"), "nope", ["text"], tokens=False)


class _Chunked:
    """A stand-in for a zarr array that counts the chunk reads."""

    def __init__(self, rows: int, chunk: int) -> None:
        self.data = np.arange(rows * 4, dtype=np.float64).reshape(rows, 4)  # 32 bytes a row
        self.chunks = (chunk, 4)
        self.reads = 0

    def __getitem__(self, item: slice) -> np.ndarray:
        self.reads += 1
        return self.data[item]


def test_block_cache_keeps_recent_blocks_within_its_byte_budget() -> None:
    arr = _Chunked(rows=8, chunk=2)  # 4 blocks of 64 bytes
    cache = _BlockCache(budget_bytes=128)  # room for two
    for row in (0, 1, 2, 3, 0):
        np.testing.assert_array_equal(cache.row("x", arr, row), arr.data[row])
    assert arr.reads == 2 and cache.blocks.currsize == 128
    cache.row("x", arr, 4)  # evicts the least recently used block, rows 2-3
    cache.row("x", arr, 1)
    assert arr.reads == 3
    cache.row("x", arr, 2)
    assert arr.reads == 4
    np.testing.assert_array_equal(_BlockCache(budget_bytes=0).row("x", arr, 5), arr.data[5])  # too big: not kept


def test_shard_buckets_cover_every_clip_once_and_keep_each_window_within_its_shards() -> None:
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(5000, size=3000, replace=False))  # a split's view rows, other splits between
    lengths = rng.integers(1, 60, size=3000)
    sampler = ShardBuckets(rows, lengths, batch_size=16, seed=3, window=2, shard_rows=256)
    sizes = [len(sampler)]
    first = list(sampler)
    sizes.append(len(sampler))
    second = list(sampler)
    for epoch, size in zip((first, second), sizes):
        assert len(epoch) == size  # the loop's accumulation groups rely on len() before each epoch
        assert sorted(i for b in epoch for i in b) == list(range(3000))
    assert first != second and list(ShardBuckets(rows, lengths, 16, seed=3, window=2, shard_rows=256)) == first
    shards = rows // 256
    windows: list[set[int]] = []  # runs of consecutive batches that touch at most 2 shards together
    for batch in first:
        these = set(shards[batch].tolist())
        if windows and len(windows[-1] | these) <= 2:
            windows[-1] |= these
        else:
            windows.append(these)
    # every shard's clips come in one run: a shard is read once per epoch, 2 shards at a time
    assert sum(len(w) for w in windows) == len(np.unique(shards))
    assert _padded_steps(first, lengths) < _padded_steps([list(range(i, min(i + 16, 3000)))
                                                          for i in range(0, 3000, 16)], lengths)


def test_whole_shard_reads_give_the_same_items_as_clip_reads(tmp_path: Path) -> None:
    write_tiny_view(tmp_path)
    view = open_view(tmp_path, "tiny")
    clip_reads = ViewDataset(view, "train", ["text", "audio", "vision"], tokens=False)
    shard_reads = ViewDataset(view, "train", ["text", "audio", "vision"], tokens=False, whole_shards=True)
    for i in range(len(clip_reads)):
        a, b = clip_reads[i], shard_reads[i]
        assert a.clip_id == b.clip_id and a.label == b.label
        assert all(np.array_equal(a.values[u], b.values[u]) for u in a.values)
    assert len(shard_reads._cache.blocks) == 3 * 3  # one block per array: the tiny view is one shard
    tight = ViewDataset(view, "train", ["audio"], tokens=False, cache_mb=0, whole_shards=True)
    assert tight.cache_bytes == tight.shard_bytes > 0  # a whole-shard reader always holds one shard of each array
    config = tiny_config(batching="shards", shard_window=1)
    collator = Collator(read_stats(view, ["text", "audio", "vision"]), finetune_text=False)
    batches = list(make_loader(shard_reads, collator, config, train=True))
    assert sorted(c for b in batches for c in b.clip_ids) == sorted(clip_reads.clip_ids)
    evaluation = list(make_loader(shard_reads, collator, config, train=False))
    assert [c for b in evaluation for c in b.clip_ids] == shard_reads.clip_ids  # view order


def test_collate_zeroes_non_finite_text_values_as_it_does_audio_and_vision() -> None:
    bad = _item(0, {"l": 2, "a": 2})
    bad.values["l"][0, 1] = np.nan  # one bad word vector made every loss, then every weight, NaN
    bad.values["l"][1, 0] = np.inf
    batch = Collator({}, finetune_text=False)([bad])
    t = batch.inputs["l"].values
    assert t is not None and t[0].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_read_stats_refuses_a_non_finite_view_statistic(tmp_path: Path) -> None:
    arrays = write_tiny_view(tmp_path)
    arrays["audio/mean"][2] = np.inf
    rewrite_view(tmp_path, arrays)
    with pytest.raises(StoreError, match=r"aligned view 'tiny': audio/mean holds 1 NaN/inf value\(s\) of 4"):
        read_stats(open_view(tmp_path, "tiny"), ["text", "audio", "vision"])
    assert set(read_stats(open_view(tmp_path, "tiny"), ["text", "vision"])) == {"v"}  # audio unused: not read


def _batch_fields(batch: PaddedBatch) -> dict[str, torch.Tensor | list[str]]:
    fields: dict[str, torch.Tensor | list[str]] = {"label": batch.label, "index": batch.index, "ids": batch.clip_ids}
    for u, x in batch.inputs.items():
        fields.update({f"{u}.mask": x.mask, f"{u}.lengths": x.lengths})
        fields.update({f"{u}.{k}": v for k, v in (("values", x.values), ("input_ids", x.input_ids)) if v is not None})
    return fields


@pytest.mark.parametrize("batching", ["bucket", "shuffle", "shards"])
@pytest.mark.parametrize("tokens", [False, True])
def test_preloaded_batches_equal_the_data_loaders_element_for_element(
    tmp_path: Path, batching: str, tokens: bool
) -> None:
    write_tiny_view(tmp_path)
    view = open_view(tmp_path, "tiny")
    collator = Collator(read_stats(view, ["text", "audio", "vision"]), tokens)
    for train in (True, False):
        streams = {}
        for preload in (False, True):
            config = tiny_config(batch_size=5, batching=batching, preload=preload)
            dataset = ViewDataset(view, "train", config.modalities, tokens=tokens, whole_shards=batching == "shards")
            loader = make_loader(dataset, collator, config, train=train)
            assert isinstance(loader, PreloadedBatches) == preload
            torch.manual_seed(3)  # what the loaders draw from torch's generator must match too
            streams[preload] = ([_batch_fields(b) for epoch in range(2) for b in loader], torch.rand(1))
        (off, after_off), (on, after_on) = streams[False], streams[True]
        assert len(on) == len(off) == 2 * 5
        for a, b in zip(off, on):
            assert a.keys() == b.keys()
            for k in a:
                same = a[k] == b[k] if isinstance(a[k], list) else torch.equal(a[k], b[k])  # type: ignore[arg-type]
                assert same and (isinstance(a[k], list) or a[k].dtype == b[k].dtype), k  # type: ignore[union-attr]
        assert torch.equal(after_off, after_on)


def test_preload_auto_stays_off_on_the_cpu_and_sizes_a_split_before_reading_it(tmp_path: Path) -> None:
    write_tiny_view(tmp_path)
    view = open_view(tmp_path, "tiny")
    config = tiny_config()
    assert config.preload is None
    dataset = ViewDataset(view, "train", config.modalities, tokens=False)
    loader = make_loader(dataset, Collator(read_stats(view, config.modalities), False), config, train=True)
    assert not isinstance(loader, PreloadedBatches)
    steps = 7  # the tiny view's length: values float32 + a bool mask per step
    assert dataset.padded_nbytes() == 24 * steps * sum(4 * d + 1 for d in DIMS.values())
    assert dataset._cache.blocks.currsize == 0
