"""Planning and building an aligned view from the store's feature sets (reads shards once)."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zarr

from features.align.config import ALIGN_VERSION, DEFAULT_EXTRACTORS, AlignConfig
from features.align.grid import clip_grid, grid_lengths, pool, word_groups
from store import FeatureStore
from store.errors import ConfigError, StoreError
from store.featureset import ClipFeatures, IndexRow
from store.fingerprint import MODALITY_INPUTS, Canonical, canonical_column, feature_fingerprints, hash_obj
from store.ids import now_utc
from store.moments import Moments
from store.schema import CLASS_LABELS, MODALITIES, STD_FLOOR
from store.views import VIEW_SHARD, ViewWriter, open_view

log = logging.getLogger(__name__)


STATUSES = ("ok", "absent", "missing", "stale", "empty")  # a clip's state in one modality (codes 0..4)


@dataclass
class ModalitySource:
    """One modality of a view: its feature set and, per clip, the index row to read (or why not).

    Per-clip facts are arrays and index rows stay in the set's Arrow index until a build reads them:
    planning an unchanged view over 10^6 clips needs their fingerprints, not 10^6 row objects."""

    modality: str
    feature_set: str
    attrs: dict[str, Any]
    status: np.ndarray  # [clips] uint8: index into STATUSES
    index: pa.Table  # the set's latest committed row per clip
    positions: np.ndarray  # [clips] int64: the usable row's position in ``index``; -1 when not usable
    fingerprints: pa.Array  # [clips] string: the usable row's fingerprint, else the status name
    lengths: np.ndarray  # [clips] int64: the usable row's length (rows), 0 when not usable
    L: int = 0

    @property
    def dim(self) -> int:
        return int(self.attrs["dim"])

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.status, minlength=len(STATUSES))
        return {STATUSES[k]: int(c) for k, c in enumerate(found) if c}

    @property
    def usable(self) -> np.ndarray:
        """[clips] bool: the clip has a usable row."""
        return self.positions >= 0


@dataclass
class AlignPlan:
    """Everything decided before any feature is read: sets, grid step counts, L, fingerprint, up-to-date."""

    store: FeatureStore
    config: AlignConfig
    clips: pa.Table  # the clip table, in view row order
    sources: dict[str, ModalitySource]
    steps: np.ndarray | None  # [clips] int64: steps of each clip's word/window grid (None: grid none)
    fingerprint: str
    existing_fingerprint: str | None
    notes: list[str] = field(default_factory=list)
    #: modality -> (mean, std) to normalise with instead of this store's train split: new data is
    #: scored with the statistics of the view a model was trained on (stages.predict)
    stats: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def up_to_date(self) -> bool:
        return self.existing_fingerprint == self.fingerprint

    @property
    def n(self) -> int:
        return self.clips.num_rows

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
    L: dict[str, int]
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
        want = cfg.feature_sets.get(m) if explicit else DEFAULT_EXTRACTORS[m]
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


def modality_source(
    store: FeatureStore, modality: str, name: str, clips: pa.Table, fingerprints: list[str] | None = None,
) -> ModalitySource:
    """Per clip (clip-table order): the set's latest committed index row when it is usable, and a
    status — ``ok``, ``absent`` (the extractor recorded a missing modality), ``missing`` (never
    committed, e.g. failed), ``stale`` (committed for an older media file or transcript), ``empty``.
    ``fingerprints``: the clips' feature fingerprints for this set, when the caller has them (from
    ``FeatureStore.clip_fingerprints``); else they are computed. Column-wise: 10^6 clips in Arrow."""
    fset = store.feature_set(name)
    attrs = fset.attrs
    if fingerprints is None:
        columns = {k: clips.column(k).to_pylist() for k in MODALITY_INPUTS[modality]}
        fingerprints = feature_fingerprints(columns, modality, attrs.get("identity", {}))
    index = fset.index()
    found = pc.index_in(clips.column("clip_id"), value_set=index.column("clip_id"))
    committed = found.is_valid().to_numpy(zero_copy_only=False)
    at = pa.array(found.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64))
    fp = index.column("fingerprint").take(at)
    fresh = pc.equal(fp, pa.array(fingerprints, pa.string())).to_numpy(zero_copy_only=False)
    absent = pc.greater(pc.utf8_length(index.column("absent").take(at)), 0).fill_null(False)
    length = index.column("length").take(at).to_numpy(zero_copy_only=False).astype(np.int64)
    status = np.select(
        [~committed, ~fresh, absent.to_numpy(zero_copy_only=False), length == 0],
        [STATUSES.index("missing"), STATUSES.index("stale"), STATUSES.index("absent"), STATUSES.index("empty")],
        STATUSES.index("ok"),
    ).astype(np.uint8)
    ok = status == 0
    positions = np.where(ok, at.to_numpy(), -1)
    named = pa.array(np.asarray(STATUSES, object)[status], pa.string())
    return ModalitySource(modality, name, attrs, status, index, positions,
                          pc.if_else(pa.array(ok), fp, named), np.where(ok, length, 0))


def _percentile_len(lengths: np.ndarray, q: float) -> int:
    return max(1, int(math.ceil(float(np.percentile(np.asarray(lengths, np.float64), q))))) if len(lengths) else 1


def _train_mask(clips: pa.Table) -> np.ndarray:
    """[clips] bool: the train split's clips (whose statistics normalise the view)."""
    return pc.equal(clips.column("split"), "train").fill_null(False).to_numpy(zero_copy_only=False)


