"""Alignment: pool every modality's feature rows onto one time grid and write a padded training view.

Every feature row carries its span ``[start, end]`` in seconds from the clip start, so any modality
can be pooled onto any grid:

* ``word`` — one step per transcript word (the clip table's word timings when present, else the
  words spread evenly over the clip, CMU-SDK style). Text pools its word pieces into words through
  ``extras["word_index"]``; audio and vision pool the rows overlapping each word's span.
* ``window`` — fixed windows of ``window`` seconds every ``hop`` seconds over the clip; every
  modality (text: word pieces, ``[CLS]``/``[SEP]`` left out) pools the rows overlapping each window.
* ``none`` — no pooling: each modality's raw rows at its own rate (text: token states including
  ``[CLS]``/``[SEP]``), as Self-MM consumes them.

A step that no row overlaps gets the nearest row (``empty="nearest"``) or zeros, and its mask bit
is False. Padding to ``L`` happens here, never in the feature sets, so a new ``max_len`` re-aligns
without re-extracting. Plain functions, no Prefect: ``flows/align.py`` wraps them in a flow.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from features.base import clip_words
from store import FeatureStore
from store.errors import ConfigError, StoreError
from store.featurestore import ClipFeatures, IndexRow, now_utc
from store.fingerprint import feature_fingerprint, hash_obj
from store.moments import Moments
from store.schema import MODALITIES, STD_FLOOR, Modality
from store.views import open_view, write_view

log = logging.getLogger(__name__)

ALIGN_VERSION = "1"  # bump when the pooling code changes what a view holds: every view re-aligns
DEFAULT_EXTRACTORS: dict[str, str] = {"text": "text.bert", "audio": "audio.mfcc", "vision": "vision.cnn"}


class AlignConfig(BaseModel):
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
    window: float = Field(0.5, gt=0, description="window length w in seconds (grid=window)")
    hop: float | None = Field(None, gt=0, description="window hop h in seconds (null: = window)")
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

    @field_validator("feature_sets", mode="before")
    @classmethod
    def _none_is_default(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def step(self) -> float:
        return self.hop if self.hop is not None else self.window

    def L_for(self, modality: str) -> int | None:  # noqa: N802 - L is the name everyone uses
        if isinstance(self.max_len, dict):
            return self.max_len.get(modality)  # type: ignore[call-overload]
        return self.max_len


# -- grids ----------------------------------------------------------------------------------
def window_grid(duration: float, window: float, hop: float) -> np.ndarray:
    """Windows ``[k*hop, k*hop + window]`` (the last clipped to the clip end) covering the clip;
    at least one window. ``[n, 2]`` float64."""
    duration = max(float(duration), 0.0)
    n = 1 if duration <= window else int(math.ceil((duration - window) / hop - 1e-9)) + 1
    starts = np.arange(n, dtype=np.float64) * hop
    ends = np.minimum(starts + window, duration) if duration > 0 else starts + window
    return np.stack([starts, ends], axis=1)


def clip_grid(row: dict[str, Any], cfg: AlignConfig) -> np.ndarray:
    """The step spans [S, 2] of one clip for the word or window grid (S >= 1).

    A word grid over a clip with no words has one step covering the whole clip, so its audio and
    vision are still pooled (its text is absent)."""
    duration = float(row.get("duration") or 0.0)
    if cfg.grid == "word":
        _, spans = clip_words(row)
        return spans if len(spans) else np.array([[0.0, duration]], dtype=np.float64)
    if cfg.grid == "window":
        return window_grid(duration, cfg.window, cfg.step)
    raise ValueError("grid 'none' has no common grid")


# -- pooling --------------------------------------------------------------------------------
def overlap_ranges(times: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For rows sorted by start whose ends never decrease (audio and vision frames, word pieces):
    each step's overlapping rows as a range ``[lo, hi)``. None when the rows are not monotone.

    A row ``[a, b]`` overlaps a step ``[s, e]`` when ``a < e`` and ``b > s``; a zero-length step
    ``[s, s]`` takes the rows with ``a <= s < b``."""
    starts, ends = times[:, 0], times[:, 1]
    if len(starts) > 1 and (np.any(np.diff(starts) < 0) or np.any(np.diff(ends) < 0)):
        return None
    s, e = steps[:, 0], steps[:, 1]
    lo = np.searchsorted(ends, s, side="right")
    hi = np.where(e > s, np.searchsorted(starts, e, side="left"), np.searchsorted(starts, s, side="right"))
    return lo, np.maximum(hi, lo)


