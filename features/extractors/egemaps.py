"""``audio.egemaps``: openSMILE low-level descriptors (eGeMAPSv02: 25 per 10 ms frame; ComParE_2016:
65) of the clip's audio, decoded by the project's PyAV path (``features.media.audio``) to 16 kHz mono.

Why: sentiment lives in the voice's prosody (pitch, loudness, voice quality), which MFCCs only
hint at; eGeMAPS is the field's standard minimal prosodic set (Eyben et al. 2016, used by
thuiar/MMSA-FET). openSMILE runs in-process through the PyPI ``opensmile`` package, which bundles
the SMILExtract library and the feature-set configs: no binary to install, no network.

**Licence.** openSMILE is under audEERING's research licence: free for non-commercial use
(research, teaching, personal use); any use in a product, including of features extracted with it
or models trained on them, needs a commercial licence from audEERING GmbH. The other extractors
have permissive licences, so ``opensmile`` is an extra (``pip install 'emoflow[egemaps]'``,
included in ``[test]``), not a dependency: installing it accepts that licence (``docs/extraction.md``).

Rows: one per openSMILE frame (10 ms hop), with the span openSMILE reports (frame start, start +
its frame length: 20 ms for eGeMAPS, 60 ms for ComParE; pitch, jitter, shimmer and formants are
analysed over 60 ms windows that start at the frame start), clipped to the clip's end. Unvoiced
frames carry 0 in the ``*_sma3nz`` (eGeMAPS) descriptors, as openSMILE writes them; silence gives
finite floors (e.g. -201 dB HNR). A clip shorter than 60 ms is zero-padded to 60 ms (openSMILE
returns NaN rows below that); any other non-finite value is replaced by 0 and counted in
``meta["nonfinite"]``, so rows are always finite as MFCC rows are.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from features.clips import ClipInput
from features.extractors.audio import clip_audio
from features.extractors.base import (
    ClipFailure,
    Extractor,
    ExtractorConfig,
    FeatureResult,
    failure_from_exception,
    model_cache,
    register_extractor,
)
from features.media.audio import DecodedAudio
from store.errors import ConfigError

log = logging.getLogger(__name__)

FeatureSetName = Literal["eGeMAPSv02", "ComParE_2016"]
#: Shortest signal openSMILE turns into finite LLD rows (its pitch window); shorter clips are padded.
MIN_SECONDS = 0.06
#: The eGeMAPSv02 pitch descriptor (semitones above 27.5 Hz; 0 where unvoiced).
F0_COLUMN = "F0semitoneFrom27.5Hz_sma3nz"
LICENCE = ("openSMILE: research and non-commercial use only; commercial use, including of its "
           "features and models trained on them, needs a licence from audEERING GmbH")


class EgemapsConfig(ExtractorConfig):
    """``feature_set``: eGeMAPSv02 (25 LLDs, the default) or ComParE_2016 (65 LLDs).
    ``sample_rate``: what the audio is decoded to before openSMILE (16 kHz, like audio.mfcc).
    ``audio_stream``: container stream index to use (None: the highest sample rate)."""

    feature_set: FeatureSetName = "eGeMAPSv02"
    sample_rate: int = Field(16000, ge=8000)
    audio_stream: int | None = None


def _opensmile() -> Any:
    """The ``opensmile`` module; missing, a one-line user error: it is an extra (``emoflow[egemaps]``),
    not a dependency, because installing it accepts audEERING's research-only licence."""
    try:
        import opensmile
    except ImportError:
        raise ConfigError(
            "audio.egemaps needs the opensmile package: pip install 'emoflow[egemaps]' "
            f"(its licence: {LICENCE})"
        ) from None
    return opensmile


@model_cache
def _smile(feature_set: str) -> Any:
    """One ``opensmile.Smile`` per process and feature set (its config is parsed once; every
    ``process_signal`` call runs its own SMILExtract instance, so threads may share it)."""
    opensmile = _opensmile()
    return opensmile.Smile(
        feature_set=opensmile.FeatureSet[feature_set],
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
    )


