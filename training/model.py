"""MCMF: encoders -> language-guided transformer (LGT) -> soft mapping (SM) -> UFF -> four heads.

Implements model-spec.md §3 exactly; short names l/a/v = text/audio/vision, m = multimodal.
Every sub-module takes a boolean mask (true = real step) and zeroes/ignores padded steps, so the
output of a clip does not depend on how far its batch was padded.

Single-modality ablation (``config.modalities`` has one entry u): only u's encoder, one LGT
branch that self-attends over E_u (for text this is exactly branch l; audio/vision cannot take
text queries, so they attend to themselves with the same layer structure), u's SM and u's head
(sizes d_u, p_u). That head's output is the model's prediction ŷ_m and is trained on y_m; there is
no fusion and no SLGM because there are no auxiliary unimodal tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from store.errors import ConfigError
from store.runtime import offline_hub
from training.config import TrainConfig

offline_hub()


@dataclass
class ModalityInput:
    """One modality of a padded batch.

    ``mask`` [B, T] bool (true = real step), ``lengths`` [B] int64 >= 1, ``values`` [B, T, D] float32
    (cached features), ``input_ids`` [B, T] int64 (text in finetune mode, with ``mask`` as attention mask).
    """

    mask: Tensor
    lengths: Tensor
    values: Tensor | None = None
    input_ids: Tensor | None = None

    def to(self, device: torch.device) -> ModalityInput:
        """On ``device`` (non-blocking from pinned memory); lengths stay on the CPU, where
        pack_padded_sequence wants them."""
        return replace(
            self,
            mask=self.mask.to(device, non_blocking=True),
            values=None if self.values is None else self.values.to(device, non_blocking=True),
            input_ids=None if self.input_ids is None else self.input_ids.to(device, non_blocking=True),
        )

    def pin_memory(self) -> ModalityInput:
        return replace(
            self,
            mask=self.mask.pin_memory(),
            values=None if self.values is None else self.values.pin_memory(),
            input_ids=None if self.input_ids is None else self.input_ids.pin_memory(),
        )


@dataclass
class ModelOutput:
    """``preds[x]`` = ŷ_x [B] (class logits [B, C] for a categorical target); ``features[x]`` = F*_x
    [B, d_x], the head's first hidden layer (SLGM input)."""

    preds: dict[str, Tensor]
    features: dict[str, Tensor]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over time of the real steps: [B, T, k] -> [B, k]."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def _zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """Set padded steps to 0 (with ``where`` so NaN/inf padding cannot leak through 0 * x)."""
    return torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    """Transformer sine/cosine positions [length, dim] (for word-pooled text, which has no positions)."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