def overlap_matrix(times: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """[S, R] bool: row r overlaps step s (the definition ``overlap_ranges`` implements fast)."""
    a, b = times[None, :, 0], times[None, :, 1]
    s, e = steps[:, 0:1], steps[:, 1:2]
    span = (a < e) & (b > s)
    point = (a <= s) & (s < b)
    return np.where(e > s, span, point)


def _pool_ranges(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, how: str) -> np.ndarray:
    n_steps, dim = len(lo), values.shape[1]
    out = np.zeros((n_steps, dim), np.float32)
    has = hi > lo
    if not has.any():
        return out
    if how == "last":
        out[has] = values[hi[has] - 1]
    elif how == "mean" and np.isfinite(values).all():
        csum = np.zeros((len(values) + 1, dim), np.float64)
        np.cumsum(values, axis=0, dtype=np.float64, out=csum[1:])
        out[has] = ((csum[hi[has]] - csum[lo[has]]) / (hi[has] - lo[has])[:, None]).astype(np.float32)
    else:
        reduce = np.mean if how == "mean" else np.max
        for i in np.flatnonzero(has):
            out[i] = reduce(values[lo[i] : hi[i]], axis=0)
    return out


def _pool_matrix(values: np.ndarray, members: np.ndarray, how: str) -> np.ndarray:
    out = np.zeros((members.shape[0], values.shape[1]), np.float32)
    for i in range(members.shape[0]):
        idx = np.flatnonzero(members[i])
        if len(idx) == 0:
            continue
        if how == "last":
            out[i] = values[idx[-1]]
        else:
            out[i] = (np.mean if how == "mean" else np.max)(values[idx], axis=0)
    return out


def nearest_rows(times: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """For each step the row closest in time: smallest gap between the spans, ties by centre.
    Steps go in chunks so the [steps, rows] work arrays stay small on long clips."""
    out = np.zeros(len(steps), np.int64)
    chunk = max(1, (1 << 20) // max(1, len(times)))
    mid = times.mean(axis=1)[None, :]
    for lo in range(0, len(steps), chunk):
        st = steps[lo : lo + chunk]
        gap = np.maximum(0.0, np.maximum(times[None, :, 0] - st[:, 1:2], st[:, 0:1] - times[None, :, 1]))
        centre = np.abs(mid - st.mean(axis=1)[:, None])
        out[lo : lo + chunk] = np.lexsort((centre, gap), axis=-1)[:, 0]
    return out


def pool(
    values: np.ndarray,
    times: np.ndarray,
    steps: np.ndarray,
    how: str = "mean",
    empty: str = "nearest",
    groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pool rows (``values [R, D]`` with spans ``times [R, 2]``) into ``steps [S, 2]``.

    Returns ``(pooled [S, D] float32, has_data [S] bool)``. Rows go to the steps they overlap in
    time, unless ``groups`` gives each step's rows as ranges ``(lo, hi)`` (text: word pieces of a
    word). A step with no rows gets the nearest row (``empty="nearest"``) or zeros; either way its
    ``has_data`` is False.
    """
    values = np.asarray(values, np.float32)
    times = np.asarray(times, np.float64).reshape(-1, 2)
    steps = np.asarray(steps, np.float64).reshape(-1, 2)
    if groups is None:
        groups = overlap_ranges(times, steps) if len(times) else (np.zeros(len(steps), int), np.zeros(len(steps), int))
    if groups is not None:
        lo, hi = groups
        out = _pool_ranges(values, lo, hi, how)
        has = hi > lo
    else:
        members = overlap_matrix(times, steps)
        out = _pool_matrix(values, members, how)
        has = members.any(axis=1)
    if empty == "nearest" and len(values) and not has.all():
        miss = np.flatnonzero(~has)
        out[miss] = values[nearest_rows(times, steps[miss])]
    return out, has


def word_groups(word_index: np.ndarray, n_words: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Each word's word-piece rows as ranges ``[lo, hi)`` (pieces are in word order); None if not."""
    wi = np.asarray(word_index).astype(np.int64)
    real = np.flatnonzero(wi >= 0)
    if len(real) and (np.any(np.diff(wi[real]) < 0) or np.any(np.diff(real) != 1)):
        return None
    base = real[0] if len(real) else 0
    words = np.arange(n_words)
    lo = np.searchsorted(wi[real], words, side="left") + base
    hi = np.searchsorted(wi[real], words, side="right") + base
    return lo, hi


# -- planning -------------------------------------------------------------------------------
@dataclass
class ModalitySource:
    """One modality of a view: its feature set and, per clip, the index row to read (or why not)."""

    modality: str
    feature_set: str
    attrs: dict[str, Any]
    rows: list[IndexRow | None]  # per clip (clip order): latest committed index row if usable
    status: list[str]  # per clip: ok | absent | missing | stale | empty
    L: int = 0  # noqa: N815

    @property
    def dim(self) -> int:
        return int(self.attrs["dim"])

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.status:
            out[s] = out.get(s, 0) + 1
        return out


@dataclass
class AlignPlan:
    """Everything decided before any feature is read: sets, grids, L, fingerprint, up-to-date."""

    store: FeatureStore
    config: AlignConfig
    clips: list[dict[str, Any]]
    sources: dict[str, ModalitySource]
    grids: list[np.ndarray] | None  # per clip step spans (word/window grids)
    fingerprint: str
    existing_fingerprint: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        return self.existing_fingerprint == self.fingerprint

    @property
    def lengths(self) -> dict[str, int]:
        return {m: s.L for m, s in self.sources.items()}


@dataclass
class AlignSummary:
    view: str
    url: str
    fingerprint: str
    changed: bool
    grid: str
    clips: int
    L: dict[str, int]  # noqa: N815
    feature_sets: dict[str, str]
    present: dict[str, int]
    missing: dict[str, dict[str, int]]  # modality -> {absent, missing, stale, empty: clips}
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        if not self.changed:
            return f"view {self.view!r} is up to date (fingerprint {self.fingerprint[:12]}); nothing to do"
        lens = ", ".join(f"{m} L={n}" for m, n in self.L.items())
        return (f"view {self.view!r} aligned: {self.clips} clips on the {self.grid} grid ({lens}) "
                f"in {self.wall_seconds:.1f} s -> {self.url}")


def resolve_feature_sets(store: FeatureStore, cfg: AlignConfig) -> dict[str, str]:
    """modality -> feature-set name, from ``cfg.feature_sets`` over the defaults (see AlignConfig)."""
    names = set(store.feature_set_names())
    out: dict[str, str] = {}
    for m in MODALITIES:
        explicit = m in cfg.feature_sets
        want = cfg.feature_sets.get(m) if explicit else DEFAULT_EXTRACTORS[m]  # type: ignore[call-overload]
        if want is None:
            continue
        if want in names:
            name = want
        else:
            sets = [s for s in store.sets_for(want) if s.index().num_rows] or store.sets_for(want)
            if not sets:
                if explicit:
                    known = ", ".join(sorted(names)) or "none"
                    raise ConfigError(f"align.feature_sets.{m}: no feature set or extractor {want!r} in "
                                      f"{store.url} (sets: {known})")
                continue
            name = sets[0].name
        modality = store.feature_set(name).attrs.get("modality")
        if modality != m:
            raise ConfigError(f"align.feature_sets.{m}: set {name!r} holds {modality} features, not {m}")
        out[m] = name
    return out


def modality_source(store: FeatureStore, modality: str, name: str, clips: list[dict[str, Any]]) -> ModalitySource:
    """Per clip (clip-table order): the set's latest committed index row when it is usable, and a
    status — ``ok``, ``absent`` (the extractor recorded a missing modality), ``missing`` (never
    committed, e.g. failed), ``stale`` (committed for an older media file or transcript), ``empty``."""
    fset = store.feature_set(name)
    attrs = fset.attrs
    by_clip = fset.rows()
    rows: list[IndexRow | None] = []
    status: list[str] = []
    for clip in clips:
        r = by_clip.get(clip["clip_id"])
        if r is None:
            rows.append(None)
            status.append("missing")
        elif r.fingerprint != feature_fingerprint(clip, modality, attrs.get("identity", {})):
            rows.append(None)  # committed for an older media file or transcript: not this clip any more
            status.append("stale")
        elif r.absent:
            rows.append(None)
            status.append("absent")
        elif not r.length:
            rows.append(None)
            status.append("empty")
        else:
            rows.append(r)
            status.append("ok")
    return ModalitySource(modality, name, attrs, rows, status)


def _percentile_len(lengths: list[int], q: float) -> int:
    return max(1, int(math.ceil(float(np.percentile(np.asarray(lengths, np.float64), q))))) if lengths else 1


def _train_positions(clips: list[dict[str, Any]]) -> list[int]:
    train = [i for i, c in enumerate(clips) if c["split"] == "train"]
    return train or list(range(len(clips)))


def plan_alignment(store: FeatureStore | str, cfg: AlignConfig | None = None) -> AlignPlan:
    """Resolve feature sets, per-clip sources, grids, L and the view fingerprint; reads no features."""
    store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    cfg = cfg or AlignConfig()
    clips = store.clips().to_pylist()
    if not clips:
        raise StoreError(f"{store.url}: the clip table is empty; run `emoflow ingest` first")
    sets = resolve_feature_sets(store, cfg)
    if not sets:
        raise ConfigError(f"{store.url}: no text.bert, audio.mfcc or vision.cnn feature set to align; "
                          "run `emoflow extract` first (or name sets in align.feature_sets)")
    sources = {m: modality_source(store, m, name, clips) for m, name in sets.items()}
    notes = [f"{m}: not aligned (no {DEFAULT_EXTRACTORS[m]} feature set in the store)"
             for m in MODALITIES if m not in sets and m not in cfg.feature_sets]
    train = _train_positions(clips)
    grids: list[np.ndarray] | None = None
    if cfg.grid == "none":
        for m, src in sources.items():
            fixed = cfg.L_for(m)
            lens = [r.length for r in (src.rows[i] for i in train) if r is not None]
            src.L = int(fixed) if fixed else _percentile_len(lens, cfg.percentile)
    else:
        grids = [clip_grid(c, cfg) for c in clips]
        common = _percentile_len([len(grids[i]) for i in train], cfg.percentile)
        for m, src in sources.items():
            fixed = cfg.L_for(m)
            src.L = int(fixed) if fixed else common
        if len({s.L for s in sources.values()}) > 1:
            raise ConfigError(f"align.max_len: the {cfg.grid} grid is shared, so every modality needs the same L "
                              f"(got {[(m, s.L) for m, s in sources.items()]}); give one int")
    fingerprint = hash_obj(
        {
            "version": ALIGN_VERSION,
            "config": cfg.model_dump(mode="json", exclude={"view", "feature_sets"}),
            "L": {m: s.L for m, s in sources.items()},
            "clips": [[c["clip_id"], c["clip_fingerprint"], c["label"], c["split"], c["duration"]] for c in clips],
            "modalities": {
                m: {"feature_set": s.feature_set,
                    "fingerprints": [r.fingerprint if r else st for r, st in zip(s.rows, s.status)]}
                for m, s in sources.items()
            },
        },
        length=64,
    )
    try:
        existing: str | None = open_view(store, cfg.view).fingerprint
    except StoreError:
        existing = None
    for m, src in sources.items():
        bad = {k: v for k, v in src.counts().items() if k != "ok"}
        if bad:
            notes.append(f"{m}: {', '.join(f'{v} {k}' for k, v in sorted(bad.items()))} clip(s) kept, masked")
    return AlignPlan(store, cfg, clips, sources, grids, fingerprint, existing, notes)


# -- building -------------------------------------------------------------------------------
def _iter_clip_features(
    store: FeatureStore, src: ModalitySource, extras: tuple[str, ...]
) -> Iterator[tuple[int, ClipFeatures]]:
    """Yield ``(clip position, features)`` for every usable clip, reading each shard's range once."""
    pos = {r.clip_id: i for i, r in enumerate(src.rows) if r is not None}
    rows = [r for r in src.rows if r is not None]
    for row, feat in store.feature_set(src.feature_set).iter_features(rows, extras):
        yield pos[row.clip_id], feat


def _train_stats(values: np.ndarray, mask: np.ndarray, positions: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-dimension mean and std over the masked steps of ``positions`` (non-finite values skipped),
    combined clip by clip so no [steps, D] copy of the whole split is made."""
    mom = Moments(values.shape[2])
    for i in positions:
        mom.add(values[i][mask[i]])
    std = mom.std()
    std = np.where(std < STD_FLOOR, 1.0, std)
    return mom.mean.astype(np.float32), std.astype(np.float32), mom.rows


def text_model_path(set_config: dict[str, Any]) -> str | None:
    """The local model folder a text set was extracted with (what fine-tuning must load)."""
    if set_config.get("model"):
        return str(set_config["model"])
    try:
        from features.text import default_model_path

        return str(default_model_path())
    except Exception:  # noqa: BLE001 - the package may be missing where only training runs
        return None


def build_view(plan: AlignPlan) -> AlignSummary:
    """Read each source's shards once, pool clip by clip into preallocated arrays, write the view."""
    t0 = time.perf_counter()
    cfg, clips, store = plan.config, plan.clips, plan.store
    n = len(clips)
    train = [i for i, c in enumerate(clips) if c["split"] == "train"]
    arrays: dict[str, np.ndarray] = {}
    modalities: dict[str, dict[str, Any]] = {}
    for m, src in plan.sources.items():
        L, dim = src.L, src.dim
        values = np.zeros((n, L, dim), np.float32)
        mask = np.zeros((n, L), bool)
        filled = np.zeros((n, L), bool)
        lengths = np.zeros(n, np.int32)
        present = np.array([r is not None for r in src.rows], bool)
        if plan.grids is not None:
            lengths[:] = [min(len(g), L) for g in plan.grids]
        text_tokens = m == "text"
        extras = ("word_index", "input_ids", "attention_mask") if text_tokens else ()
        token_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for pos, feat in _iter_clip_features(store, src, extras):
            v, t, ex = feat.values, feat.times, feat.extras
            if text_tokens and "input_ids" in ex:
                am = ex.get("attention_mask", np.ones(len(v), np.int32))
                token_rows[pos] = (ex["input_ids"].astype(np.int32), am.astype(np.int32))
            if cfg.grid == "none":
                k = min(len(v), L)
                values[pos, :k] = v[:k]
                mask[pos, :k] = filled[pos, :k] = True
                lengths[pos] = k
                continue
            steps = plan.grids[pos][:L]  # type: ignore[index]
            groups = None
            if text_tokens:
                wi = ex.get("word_index")
                if wi is None:
                    wi = np.zeros(len(v), np.int64)  # no word mapping stored: treat rows as words' pieces
                real = wi >= 0
                if cfg.grid == "word":
                    groups = word_groups(wi, len(plan.grids[pos]))  # type: ignore[index]
                    if groups is not None:
                        groups = (groups[0][:L], groups[1][:L])
                # specials ([CLS]/[SEP]) span the whole clip: they would leak into every step
                v, t = v[real], t[real]
                if groups is not None:
                    base = int(np.flatnonzero(real)[0]) if real.any() else 0
                    groups = (groups[0] - base, groups[1] - base)
            if not len(v):
                continue
            pooled, has = pool(v, t, steps, cfg.pooling, cfg.empty, groups=groups)
            k = len(steps)
            values[pos, :k] = pooled
            mask[pos, :k] = has
            filled[pos, :k] = True if cfg.empty == "nearest" else has
        stat_pos = [i for i in train if present[i]] or [i for i in range(n) if present[i]]
        stats_split = "train" if any(present[i] for i in train) else ("all" if stat_pos else "none")
        mean, std, stat_steps = _train_stats(values, mask, stat_pos)
        if cfg.normalize:
            values[filled] = (values[filled] - mean) / std
        arrays.update({f"{m}/values": values, f"{m}/lengths": lengths, f"{m}/present": present,
                       f"{m}/mask": mask, f"{m}/mean": mean, f"{m}/std": std})
        modalities[m] = {
            "dim": dim, "L": L, "feature_set": src.feature_set, "extractor": src.attrs.get("extractor"),
            "identity": src.attrs.get("identity"), "config": src.attrs.get("config"),
            "clips": src.counts(), "stats_split": stats_split, "stats_steps": stat_steps,
        }
        if text_tokens:
            T = max([len(ids) for ids, _ in token_rows.values()], default=1)  # noqa: N806
            ids = np.zeros((n, T), np.int32)
            att = np.zeros((n, T), np.int32)
            for pos, (i_, a_) in token_rows.items():
                ids[pos, : len(i_)] = i_
                att[pos, : len(a_)] = a_
            arrays["text_tokens/input_ids"] = ids
            arrays["text_tokens/attention_mask"] = att
            modalities[m]["tokens"] = {"T": T, "pad_id": 0}
    table = pa.table(
        {
            "row": pa.array(range(n), pa.int64()),
            "clip_id": [c["clip_id"] for c in clips],
            "label": pa.array([c["label"] for c in clips], pa.float64()),
            "split": [c["split"] for c in clips],
        }
    )
    text_set = plan.sources.get("text")
    attrs = {
        "fingerprint": plan.fingerprint,
        "align_version": ALIGN_VERSION,
        "grid": cfg.grid,
        "config": cfg.model_dump(mode="json"),
        "modalities": modalities,
        "normalized": cfg.normalize,
        "text_model_path": text_model_path(text_set.attrs.get("config", {})) if text_set else None,
        "n_clips": n,
        "created": now_utc().isoformat(),
    }
    write_view(store, cfg.view, arrays, table, attrs)
    summary = _summary(plan, changed=True)
    summary.wall_seconds = time.perf_counter() - t0
    log.info("%s", summary.message)
    return summary


def _summary(plan: AlignPlan, changed: bool) -> AlignSummary:
    return AlignSummary(
        view=plan.config.view,
        url=f"{plan.store.url}/aligned/{plan.config.view}",
        fingerprint=plan.fingerprint,
        changed=changed,
        grid=plan.config.grid,
        clips=len(plan.clips),
        L=plan.lengths,
        feature_sets={m: s.feature_set for m, s in plan.sources.items()},
        present={m: s.counts().get("ok", 0) for m, s in plan.sources.items()},
        missing={m: {k: v for k, v in s.counts().items() if k != "ok"} for m, s in plan.sources.items()},
        notes=list(plan.notes),
    )


def align_view(store: FeatureStore | str, cfg: AlignConfig | None = None, force: bool = False) -> AlignSummary:
    """Plan, and build the view unless one with the same fingerprint exists (then a no-op)."""
    plan = plan_alignment(store, cfg)
    if plan.up_to_date and not force:
        summary = _summary(plan, changed=False)
        log.info("%s", summary.message)
        return summary
    return build_view(plan)