@model_cache
def _opensmile_identity(feature_set: str) -> dict[str, Any]:
    """Package version, column names and sha256 of every bundled config file and of the SMILExtract
    library: a different openSMILE build or config gives a different feature set."""
    opensmile = _opensmile()
    smile = _smile(feature_set)
    package = Path(opensmile.__file__).parent
    digest = hashlib.sha256()
    config_root = Path(smile.default_config_root)
    files = sorted(p for p in config_root.rglob("*") if p.is_file())
    files += sorted(p for p in (package / "core" / "bin").rglob("*") if p.is_file())
    for p in files:
        digest.update(str(p.relative_to(package)).encode() + b"\0")
        digest.update(p.read_bytes())
    return {
        "opensmile": opensmile.__version__,
        "feature_set": feature_set,
        "feature_level": "LowLevelDescriptors",
        "config": str(Path(smile.config_path).relative_to(config_root)),
        "files_sha256": digest.hexdigest(),
        "columns": list(smile.feature_names),
    }


def smile_frames(samples: np.ndarray, sample_rate: int, feature_set: str = "eGeMAPSv02",
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """``(values [frames, dim] float32, spans [frames, 2] float64, non-finite count)`` of mono samples.

    Samples are clipped to [-1, 1) first: the wrapper scales by 32768 and casts to int16, where a
    louder sample would wrap around instead of saturating.
    """
    y = np.clip(np.asarray(samples, np.float32), -1.0, 32767 / 32768)
    need = int(np.ceil(MIN_SECONDS * sample_rate))
    if len(y) < need:
        y = np.pad(y, (0, need - len(y)))
    df = _smile(feature_set).process_signal(y, sample_rate)
    values = df.to_numpy(dtype=np.float32)
    bad = ~np.isfinite(values)
    n_bad = int(bad.sum())
    if n_bad:
        values = np.where(bad, np.float32(0.0), values)
    starts = df.index.get_level_values("start").total_seconds().to_numpy(np.float64)
    ends = df.index.get_level_values("end").total_seconds().to_numpy(np.float64)
    # the wrapper stretches the last row's end to the signal's end: give it the common frame length
    length = float(ends[0] - starts[0])
    spans = np.stack([starts, starts + length], axis=1).reshape(len(starts), 2)
    return np.ascontiguousarray(values), spans, n_bad


@register_extractor
class EgemapsExtractor(Extractor):
    """openSMILE eGeMAPSv02 (or ComParE_2016) LLDs every 10 ms; no audio stream → a recorded absence.

    Licence: openSMILE allows research and non-commercial use only; commercial use (also of the
    features and of models trained on them) needs a licence from audEERING GmbH.
    """

    name: ClassVar[str] = "audio.egemaps"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "audio"
    config_cls: ClassVar[type[ExtractorConfig]] = EgemapsConfig
    cost_per_second: ClassVar[float] = 0.02
    config: EgemapsConfig

    @property
    def dim(self) -> int:
        return 25 if self.config.feature_set == "eGeMAPSv02" else 65

    @property
    def columns(self) -> list[str]:
        """openSMILE's descriptor names, in ``values`` column order."""
        return list(_opensmile_identity(self.config.feature_set)["columns"])

    def model_identity(self) -> dict[str, Any]:
        return dict(_opensmile_identity(self.config.feature_set))

    def extract(self, clips: list[ClipInput]) -> list[FeatureResult | ClipFailure]:
        return [self._one(clip) for clip in clips]

    def _one(self, clip: ClipInput) -> FeatureResult | ClipFailure:
        cfg = self.config
        audio = clip_audio(clip, cfg.sample_rate, cfg.audio_stream, self.dim)
        if not isinstance(audio, DecodedAudio):
            return audio
        try:
            values, spans, n_bad = smile_frames(audio.samples, cfg.sample_rate, cfg.feature_set)
        except Exception as exc:
            return failure_from_exception(clip, exc, "extract")
        if values.shape[1] != self.dim:
            return failure_from_exception(
                clip, RuntimeError(f"openSMILE gave {values.shape[1]} descriptors, expected {self.dim}"), "extract"
            )
        limit = audio.meta["window"][1] - audio.meta["window"][0]
        spans = np.minimum(spans, limit)
        meta = dict(audio.meta)
        meta["n_samples"] = int(len(audio.samples))
        meta["feature_set"] = cfg.feature_set
        if n_bad:
            meta["nonfinite"] = n_bad
            log.warning("clip %s: openSMILE gave %d non-finite values (replaced by 0)", clip.clip_id, n_bad)
        return FeatureResult(values=values, times=spans, meta=meta)