def check_text_model(path: str, what: str) -> None:
    """Refuse (``ConfigError`` naming ``what`` and ``path``) a ``path`` that cannot be the local
    Hugging Face folder a fine-tuned text encoder loads: not a folder, or one without the
    ``config.json`` transformers reads first. Cheap, so training checks it before a run starts."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"{what} {path}: no such folder (a local Hugging Face model folder is needed)")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{what} {path}: has no config.json, so it is not a Hugging Face model folder")


class TextEncoder(nn.Module):
    """A local Hugging Face encoder, fine-tuned end to end (``text_mode=finetune``)."""

    def __init__(self, model_path: str) -> None:
        super().__init__()
        check_text_model(model_path, "text model")
        from transformers import AutoModel  # slow import; only finetune runs pay it
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a weight-loading progress bar per seed is noise in run logs
        try:
            self.model = AutoModel.from_pretrained(model_path, local_files_only=True)
        except (OSError, ValueError, SafetensorError) as exc:  # weights missing or damaged, an unknown model type
            raise ConfigError(f"text model {model_path}: transformers cannot load it "
                              f"({' '.join(str(exc).split())})") from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.hidden_size = int(self.model.config.hidden_size)

    def forward(self, input_ids: Tensor, mask: Tensor) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state


class TextProjection(nn.Module):
    """E_l = Dropout(X_l) W_l + b_l (§3.1): BERT states are already contextual, no recurrence."""

    def __init__(self, d_in: int, k: int, dropout: float, positions: bool) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(d_in, k)
        self.positions = positions

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        e = self.proj(self.drop(_zero_padding(x, mask)))
        if self.positions:
            e = e + sinusoidal_positions(e.shape[1], e.shape[2], e.device)
        return _zero_padding(e, mask)


class SequenceEncoder(nn.Module):
    """Audio/vision encoder: 1-layer BiLSTM (k/2 per direction) over packed true lengths (§3.1)."""

    def __init__(self, d_in: int, k: int, input_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_in) if input_norm else nn.Identity()
        self.lstm = nn.LSTM(d_in, k // 2, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
        x = self.norm(_zero_padding(x, mask))
        # What pack_padded_sequence(enforce_sorted=False) and pad_packed_sequence do, with the sort
        # order copied to a GPU without waiting and no unsort order read back: those two host waits
        # per call kept the host from queueing the next step while the GPU finished this one.
        lengths, order = torch.sort(lengths.cpu(), descending=True)
        inverse = torch.argsort(order)
        if x.is_cuda:
            order, inverse = (t.pin_memory().to(x.device, non_blocking=True) for t in (order, inverse))
        packed = pack_padded_sequence(x.index_select(0, order), lengths, batch_first=True, enforce_sorted=True)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out.index_select(0, inverse)  # padded steps are 0


class LGTLayer(nn.Module):
    """One post-LN cross-modal transformer layer (Eq. 3-4): MHA + residual + LN, FFN + residual + LN."""

    def __init__(self, k: int, heads: int, attn_dropout: float, res_dropout: float, relu_dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(k, heads, dropout=attn_dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(k)
        self.norm2 = nn.LayerNorm(k)
        self.ffn = nn.Sequential(nn.Linear(k, 4 * k), nn.ReLU(), nn.Dropout(relu_dropout), nn.Linear(4 * k, k))
        self.res_drop = nn.Dropout(res_dropout)

    def forward(self, query: Tensor, source: Tensor, source_mask: Tensor) -> Tensor:
        a, _ = self.attn(query, source, source, key_padding_mask=~source_mask, need_weights=False)
        z = self.norm1(query + self.res_drop(a))
        return self.norm2(z + self.res_drop(self.ffn(z)))


class LGTBranch(nn.Module):
    """A stack of LGT layers. ``self_attention``: keys/values are the branch's own previous stream
    (text branch l); otherwise they are the fixed low-level encoding E_b of audio or vision."""

    def __init__(self, config: TrainConfig, self_attention: bool) -> None:
        super().__init__()
        c = config
        self.layers = nn.ModuleList(
            LGTLayer(c.k, c.heads, c.attn_dropout, c.res_dropout, c.relu_dropout) for _ in range(c.lgt_layers)
        )
        self.self_attention = self_attention

    def forward(
        self, query: Tensor, query_mask: Tensor, source: Tensor | None = None, source_mask: Tensor | None = None
    ) -> Tensor:
        z = query
        for layer in self.layers:
            if self.self_attention:
                z = layer(z, z, query_mask)
            else:
                assert source is not None and source_mask is not None
                z = layer(z, source, source_mask)
        return _zero_padding(z, query_mask)


class SoftMapping(nn.Module):
    """SM (Eq. 6-8): G learned glimpses over tanh(H W_m) in 2k dims, glimpse mean, residual to the
    masked mean of H, LayerNorm. Structured self-attentive pooling: [B, T, k] -> [B, k]."""

    def __init__(self, k: int, glimpses: int) -> None:
        super().__init__()
        self.map = nn.Linear(k, 2 * k)
        self.glimpse = nn.Linear(2 * k, glimpses, bias=False)  # rows = the G glimpse vectors v_g
        self.norm = nn.LayerNorm(k)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        scores = self.glimpse(torch.tanh(self.map(h)))  # [B, T, G]
        scores = scores.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        alpha = torch.softmax(scores, dim=1)
        s = torch.einsum("btg,btk->bk", alpha, h) / alpha.shape[-1]
        return self.norm(masked_mean(h, mask) + s)


class MaskedMean(nn.Module):
    """Pooling when SM is switched off: S = masked mean over time."""

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        return masked_mean(h, mask)


class UFF(nn.Module):
    """TFN fusion (Eq. 10): z_u = ReLU(S_u W_u + b_u) in d_f dims, ẑ_u = [1; z_u], F_m = vec(ẑ_l⊗ẑ_a⊗ẑ_v).

    The constant 1 makes F_m hold the unimodal, bimodal and trimodal products at once.
    """

    def __init__(self, k: int, d_f: int, n: int = 3) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(k, d_f) for _ in range(n))
        self.out_dim = (d_f + 1) ** n

    def forward(self, s: list[Tensor]) -> Tensor:
        ones = s[0].new_ones(s[0].shape[0], 1)
        zl, za, zv = (torch.cat([ones, torch.relu(p(x))], dim=-1) for p, x in zip(self.proj, s))
        return torch.einsum("bi,bj,bk->bijk", zl, za, zv).flatten(1)


class ConcatFusion(nn.Module):
    """F_m = [S_l; S_a; S_v] (the ablation when UFF is off, paper Fig. 11)."""

    def __init__(self, k: int, n: int = 3) -> None:
        super().__init__()
        self.out_dim = n * k

    def forward(self, s: list[Tensor]) -> Tensor:
        return torch.cat(s, dim=-1)


class SumFusion(nn.Module):
    """F_m = LayerNorm(S_l + S_a + S_v) (paper Eq. 9, the stand-alone LGT model)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(k)
        self.out_dim = k

    def forward(self, s: list[Tensor]) -> Tensor:
        return self.norm(torch.stack(s).sum(0))