def _clip_rows(clips: pa.Table) -> Canonical:
    """The view fingerprint's row per clip: id, clip fingerprint, label, split, duration, and the class
    labels as one mapping when the clip has any (nothing otherwise, so fingerprints of views without
    class labels stay what they were before class labels existed). Built column by column."""
    cols = [canonical_column(clips.column(k)) for k in ("clip_id", "clip_fingerprint", "label", "split", "duration")]
    rows = Canonical(zip(*cols))  # tuples: JSON arrays, as lists would be
    labelled = np.flatnonzero(np.any([clips.column(k).is_valid().to_numpy(zero_copy_only=False)
                                      for k in CLASS_LABELS], axis=0))
    if len(labelled):
        classes = [clips.column(k).take(pa.array(labelled)).to_pylist() for k in CLASS_LABELS]
        for i, labels in zip(labelled, zip(*classes)):
            rows[i] = (*rows[i], {k: v for k, v in zip(CLASS_LABELS, labels) if v is not None})
    return rows


def plan_alignment(
    store: FeatureStore | str, cfg: AlignConfig | None = None,
    stats: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> AlignPlan:
    """Resolve feature sets, per-clip sources, grid step counts, L and the view fingerprint; reads no features.

    ``stats`` fixes each modality's normalisation (mean, std) instead of computing it from the train
    split; it is part of the fingerprint.
    """
    store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    cfg = cfg or AlignConfig()
    clips, digest = store.clips_with_digest()
    if not clips.num_rows:
        raise StoreError(f"{store.url}: the clip table is empty; run `emoflow ingest` first")
    sets = resolve_feature_sets(store, cfg)
    if not sets:
        raise ConfigError(f"{store.url}: no text.bert, audio.mfcc or vision.cnn feature set to align; "
                          "run `emoflow extract` first (or name sets in align.feature_sets)")
    sources = {
        m: modality_source(store, m, name, clips, store.clip_fingerprints(
            name, m, store.feature_set(name).attrs.get("identity", {}), clips, digest))
        for m, name in sets.items()
    }
    notes = [f"{m}: not aligned (no {DEFAULT_EXTRACTORS[m]} feature set in the store)"
             for m in MODALITIES if m not in sets and m not in cfg.feature_sets]
    train = _train_mask(clips)
    if not train.any():
        train[:] = True  # no train split: L from every clip
    steps: np.ndarray | None = None
    if cfg.grid == "none":
        for m, src in sources.items():
            fixed = cfg.L_for(m)
            src.L = int(fixed) if fixed else _percentile_len(src.lengths[train & src.usable], cfg.percentile)
    else:
        steps = grid_lengths(clips, cfg)
        common = _percentile_len(steps[train], cfg.percentile)
        for m, src in sources.items():
            fixed = cfg.L_for(m)
            src.L = int(fixed) if fixed else common
        if len({s.L for s in sources.values()}) > 1:
            raise ConfigError(f"align.max_len: the {cfg.grid} grid is shared, so every modality needs the same L "
                              f"(got {[(m, s.L) for m, s in sources.items()]}); give one int")
    stat_hashes = {m: [hashlib.sha256(np.ascontiguousarray(v, np.float32).tobytes()).hexdigest() for v in mv]
             for m, mv in sorted((stats or {}).items())}
    fingerprint = hash_obj(
        {
            **({"stats": stat_hashes} if stats is not None else {}),  # absent otherwise: old fingerprints hold
            "version": ALIGN_VERSION,
            "config": cfg.model_dump(mode="json", exclude={"view", "feature_sets"}),
            "L": {m: s.L for m, s in sources.items()},
            "clips": _clip_rows(clips),
            "modalities": {
                m: {"feature_set": s.feature_set, "fingerprints": canonical_column(s.fingerprints)}
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
    missing_stats = [m for m in sources if stats is not None and m not in stats]
    if missing_stats:
        raise ConfigError(f"fixed normalisation statistics lack modalities {missing_stats}")
    return AlignPlan(store, cfg, clips, sources, steps, fingerprint, existing, notes, stats)


# -- building -------------------------------------------------------------------------------
def _iter_clip_features(
    store: FeatureStore, src: ModalitySource, extras: tuple[str, ...], b0: int, b1: int
) -> Iterator[tuple[int, ClipFeatures]]:
    """Yield ``(clip position, features)`` for every usable clip of ``[b0, b1)``, reading each
    shard's range once."""
    wanted = b0 + np.flatnonzero(src.positions[b0:b1] >= 0)
    records = src.index.take(pa.array(src.positions[wanted], pa.int64())).to_pylist()
    rows = [IndexRow.from_record(r) for r in records]
    pos = {r.clip_id: int(i) for i, r in zip(wanted, rows)}
    for row, feat in store.feature_set(src.feature_set).iter_features(rows, extras):
        if feat.values.ndim != 2 or feat.values.shape[1] != src.dim:
            # a damaged set (rows committed by another extractor version, or edited by hand): numpy
            # would fail later with a bare broadcast error naming neither the clip nor the set
            raise StoreError(
                f"feature set {src.feature_set!r}: clip {row.clip_id!r} has rows of shape "
                f"{tuple(feat.values.shape[1:])}, the set declares dim {src.dim}; the set is damaged "
                f"(`emoflow extract --force` with its extractor computes it again, or name another set "
                f"in align.feature_sets.{src.modality})")
        yield pos[row.clip_id], feat


def _signal_rows(feat: ClipFeatures, row_mask: str | None) -> tuple[np.ndarray, int]:
    """The rows that carry signal ([rows] bool) and how many rows were non-finite. A row carries
    signal when the set's row mask (if any) flags it True and every value and both times are finite:
    a NaN or inf row (an extractor's or an imported file's) would put NaN into every step it overlaps
    and into the normalised view, and a NaN time cannot be placed on the grid. Such rows are left
    out like a faceless frame, and counted."""
    finite = np.isfinite(feat.values).all(axis=1) & np.isfinite(feat.times).all(axis=1)
    keep = finite & feat.extras[row_mask].astype(bool) if row_mask and row_mask in feat.extras else finite
    return keep, int(len(finite) - finite.sum())


def _stats(mom: Moments) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-dimension mean and std of the folded-in rows (a std under the floor becomes 1)."""
    std = mom.std()
    std = np.where(std < STD_FLOOR, 1.0, std)
    return mom.mean.astype(np.float32), std.astype(np.float32), mom.rows


def extraction_model_path(set_config: dict[str, Any], extractor: str | None = "text.bert") -> str | None:
    """The local model folder a text set was extracted with (what fine-tuning must load); only
    ``text.bert`` has a default model: a set of another extractor (one imported from an MMSA file)
    names its model or has none."""
    if set_config.get("model"):
        return str(set_config["model"])
    if extractor not in (None, "text.bert"):
        return None
    try:
        from features.extractors.packaged import default_model_path

        return str(default_model_path())
    except Exception:  # the package may be missing where only training runs
        return None


#: decoded values of one modality held in memory at once while a view is built (MB); a larger view
#: is built in blocks of whole view shards, written raw, then normalised block by block
ALIGN_BLOCK_MB = 512


def build_view(plan: AlignPlan, block_mb: float = ALIGN_BLOCK_MB) -> AlignSummary:
    """Read each source's shards once, pool clip by clip, write the view.

    Memory is bounded by ``block_mb`` of values per modality, not by the number of clips: clips are
    pooled in blocks (of whole view shards) in clip order, each block's grids, masks and token ids
    are made and written with it, the train statistics are folded in clip by clip in that order,
    and a view that does not fit one block is written raw and normalised in a second pass. Per clip
    only a few numbers stay in memory (lengths, flags: ≈ 40 bytes) besides the clip table in Arrow.
    The result does not depend on the block size, value for value.
    """
    t0 = time.perf_counter()
    with ViewWriter(plan.store, plan.config.view, plan.n) as writer:
        _write_view(writer, plan, block_mb)
    summary = _summary(plan, changed=True)
    summary.wall_seconds = time.perf_counter() - t0
    log.info("%s", summary.message)
    return summary


def _write_view(writer: ViewWriter, plan: AlignPlan, block_mb: float) -> None:
    """Every modality's arrays, the view's clip table and ``view.json`` (``build_view``)."""
    cfg, clips, n = plan.config, plan.clips, plan.n
    train = _train_mask(clips)
    modalities = {m: _align_modality(writer, plan, m, src, train, block_mb) for m, src in plan.sources.items()}
    table = pa.table(
        {
            "row": pa.array(np.arange(n, dtype=np.int64)),
            "clip_id": clips.column("clip_id"),
            "label": clips.column("label").cast(pa.float64()),
            "split": clips.column("split"),
            **{k: clips.column(k).cast(pa.string()) for k in CLASS_LABELS},
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
        "text_model_path": (extraction_model_path(text_set.attrs.get("config", {}), text_set.attrs.get("extractor"))
                            if text_set else None),
        "n_clips": n,
        "created": now_utc().isoformat(),
    }
    writer.finish(table, attrs)


def _block_size(n: int, L: int, dim: int, block_mb: float) -> int:  # noqa: N803
    """Clips per block: all of them when they fit ``block_mb``, else whole view shards."""
    fit = int(block_mb * 2**20 // max(1, L * dim * 4))
    return max(1, n) if fit >= n else max(VIEW_SHARD, fit // VIEW_SHARD * VIEW_SHARD)


def _block_grids(plan: AlignPlan, b0: int, b1: int) -> list[np.ndarray] | None:
    """The step spans of clips ``[b0, b1)`` (None for grid none): made per block, never for all clips."""
    if plan.steps is None:
        return None
    rows = plan.clips.slice(b0, b1 - b0).select(["duration", "words", "text"]).to_pylist()
    return [clip_grid(r, plan.config) for r in rows]


def _token_width(store: FeatureStore, src: ModalitySource) -> int | None:
    """The view's token-id width T when the text set stores token ids (each row is one token, so T
    is the longest usable clip), else None."""
    usable = np.flatnonzero(src.usable)
    if not len(usable):
        return 1
    shard = src.index.column("shard")[int(src.positions[usable[0]])].as_py()
    if "input_ids" not in store.feature_set(src.feature_set).extra_names(shard):
        return None
    return int(src.lengths.max())


def _align_modality(writer: ViewWriter, plan: AlignPlan, m: str, src: ModalitySource, train: np.ndarray,
                    block_mb: float) -> dict[str, Any]:
    """Pool one modality of every clip onto the view's grid, write its arrays; returns its attrs.
    ``train``: [clips] bool, the clips whose statistics normalise the view."""
    cfg, store = plan.config, plan.store
    n = plan.n
    L, dim = src.L, src.dim  # noqa: N806 - L is the name everyone uses
    block = _block_size(n, L, dim, block_mb)
    lengths = np.zeros(n, np.int32)
    span = np.zeros(n, np.int32)  # steps past the mask that normalisation fills (empty="nearest")
    present = src.usable.copy()
    if plan.steps is not None:
        lengths[:] = np.minimum(plan.steps, L)
    text_tokens = m == "text"
    row_mask = src.attrs.get("row_mask")  # rows flagged False carry no signal (faceless frames)
    extras = ("word_index", "input_ids", "attention_mask") if text_tokens else ()
    extras += (row_mask,) if row_mask else ()
    no_signal = 0  # clips with no row that carries signal (all flagged False, or all non-finite)
    nonfinite: dict[str, int] = {}  # clip -> rows left out for NaN/inf values or times
    T = _token_width(store, src) if text_tokens else None  # noqa: N806
    tokens = (writer.create("text_tokens/input_ids", (n, T or 1), np.int32),
              writer.create("text_tokens/attention_mask", (n, T or 1), np.int32)) if text_tokens else None
    train_moments, all_moments = Moments(dim), Moments(dim)  # all clips: the fallback of a view with no train clip
    any_train = False
    values_arr = writer.create(f"{m}/values", (n, L, dim), np.float32)
    mask_arr = writer.create(f"{m}/mask", (n, L), np.bool_)
    held: tuple[np.ndarray, np.ndarray] | None = None  # the last block's values and filled steps, still in memory
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        grids = _block_grids(plan, b0, b1)
        values = np.zeros((b1 - b0, L, dim), np.float32)
        mask = np.zeros((b1 - b0, L), bool)
        ids = np.zeros((b1 - b0, T or 1), np.int32)
        att = np.zeros((b1 - b0, T or 1), np.int32)
        for pos, feat in _iter_clip_features(store, src, extras, b0, b1):
            r = pos - b0
            ex = feat.extras
            keep, bad = _signal_rows(feat, row_mask)
            if bad:
                nonfinite[feat.clip_id] = bad
            if not keep.any():  # no row with signal: the modality is absent for this clip
                present[pos] = False
                no_signal += 1
                continue
            v, t = feat.values[keep], feat.times[keep]
            if T and "input_ids" in ex:
                i_, a_ = ex["input_ids"], ex.get("attention_mask", np.ones(len(v), np.int32))
                ids[r, : len(i_)] = i_
                att[r, : len(a_)] = a_
            if grids is None:
                k = min(len(v), L)
                values[r, :k] = v[:k]
                mask[r, :k] = True
                lengths[pos] = k
                continue
            steps = grids[r][:L]
            groups = None
            if text_tokens:
                v, t, groups = _word_pieces(v, t, ex, keep, len(grids[r]), L, cfg.grid == "word")
            if not len(v):
                continue
            pooled, has = pool(v, t, steps, cfg.pooling, cfg.empty, groups=groups)
            k = len(steps)
            values[r, :k] = pooled
            mask[r, :k] = has
            if cfg.empty == "nearest":
                span[pos] = k
        if plan.stats is None:  # clip by clip, in clip order: the same sums whatever the block size
            for i in range(b0, b1):
                if present[i] and train[i]:
                    train_moments.add(values[i - b0][mask[i - b0]])
                    any_train = True
                elif present[i] and not any_train:
                    all_moments.add(values[i - b0][mask[i - b0]])  # used only if no train clip is present
        writer.write_block(mask_arr, b0, mask)
        if tokens is not None:
            writer.write_block(tokens[0], b0, ids)
            writer.write_block(tokens[1], b0, att)
        if b1 < n or not cfg.normalize:
            writer.write_block(values_arr, b0, values)
        else:
            held = values, _filled(mask, span[b0:b1])
    if plan.stats is not None:
        mean, std = (np.asarray(a, np.float32) for a in plan.stats[m])
        stats_split, stat_steps = "fixed", 0
    elif present[train].any():
        stats_split = "train"
        mean, std, stat_steps = _stats(train_moments)
    else:
        stats_split = "all" if present.any() else "none"
        mean, std, stat_steps = _stats(all_moments)
    if cfg.normalize:
        _normalise(writer, values_arr, mask_arr, span, block, held, mean, std)
    for key, arr in ((f"{m}/lengths", lengths), (f"{m}/present", present), (f"{m}/mean", mean), (f"{m}/std", std)):
        writer.write(key, arr)
    attrs = {
        "dim": dim, "L": L, "feature_set": src.feature_set, "extractor": src.attrs.get("extractor"),
        "identity": src.attrs.get("identity"), "config": src.attrs.get("config"),
        "clips": src.counts(), "stats_split": stats_split, "stats_steps": stat_steps,
        "no_signal_clips": no_signal, "nonfinite_rows": sum(nonfinite.values()),
    }
    if nonfinite:
        shown = ", ".join(f"{c!r} ({k})" for c, k in list(nonfinite.items())[:5])
        log.warning("%s: %d row(s) with NaN/inf values or times left out, in %d clip(s): %s%s", src.feature_set,
                    sum(nonfinite.values()), len(nonfinite), shown, " ..." if len(nonfinite) > 5 else "")
    if text_tokens:
        attrs["tokens"] = {"T": T or 1, "pad_id": 0}
    return attrs


def _word_pieces(
    v: np.ndarray, t: np.ndarray, extras: dict[str, np.ndarray], keep: np.ndarray, n_words: int, L: int,  # noqa: N803
    by_word: bool,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """A text clip's kept rows without the specials ([CLS]/[SEP] span the whole clip: they would leak
    into every step) and, on the word grid, each word's rows as ranges into what is left."""
    wi = extras["word_index"][keep] if "word_index" in extras else np.zeros(len(v), np.int64)  # none: all pieces
    real = wi >= 0
    groups = word_groups(wi, n_words) if by_word else None
    if groups is not None:
        base = int(np.flatnonzero(real)[0]) if real.any() else 0
        groups = (groups[0][:L] - base, groups[1][:L] - base)
    return v[real], t[real], groups


def _normalise(writer: ViewWriter, values_arr: zarr.Array, mask_arr: zarr.Array, span: np.ndarray, block: int,
               held: tuple[np.ndarray, np.ndarray] | None, mean: np.ndarray, std: np.ndarray) -> None:
    """Standardise the written values block by block (the last block, ``held``, still in memory), on
    the steps that hold a value (``_filled``); padding stays zero."""
    n = len(span)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        if held is not None and b1 == n:
            values, f = held
        else:
            values, f = np.asarray(values_arr[b0:b1]), _filled(np.asarray(mask_arr[b0:b1]), span[b0:b1])
        values[f] = (values[f] - mean) / std
        writer.write_block(values_arr, b0, values)


def _filled(mask: np.ndarray, span: np.ndarray) -> np.ndarray:
    """[clips, L] bool: the steps that hold a value (normalised): the masked ones, plus the steps a
    nearest-row fill gave a value to (``span``: how many, per clip)."""
    return mask | (np.arange(mask.shape[1]) < span[:, None])


def _summary(plan: AlignPlan, changed: bool) -> AlignSummary:
    return AlignSummary(
        view=plan.config.view,
        url=f"{plan.store.url}/aligned/{plan.config.view}",
        fingerprint=plan.fingerprint,
        changed=changed,
        grid=plan.config.grid,
        clips=plan.n,
        L=plan.lengths,
        feature_sets={m: s.feature_set for m, s in plan.sources.items()},
        present={m: s.counts().get("ok", 0) for m, s in plan.sources.items()},
        missing={m: {k: v for k, v in s.counts().items() if k != "ok"} for m, s in plan.sources.items()},
        notes=list(plan.notes),
    )


def align_view(
    store: FeatureStore | str, cfg: AlignConfig | None = None, force: bool = False,
    stats: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None, block_mb: float = ALIGN_BLOCK_MB,
) -> AlignSummary:
    """Plan, and build the view unless one with the same fingerprint exists (then a no-op);
    ``stats``: fixed normalisation statistics (see ``plan_alignment``); ``block_mb``: values held in
    memory per modality while building (``build_view``)."""
    plan = plan_alignment(store, cfg, stats)
    if plan.up_to_date and not force:
        summary = _summary(plan, changed=False)
        log.info("%s", summary.message)
        return summary
    return build_view(plan, block_mb)
