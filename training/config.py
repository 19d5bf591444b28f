"""Training configuration: every hyper-parameter of the MCMF+SLGM spec (docs: model-spec.md).

One strict pydantic model so a run directory can store the fully resolved config and a YAML file
with a typo fails loudly instead of silently training something else.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from store.config_model import ConfigModel
from store.schema import MODALITIES, Modality

#: store modality name -> the spec's short name (l = language, a = acoustic, v = visual)
SHORT: dict[str, str] = {"text": "l", "audio": "a", "vision": "v"}

#: seeds go to numpy's legacy ``np.random.seed`` (``training.loop.seed_everything``), which takes [0, 2**32 - 1]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
#: an Adam beta: torch.optim refuses one outside [0, 1)
Beta = Annotated[float, Field(ge=0, lt=1)]

#: the hyper-parameter search space of spec §7 (field name -> candidate values)
SEARCH_SPACE: dict[str, tuple[float | int, ...]] = {
    "k": (32, 64),
    "heads": (4, 8),
    "lgt_layers": (1, 2, 3, 4),
    "glimpses": (1, 4, 8),
    "d_f": (8, 16, 32),
    "head_dropout_m": (0.0, 0.2, 0.5),
    "lr_other": (5e-4, 1e-3, 2e-3),
    "attn_dropout": (0.0, 0.1, 0.2),
}


class ExpectedView(ConfigModel):
    """What the config expects of the aligned view it trains on; ``None`` accepts whatever the view has."""

    model_config = ConfigDict(extra="forbid")

    fingerprint: str | None = None
    modalities: list[Modality] | None = None
    dims: dict[Modality, int] | None = None


class TrainConfig(ConfigModel):
    """All settings of one training run (defaults = spec §2, §3, §6 for CMU-MOSI). Every number is
    finite (``allow_inf_nan``): ``weight_decay: inf`` or ``lr_other: nan`` passes any bound like
    ``ge=0`` and makes every loss NaN."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # --- architecture (§2-§3) ---
    k: int = Field(64, gt=0, description="model width")
    heads: int = Field(8, gt=0, description="attention heads h (must divide k)")
    lgt_layers: int = Field(2, ge=1, description="L_lgt, layers per LGT branch")
    glimpses: int = Field(4, ge=1, description="G, SM glimpse vectors")
    d_f: int = Field(16, gt=0, description="UFF projection width; F_m has (d_f+1)^3 entries")
    text_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on X_l before W_l")
    attn_dropout: float = Field(0.1, ge=0, lt=1)
    res_dropout: float = Field(0.1, ge=0, lt=1)
    relu_dropout: float = Field(0.1, ge=0, lt=1)
    av_input_norm: bool = Field(False, description="LayerNorm on audio/vision inputs before the BiLSTM")
    text_positions: bool = Field(False, description="sinusoidal positions on E_l (word-pooled text)")
    head_layers: Literal[2, 3] = Field(3, description="3 = Self-MM head, 2 = paper Eq. 11")
    head_dim_m: int = Field(128, gt=0)
    head_dim_l: int = Field(32, gt=0)
    head_dim_a: int = Field(16, gt=0)
    head_dim_v: int = Field(32, gt=0)
    head_dropout_m: float | None = Field(None, ge=0, lt=1, description="None: 0.2 with fusion=uff, else 0.0")
    head_dropout_l: float = Field(0.1, ge=0, lt=1)
    head_dropout_a: float = Field(0.1, ge=0, lt=1)
    head_dropout_v: float = Field(0.0, ge=0, lt=1)

    # --- ablation switches (§10) ---
    use_lgt: bool = True
    use_sm: bool = True
    fusion: Literal["uff", "concat", "sum"] = "uff"
    use_slgm: bool = True
    distance: Literal["l2", "bhattacharyya"] = "l2"
    label_momentum: Literal["selfmm", "paper3"] = "selfmm"
    unimodal_input: Literal["lgt", "encoder"] = "lgt"
    modalities: list[Modality] = Field(default_factory=lambda: list(MODALITIES))

    # --- target (issue 16: categorical targets) ---
    target: Literal["score", "emotion", "sentiment"] = Field(
        "score", description="score: regression on the clip table's label in [-3, 3] (the spec); emotion / "
        "sentiment: classification of label_emotion / label_sentiment (cross-entropy, no SLGM)",
    )
    classes: list[str] | None = Field(
        None, description="class order of a categorical target; None = the sorted classes found in the view",
    )
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: cross-entropy weights n / (C n_c) from the training clips (imbalance)",
    )

    # --- SLGM (§4) ---
    label_clip: float = Field(3.0, gt=0, description="H: generated labels are clipped to [-H, H]")
    exclude_zero: bool = Field(True, description="zero labels belong to neither class centre")

    # --- text encoder (§6) ---
    text_mode: Literal["finetune", "frozen"] = "finetune"
    text_model_path: str | None = Field(None, description="local HF folder; None: the view's text_model_path")

    # --- optimisation (§6) ---
    lr_text: float = Field(5e-5, gt=0)
    lr_av: float = Field(5e-3, gt=0)
    lr_other: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    adam_betas: tuple[Beta, Beta] = (0.9, 0.999)
    batch_size: int = Field(16, gt=0)
    batching: Literal["bucket", "shards", "shuffle"] = Field(
        "bucket", description="bucket: shuffled batches of similar-length clips (less padding, 1.5x faster "
        "epochs measured); shards: the same within windows of shard_window view shards, each shard read "
        "whole once per epoch (views larger than cache_mb); shuffle: uniform random batches",
    )
    shard_window: int = Field(8, ge=1, description="view shards (256 clips each) per window (shards batching)")
    bucket_pool: int = Field(50, ge=1, description="batches per length-sorted pool (bucket batching)")
    accumulate: int = Field(4, ge=1, description="batches per optimizer step")
    grad_clip: float | None = Field(0.8, gt=0, description="global grad-norm clip; None = off")
    patience: int = Field(8, ge=1, description="epochs without valid L_m improvement before stopping")
    min_delta: float = Field(1e-6, ge=0, description="improvement threshold on valid L_m")
    max_epochs: int | None = Field(60, ge=1, description="hard cap; None = until early stop")

    # --- recipe options beyond the spec (defaults keep §6: Adam, L2 decay on every weight, constant lr) ---
    optimizer: Literal["adam", "adamw"] = Field(
        "adam", description="adam: L2 weight decay added to the gradient (spec); adamw: decoupled weight decay",
    )
    weight_decay_text: float | None = Field(None, ge=0, description="decay of the text encoder; None = weight_decay")
    no_decay_bias_norm: bool = Field(False, description="no weight decay on biases and LayerNorm weights")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="lr multiplier over optimizer steps: warm-up (warmup_ratio of the horizon) "
        "then constant, linear or cosine decay to lr_floor at the horizon (schedule_epochs)",
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="linear warm-up from 0, share of the schedule horizon")
    lr_floor: float = Field(0.0, ge=0, le=1, description="lr multiplier reached at the horizon and kept after it")
    schedule_epochs: int | None = Field(
        None, ge=1, description="horizon of lr_schedule in epochs of optimizer steps; None = max_epochs",
    )
    lr_schedule_text: Literal["constant", "linear", "cosine"] | None = Field(
        None, description="schedule of the text encoder's group; None = lr_schedule",
    )
    text_schedule_epochs: int | None = Field(
        None, ge=1, description="horizon of the text encoder's schedule; None = schedule_epochs. With "
        "lr_floor 0 the encoder is frozen after it (early freezing)",
    )

    # --- reproducibility / runtime ---
    seed: Seed = 1111
    seeds: list[Seed] = Field(default_factory=lambda: [1111, 1112, 1113, 1114, 1115])
    deterministic: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(
        1, ge=1, description="torch CPU threads; 1 is fastest for these small models (2 threads under load: "
        "15x slower LSTM steps measured); None keeps torch's default",
    )
    num_workers: int = Field(0, ge=0, description="DataLoader workers (spawned, see training.data)")
    cache_mb: int = Field(1024, ge=0, description="per-process cache of decompressed view blocks")
    preload: bool | None = Field(
        None, description="hold each split's padded tensors on the training device and gather every batch "
        "there (no per-batch collation or host-to-device copy; the same batches): true = always, false = "
        "never, None = on CUDA when a split takes at most a quarter of the GPU's free memory",
    )

    view: ExpectedView = Field(default_factory=ExpectedView)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.k % self.heads:
            raise ValueError(f"heads={self.heads} must divide k={self.k}")
        if self.k % 2:
            raise ValueError(f"k={self.k} must be even (BiLSTM uses k/2 per direction)")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities has duplicates: {self.modalities}")
        if len(set(self.seeds)) != len(self.seeds):  # two seed runs would share one seed-<n> folder
            raise ValueError(f"seeds has duplicates: {_duplicates(self.seeds)}")
        if self.classes:  # a repeated class is an output no clip can have: contradictory metrics
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes has duplicates: {_duplicates(self.classes)}")
            if len(self.classes) < 2:
                raise ValueError(f"classes={self.classes}: a classifier needs at least two")
        if len(self.modalities) not in (1, 3):
            raise ValueError(
                f"modalities={self.modalities}: use all three or exactly one (single-modality ablation)"
            )
        if self.target != "score" and self.use_slgm:
            if "use_slgm" in self.model_fields_set:
                raise ValueError(f"use_slgm: SLGM generates unimodal scores and is undefined for the categorical "
                                 f"target {self.target!r}; leave it unset or false (every head learns the class)")
            self.use_slgm = False  # the default for a categorical target: the paper's -SLGM setting
        if self.single_modality is not None and self.use_slgm:
            raise ValueError("a single-modality run has no unimodal tasks: set use_slgm=false")
        if (self.lr_schedule != "constant" or self.warmup_ratio > 0) and self.schedule_horizon is None:
            raise ValueError("a warm-up or decaying lr_schedule needs schedule_epochs or max_epochs")
        if self.head_dropout_m is None:
            self.head_dropout_m = 0.2 if self.fusion == "uff" else 0.0
        return self

    @property
    def schedule_horizon(self) -> int | None:
        """Epochs over which lr_schedule runs (schedule_epochs, else max_epochs)."""
        return self.schedule_epochs or self.max_epochs

    @property
    def single_modality(self) -> str | None:
        """The short name (l/a/v) of the only modality of a single-modality ablation, else None."""
        return SHORT[self.modalities[0]] if len(self.modalities) == 1 else None

    @property
    def short_modalities(self) -> tuple[str, ...]:
        """Modalities in l, a, v order (short names)."""
        return tuple(SHORT[m] for m in MODALITIES if m in self.modalities)

    def head_dim(self, task: str) -> int:
        return {"m": self.head_dim_m, "l": self.head_dim_l, "a": self.head_dim_a, "v": self.head_dim_v}[task]

    def head_dropout(self, task: str) -> float:
        p = {"m": self.head_dropout_m, "l": self.head_dropout_l, "a": self.head_dropout_a, "v": self.head_dropout_v}
        return float(p[task])  # type: ignore[arg-type]  # head_dropout_m is resolved by _check


def _duplicates(values: Sequence[Hashable]) -> list[Hashable]:
    """The values that occur more than once, each named once, in order (for the error message)."""
    return list(dict.fromkeys(v for i, v in enumerate(values) if v in values[:i]))


#: Named ablations (spec §10) as config overrides; single-modality runs train one head on y_m.
ABLATIONS: dict[str, dict[str, object]] = {
    "full": {},
    "no_uff": {"fusion": "concat"},
    "no_lgt": {"use_lgt": False},
    "no_sm": {"use_sm": False},
    "no_slgm": {"use_slgm": False},
    "text": {"modalities": ["text"], "use_slgm": False},
    "audio": {"modalities": ["audio"], "use_slgm": False},
    "vision": {"modalities": ["vision"], "use_slgm": False},
}


def with_ablation(config: TrainConfig, ablation: str) -> TrainConfig:
    """``config`` with the named ablation's switches applied (validated again)."""
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATIONS)}")
    return TrainConfig.model_validate({**config.model_dump(), **ABLATIONS[ablation]})