class Head(nn.Module):
    """Task head (Eq. 11 / Self-MM): F* = ReLU(Dropout(F) W1 + b1); ŷ = W3 ReLU(F* W2 + b2) + b3
    (3 layers) or ŷ = F* W2 + b2 (2 layers). Returns (ŷ [B] for one output, class logits [B, C] for
    ``outputs`` = C > 1, and F* [B, d])."""

    def __init__(self, d_in: int, hidden: int, dropout: float, layers: int, outputs: int = 1) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden) if layers == 3 else None
        self.out = nn.Linear(hidden, outputs)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        feat = torch.relu(self.fc1(self.drop(f)))
        h = torch.relu(self.fc2(feat)) if self.fc2 is not None else feat
        y = self.out(h)
        return (y.squeeze(-1) if y.shape[-1] == 1 else y), feat


def _pool(config: TrainConfig) -> nn.Module:
    return SoftMapping(config.k, config.glimpses) if config.use_sm else MaskedMean()


def _fusion(config: TrainConfig) -> UFF | ConcatFusion | SumFusion:
    if config.fusion == "uff":
        return UFF(config.k, config.d_f)
    return ConcatFusion(config.k) if config.fusion == "concat" else SumFusion(config.k)


class MCMF(nn.Module):
    """The multi-task model of spec §2-§3 (and its ablations, §10).

    ``dims`` maps l/a/v to input feature sizes; ``text_encoder`` is required in finetune mode
    (then the text input is token ids and dims["l"] is ignored). ``tasks`` lists the outputs:
    ("m", "l", "a", "v") normally, ("m",) for a single-modality ablation. ``outputs``: 1 (a score)
    or the number of classes of a categorical target (``training.targets``), for every head.
    """

    def __init__(
        self, config: TrainConfig, dims: dict[str, int], text_encoder: TextEncoder | None = None, outputs: int = 1
    ) -> None:
        super().__init__()
        c = config
        self.modalities = c.short_modalities
        self.single = c.single_modality
        finetune = c.text_mode == "finetune" and "l" in self.modalities
        if finetune and text_encoder is None:
            raise ValueError("text_mode=finetune needs a TextEncoder")
        self.text_encoder = text_encoder if finetune else None

        encoders: dict[str, nn.Module] = {}
        for u in self.modalities:
            if u == "l":
                d_in = self.text_encoder.hidden_size if self.text_encoder is not None else dims["l"]
                encoders[u] = TextProjection(d_in, c.k, c.text_dropout, c.text_positions)
            else:
                encoders[u] = SequenceEncoder(dims[u], c.k, c.av_input_norm)
        self.encoders = nn.ModuleDict(encoders)

        self_attending = {b: b == "l" or self.single is not None for b in self.modalities}
        self.lgt = nn.ModuleDict({b: LGTBranch(c, sa) for b, sa in self_attending.items()}) if c.use_lgt else None
        self.pool = nn.ModuleDict({b: _pool(c) for b in self.modalities})

        if self.single is not None:
            u = self.single
            self.pool_encoder = None
            self.fusion: UFF | ConcatFusion | SumFusion | None = None
            self.heads = nn.ModuleDict({"m": Head(c.k, c.head_dim(u), c.head_dropout(u), c.head_layers, outputs)})
            self.tasks: tuple[str, ...] = ("m",)
            return
        encoder_input = c.unimodal_input == "encoder"
        self.pool_encoder = nn.ModuleDict({u: _pool(c) for u in self.modalities}) if encoder_input else None
        self.fusion = _fusion(c)
        heads = {"m": Head(self.fusion.out_dim, c.head_dim("m"), c.head_dropout("m"), c.head_layers, outputs)}
        heads.update(
            {u: Head(c.k, c.head_dim(u), c.head_dropout(u), c.head_layers, outputs) for u in self.modalities}
        )
        self.heads = nn.ModuleDict(heads)
        self.tasks = ("m", *self.modalities)

    def encode(self, inputs: dict[str, ModalityInput]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Unimodal encodings E_u [B, T_u, k] and their masks."""
        enc: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        for u in self.modalities:
            x = inputs[u]
            if u == "l":
                if self.text_encoder is not None:
                    assert x.input_ids is not None, "finetune mode needs text input_ids"
                    values = self.text_encoder(x.input_ids, x.mask)
                else:
                    assert x.values is not None, "frozen text needs cached token states"
                    values = x.values
                enc[u] = self.encoders[u](values, x.mask)
            else:
                assert x.values is not None
                enc[u] = self.encoders[u](x.values, x.mask, x.lengths)
            masks[u] = x.mask
        return enc, masks

    def forward(self, inputs: dict[str, ModalityInput]) -> ModelOutput:
        enc, masks = self.encode(inputs)
        if self.lgt is None:  # LGT off: each modality's own encoding goes straight to pooling
            hidden, hidden_masks = enc, masks
        elif self.single is not None:
            u = self.single
            hidden, hidden_masks = {u: self.lgt[u](enc[u], masks[u])}, masks
        else:  # every branch's queries come from the text encoding, so outputs have text length
            hidden = {"l": self.lgt["l"](enc["l"], masks["l"])}
            hidden.update({b: self.lgt[b](enc["l"], masks["l"], enc[b], masks[b]) for b in self.modalities if b != "l"})
            hidden_masks = {b: masks["l"] for b in self.modalities}
        pooled = {b: self.pool[b](hidden[b], hidden_masks[b]) for b in self.modalities}

        if self.single is not None:
            y, feat = self.heads["m"](pooled[self.single])
            return ModelOutput(preds={"m": y}, features={"m": feat})

        assert self.fusion is not None
        head_inputs = {"m": self.fusion([pooled[u] for u in self.modalities])}
        if self.pool_encoder is not None:
            head_inputs.update({u: self.pool_encoder[u](enc[u], masks[u]) for u in self.modalities})
        else:
            head_inputs.update(pooled)
        preds, feats = {}, {}
        for x in self.tasks:
            preds[x], feats[x] = self.heads[x](head_inputs[x])
        return ModelOutput(preds=preds, features=feats)


def build_model(config: TrainConfig, dims: dict[str, int], text_model_path: str | None = None,
                outputs: int = 1) -> MCMF:
    """Build MCMF, loading the local text encoder when the config fine-tunes text."""
    text_encoder = None
    if config.text_mode == "finetune" and "l" in config.short_modalities:
        path = config.text_model_path or text_model_path
        if not path:
            raise ValueError("text_mode=finetune needs text_model_path (config or view attrs)")
        text_encoder = TextEncoder(path)
    return MCMF(config, dims, text_encoder, outputs)
