"""How to build an aligned view: the grid, pooling, lengths and normalisation settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, PositiveInt, field_validator

from store.config_model import ConfigModel
from store.schema import Modality

# bump when the pooling code changes what a view holds: every view re-aligns. 2: NaN/inf rows left out
ALIGN_VERSION = "2"
#: A view is the folder ``aligned/<view>``: one file name, which ext4, APFS and NTFS cap at 255 bytes
#: (the name pattern admits ASCII only, so characters are bytes). A longer name is refused, not cut:
#: configs, runs and the CLI name a view as typed, and no view that could be written is refused.
VIEW_NAME_LIMIT = 255
DEFAULT_EXTRACTORS: dict[str, str] = {"text": "text.bert", "audio": "audio.mfcc", "vision": "vision.cnn"}


class AlignConfig(ConfigModel):
    """How to build an aligned view (``aligned/<view>/``).

    ``feature_sets`` maps a modality to a feature-set name (``audio.mfcc-7dc3e6ca``) or an extractor
    name (its newest set in the store), or to null to leave the modality out. Modalities not named
    use the newest set of ``text.bert`` / ``audio.mfcc`` / ``vision.cnn`` and are skipped when the
    store has none; a named set or extractor that is missing is an error.

    ``max_len``: the padded length L — an int (for ``grid=none`` the same for every modality), a
    per-modality mapping (``{"audio": 500}``), or null: the ``percentile`` of the train split's
    sequence lengths, rounded up (per modality for ``grid=none``, modalities not in the mapping
    fall back to the percentile too).
    """

    model_config = ConfigDict(extra="forbid")

    view: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="view name under aligned/")
    grid: Literal["word", "window", "none"] = Field("word", description="word | window | none")
    # finite: an infinite window or hop (YAML `.inf`) would reach the fingerprint and the grid
    window: float = Field(0.5, gt=0, allow_inf_nan=False, description="window length w in seconds (grid=window)")
    hop: float | None = Field(None, gt=0, allow_inf_nan=False, description="window hop h in seconds (null: = window)")
    pooling: Literal["mean", "max", "last"] = Field("mean", description="how rows inside one step are pooled")
    empty: Literal["nearest", "zeros"] = Field("nearest", description="value of a step no row overlaps")
    max_len: PositiveInt | dict[Modality, PositiveInt] | None = Field(
        None, description="padded length L; null: from `percentile` of train lengths"
    )
    percentile: float = Field(95.0, gt=0, le=100, description="percentile of train lengths for L")
    feature_sets: dict[Modality, str | None] = Field(
        default_factory=dict, description="modality -> set or extractor name (null: leave out)"
    )
    normalize: bool = Field(True, description="standardise values with the train mean/std")

    @field_validator("view")
    @classmethod
    def _view_fits_a_file_name(cls, value: str) -> str:
        if len(value) > VIEW_NAME_LIMIT:
            raise ValueError(f"the view name has {len(value)} characters; a view is the folder aligned/<view>, "
                             f"so at most {VIEW_NAME_LIMIT}")
        return value

    @field_validator("feature_sets", mode="before")
    @classmethod
    def _none_is_default(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def step(self) -> float:
        return self.hop if self.hop is not None else self.window

    def L_for(self, modality: str) -> int | None:  # noqa: N802 - L is the name everyone uses
        if isinstance(self.max_len, dict):
            # keys are Modality literals; any other str simply finds nothing
            return self.max_len.get(modality)  # type: ignore[call-overload]
        return self.max_len


# -- grids ----------------------------------------------------------------------------------
