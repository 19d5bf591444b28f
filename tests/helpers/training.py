"""The tiny synthetic training data the training tests share.

Every clip has a latent sentiment s in [-3, 3] = its label; each modality carries s in its
first feature dimension (plus noise), so a model can learn it in a few epochs on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset

from store.views import open_view, write_view
from training.config import TrainConfig
from training.data import ClipItem

DIMS = {"text": 6, "audio": 4, "vision": 5}
SHORT_DIMS = {"l": 6, "a": 4, "v": 5}
VOCAB = 40


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models train ~10x faster on one intra-op thread, and far faster still when other
    processes load the 2 cores (OpenMP threads then spin against each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tiny_config(**overrides: Any) -> TrainConfig:
    """A model small enough to train in well under a second per epoch."""
    base: dict[str, Any] = dict(
        k=8,
        heads=2,
        lgt_layers=1,
        glimpses=2,
        d_f=3,
        head_dim_m=8,
        head_dim_l=4,
        head_dim_a=4,
        head_dim_v=4,
        text_mode="frozen",
        batch_size=8,
        accumulate=2,
        max_epochs=3,
        patience=3,
        seed=0,
        device="cpu",
        lr_other=1e-2,
        lr_av=1e-2,
    )
    base.update(overrides)
    return TrainConfig(**base)


def _sequence(rng: np.random.Generator, s: float, length: int, dim: int, offset: float) -> np.ndarray:
    x = rng.normal(0.0, 0.3, size=(length, dim)).astype(np.float32)
    x[:, 0] += s / 3.0
    return x + offset


def synthetic_items(n: int, seed: int, train: bool = True) -> list[ClipItem]:
    """Clips with variable lengths; audio/vision are offset so z-normalisation matters."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        s = float(rng.uniform(-3, 3))
        values = {
            u: _sequence(rng, s, int(rng.integers(2, 7)), SHORT_DIMS[u], offset)
            for u, offset in (("l", 0.0), ("a", 5.0), ("v", -2.0))
        }
        items.append(ClipItem(clip_id=f"c{seed}-{i}", label=s, index=i if train else -1, values=values))
    return items


class ItemDataset(Dataset[ClipItem]):
    """An in-memory list of clips (the loop does not care where items come from)."""

    def __init__(self, items: list[ClipItem]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> ClipItem:
        return self.items[i]


def write_tiny_view(
    root: Path,
    name: str = "tiny",
    *,
    splits: dict[str, int] | None = None,
    seed: int = 0,
    text_model_path: str | None = None,
    fingerprint: str = "fp-tiny",
    without_class: int = 0,
) -> dict[str, np.ndarray]:
    """Write an aligned view in the contract of docs/architecture.md; returns its arrays. The clips
    carry ``label_sentiment`` (``sentiment_class``) except the first ``without_class`` ones."""
    splits = splits or {"train": 24, "valid": 8, "test": 8}
    rng = np.random.default_rng(seed)
    n = sum(splits.values())
    length, width = 7, 9
    labels = rng.uniform(-3, 3, size=n).round(1)
    labels[:2] = 0.0  # zero labels exist in real data (excluded from SLGM centres)
    arrays: dict[str, np.ndarray] = {}
    for m, offset in (("text", 0.0), ("audio", 5.0), ("vision", -2.0)):
        lengths = rng.integers(1, length + 1, size=n).astype(np.int32)
        present = np.ones(n, dtype=bool)
        values = np.zeros((n, length, DIMS[m]), dtype=np.float32)
        for i in range(n):
            values[i, : lengths[i]] = _sequence(rng, labels[i], int(lengths[i]), DIMS[m], offset)
        if m == "vision":
            present[3] = False  # a clip without video
            lengths[3] = 0
            values[3] = 0.0
        real = values[np.arange(length)[None, :] < lengths[:, None]]
        arrays.update(
            {
                f"{m}/values": values,
                f"{m}/lengths": lengths,
                f"{m}/present": present,
                f"{m}/mean": real.mean(0).astype(np.float32),
                f"{m}/std": real.std(0).astype(np.float32),
            }
        )
    token_len = rng.integers(2, width + 1, size=n)
    ids = rng.integers(1, VOCAB, size=(n, width)).astype(np.int32)
    mask = (np.arange(width)[None, :] < token_len[:, None]).astype(np.int32)
    arrays["text_tokens/input_ids"] = ids * mask
    arrays["text_tokens/attention_mask"] = mask
    split_col = [str(s) for s in rng.permutation([s for s, k in splits.items() for _ in range(k)])]
    clips = pa.table(
        {
            "row": np.arange(n, dtype=np.int64),
            "clip_id": [f"clip{i:03d}" for i in range(n)],
            "label": labels.astype(np.float64),
            "split": split_col,
            "label_sentiment": [None if i < without_class else sentiment_class(x) for i, x in enumerate(labels)],
        }
    )
    attrs: dict[str, Any] = {
        "fingerprint": fingerprint,
        "grid": {"kind": "word"},
        "modalities": {m: {"dim": d} for m, d in DIMS.items()},
    }
    if text_model_path is not None:
        attrs["text_model_path"] = text_model_path
    write_view(root, name, arrays, clips, attrs)
    return arrays


def sentiment_class(score: float) -> str:
    """The class a tiny view's clip carries in ``label_sentiment``: the planted score's sign, with a
    neutral band (so a classifier can learn it from the same signal)."""
    return "negative" if score < -1 else "positive" if score > 1 else "neutral"


def save_tiny_bert(path: Path) -> str:
    """A randomly initialised 1-layer BERT saved as a local HF folder (no download)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=VOCAB, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    BertModel(config).save_pretrained(path)
    return str(path)


def rewrite_view(root: Path, arrays: dict[str, np.ndarray], name: str = "tiny", clips: pa.Table | None = None) -> None:
    """Write view ``name`` again with ``arrays`` (those of ``write_tiny_view``, some changed: a damaged
    statistic, an absent modality) and ``clips`` (other labels), keeping its attrs."""
    view = open_view(root, name)
    write_view(root, name, arrays, view.clips if clips is None else clips, dict(view.attrs))
