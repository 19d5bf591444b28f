"""Planning and building an aligned view from the store's feature sets (reads shards once)."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from features.align.config import ALIGN_VERSION, DEFAULT_EXTRACTORS, AlignConfig
from features.align.grid import clip_grid, pool, word_groups
from store import FeatureStore
from store.errors import ConfigError, StoreError
from store.featureset import ClipFeatures, IndexRow
from store.fingerprint import MODALITY_INPUTS, feature_fingerprints, hash_obj
from store.ids import now_utc
from store.moments import Moments
from store.schema import CLASS_LABELS, MODALITIES, STD_FLOOR
from store.views import VIEW_SHARD, ViewWriter, open_view

log = logging.getLogger(__name__)


@dataclass
class ModalitySource:
    """One modality of a view: its feature set and, per clip, the index row to read (or why not).

    Index rows stay in the set's Arrow index until a build reads them: planning an unchanged view
    over 10^6 clips needs their fingerprints, not 10^6 row objects."""

    modality: str
    feature_set: str
    attrs: dict[str, Any]
    status: list[str]  # per clip (clip order): ok | absent | missing | stale | empty
    index: pa.Table  # the set's latest committed row per clip
    positions: list[int]  # per clip: its usable row's position in ``index``; -1 when not usable
    fingerprints: list[str | None]  # per clip: its usable row's fingerprint
    lengths: list[int]  # per clip: its usable row's length (rows), 0 when not usable
    L: int = 0

    @property
    def dim(self) -> int:
        return int(self.attrs["dim"])

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.status))

    @property
    def usable(self) -> np.ndarray:
        """[clips] bool: the clip has a usable row."""
        return np.asarray(self.positions, np.int64) >= 0

    @functools.cached_property
    def rows(self) -> list[IndexRow | None]:
        """Every clip's usable row (None when not usable): for readers that want them all."""
        records = self.index.to_pylist()
        return [None if p < 0 else IndexRow.from_record(records[p]) for p in self.positions]


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
    #: modality -> (mean, std) to normalise with instead of this store's train split: new data is
    #: scored with the statistics of the view a model was trained on (stages.predict)
    stats: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None

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
    store: FeatureStore, modality: str, name: str, clips: list[dict[str, Any]],
    fingerprints: list[str] | None = None,
) -> ModalitySource:
    """Per clip (clip-table order): the set's latest committed index row when it is usable, and a
    status — ``ok``, ``absent`` (the extractor recorded a missing modality), ``missing`` (never
    committed, e.g. failed), ``stale`` (committed for an older media file or transcript), ``empty``.
    ``fingerprints``: the clips' feature fingerprints for this set, when the caller has them (from
    ``FeatureStore.clip_fingerprints``); else they are computed."""
    fset = store.feature_set(name)
    attrs = fset.attrs
    if fingerprints is None:
        columns = {k: [c.get(k) for c in clips] for k in MODALITY_INPUTS[modality]}
        fingerprints = feature_fingerprints(columns, modality, attrs.get("identity", {}))
    index = fset.index()
    cols = index.select(["clip_id", "fingerprint", "absent", "length"]).to_pydict()
    where = {c: k for k, c in enumerate(cols["clip_id"])}
    positions: list[int] = []
    status: list[str] = []
    for clip, fp in zip(clips, fingerprints):
        k = where.get(clip["clip_id"])
        if k is None:
            state = "missing"
        elif cols["fingerprint"][k] != fp:
            state = "stale"  # committed for an older media file or transcript: not this clip any more
        elif cols["absent"][k]:
            state = "absent"
        elif not cols["length"][k]:
            state = "empty"
        else:
            state = "ok"
        status.append(state)
        positions.append(k if state == "ok" and k is not None else -1)
    fps = [cols["fingerprint"][k] if k >= 0 else None for k in positions]
    lengths = [int(cols["length"][k]) if k >= 0 else 0 for k in positions]
    return ModalitySource(modality, name, attrs, status, index, positions, fps, lengths)


def _percentile_len(lengths: list[int], q: float) -> int:
    return max(1, int(math.ceil(float(np.percentile(np.asarray(lengths, np.float64), q))))) if lengths else 1


def _classes(clip: dict[str, Any]) -> list[dict[str, str]]:
    """A clip's class labels for the view fingerprint: nothing when it has none, so the fingerprints of
    views without class labels stay what they were before class labels existed."""
    classes = {k: clip[k] for k in CLASS_LABELS if clip.get(k) is not None}
    return [classes] if classes else []


def _train_positions(clips: list[dict[str, Any]]) -> list[int]:
    train = [i for i, c in enumerate(clips) if c["split"] == "train"]
    return train or list(range(len(clips)))


def plan_alignment(
    store: FeatureStore | str, cfg: AlignConfig | None = None,
    stats: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> AlignPlan:
    """Resolve feature sets, per-clip sources, grids, L and the view fingerprint; reads no features.

    ``stats`` fixes each modality's normalisation (mean, std) instead of computing it from the train
    split; it is part of the fingerprint.
    """
    store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    cfg = cfg or AlignConfig()
    table, digest = store.clips_with_digest()
    clips = table.to_pylist()
    if not clips:
        raise StoreError(f"{store.url}: the clip table is empty; run `emoflow ingest` first")
    sets = resolve_feature_sets(store, cfg)
    if not sets:
        raise ConfigError(f"{store.url}: no text.bert, audio.mfcc or vision.cnn feature set to align; "
                          "run `emoflow extract` first (or name sets in align.feature_sets)")
    sources = {
        m: modality_source(store, m, name, clips, store.clip_fingerprints(
            name, m, store.feature_set(name).attrs.get("identity", {}), table, digest))
        for m, name in sets.items()
    }
    notes = [f"{m}: not aligned (no {DEFAULT_EXTRACTORS[m]} feature set in the store)"
             for m in MODALITIES if m not in sets and m not in cfg.feature_sets]
    train = _train_positions(clips)
    grids: list[np.ndarray] | None = None
    if cfg.grid == "none":
        for m, src in sources.items():
            fixed = cfg.L_for(m)
            lens = [src.lengths[i] for i in train if src.positions[i] >= 0]
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
    stat_hashes = {m: [hashlib.sha256(np.ascontiguousarray(v, np.float32).tobytes()).hexdigest() for v in mv]
             for m, mv in sorted((stats or {}).items())}
    fingerprint = hash_obj(
        {
            **({"stats": stat_hashes} if stats is not None else {}),  # absent otherwise: old fingerprints hold
            "version": ALIGN_VERSION,
            "config": cfg.model_dump(mode="json", exclude={"view", "feature_sets"}),
            "L": {m: s.L for m, s in sources.items()},
            "clips": [[c["clip_id"], c["clip_fingerprint"], c["label"], c["split"], c["duration"], *_classes(c)]
                      for c in clips],
            "modalities": {
                m: {"feature_set": s.feature_set,
                    "fingerprints": [fp or st for fp, st in zip(s.fingerprints, s.status)]}
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
    return AlignPlan(store, cfg, clips, sources, grids, fingerprint, existing, notes, stats)


# -- building -------------------------------------------------------------------------------
def _iter_clip_features(
    store: FeatureStore, src: ModalitySource, extras: tuple[str, ...], positions: range
) -> Iterator[tuple[int, ClipFeatures]]:
    """Yield ``(clip position, features)`` for every usable clip of ``positions``, reading each
    shard's range once."""
    wanted = [i for i in positions if src.positions[i] >= 0]
    records = src.index.take(pa.array([src.positions[i] for i in wanted], pa.int64())).to_pylist()
    rows = [IndexRow.from_record(r) for r in records]
    pos = {r.clip_id: i for i, r in zip(wanted, rows)}
    for row, feat in store.feature_set(src.feature_set).iter_features(rows, extras):
        yield pos[row.clip_id], feat


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
        from features.extractors.text import default_model_path

        return str(default_model_path())
    except Exception:  # the package may be missing where only training runs
        return None


#: decoded values of one modality held in memory at once while a view is built (MB); a larger view
#: is built in blocks of whole view shards, written raw, then normalised block by block
ALIGN_BLOCK_MB = 512


def build_view(plan: AlignPlan, block_mb: float = ALIGN_BLOCK_MB) -> AlignSummary:
    """Read each source's shards once, pool clip by clip, write the view.

    Memory is bounded by ``block_mb`` of values per modality, not by the number of clips: clips are
    pooled in blocks (of whole view shards) in clip order, the train statistics are folded in clip
    by clip in that order, and a view that does not fit one block is written raw and normalised in
    a second pass. Per clip only masks, lengths and text token ids stay in memory (≈ 1% of the
    values). The result does not depend on the block size, value for value.
    """
    t0 = time.perf_counter()
    cfg, clips, store = plan.config, plan.clips, plan.store
    n = len(clips)
    writer = ViewWriter(store, cfg.view, n)
    train = np.array([c["split"] == "train" for c in clips], bool)
    modalities = {m: _align_modality(writer, plan, m, src, train, block_mb) for m, src in plan.sources.items()}
    table = pa.table(
        {
            "row": pa.array(range(n), pa.int64()),
            "clip_id": [c["clip_id"] for c in clips],
            "label": pa.array([c["label"] for c in clips], pa.float64()),
            "split": [c["split"] for c in clips],
            **{k: pa.array([c.get(k) for c in clips], pa.string()) for k in CLASS_LABELS},
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
    summary = _summary(plan, changed=True)
    summary.wall_seconds = time.perf_counter() - t0
    log.info("%s", summary.message)
    return summary


def _block_size(n: int, L: int, dim: int, block_mb: float) -> int:  # noqa: N803
    """Clips per block: all of them when they fit ``block_mb``, else whole view shards."""
    fit = int(block_mb * 2**20 // max(1, L * dim * 4))
    return max(1, n) if fit >= n else max(VIEW_SHARD, fit // VIEW_SHARD * VIEW_SHARD)


def _align_modality(writer: ViewWriter, plan: AlignPlan, m: str, src: ModalitySource, train: np.ndarray,
                    block_mb: float) -> dict[str, Any]:
    """Pool one modality of every clip onto the view's grid, write its arrays; returns its attrs.
    ``train``: [clips] bool, the clips whose statistics normalise the view."""
    cfg, clips, store = plan.config, plan.clips, plan.store
    n = len(clips)
    L, dim = src.L, src.dim  # noqa: N806 - L is the name everyone uses
    block = _block_size(n, L, dim, block_mb)
    mask = np.zeros((n, L), bool)
    filled = np.zeros((n, L), bool)
    lengths = np.zeros(n, np.int32)
    present = src.usable
    if plan.grids is not None:
        lengths[:] = [min(len(g), L) for g in plan.grids]
    text_tokens = m == "text"
    row_mask = src.attrs.get("row_mask")  # rows flagged False carry no signal (faceless frames)
    extras = ("word_index", "input_ids", "attention_mask") if text_tokens else ()
    extras += (row_mask,) if row_mask else ()
    no_signal = 0  # clips whose every row is flagged without signal
    token_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    train_moments, all_moments = Moments(dim), Moments(dim)  # all clips: the fallback of a view with no train clip
    any_train = False
    values_arr = writer.create(f"{m}/values", (n, L, dim), np.float32)
    held: np.ndarray | None = None  # the last block's values, still in memory
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        values = np.zeros((b1 - b0, L, dim), np.float32)
        for pos, feat in _iter_clip_features(store, src, extras, range(b0, b1)):
            v, t, ex = feat.values, feat.times, feat.extras
            if row_mask and row_mask in ex:
                keep = ex[row_mask].astype(bool)
                if not keep.any():  # no row with signal: the modality is absent for this clip
                    present[pos] = False
                    no_signal += 1
                    continue
                v, t = v[keep], t[keep]
            if text_tokens and "input_ids" in ex:
                am = ex.get("attention_mask", np.ones(len(v), np.int32))
                token_rows[pos] = (ex["input_ids"].astype(np.int32), am.astype(np.int32))
            if cfg.grid == "none":
                k = min(len(v), L)
                values[pos - b0, :k] = v[:k]
                mask[pos, :k] = filled[pos, :k] = True
                lengths[pos] = k
                continue
            assert plan.grids is not None  # planned for every grid but "none"
            steps = plan.grids[pos][:L]
            groups = None
            if text_tokens:
                wi = ex.get("word_index")
                if wi is None:
                    wi = np.zeros(len(v), np.int64)  # no word mapping stored: treat rows as words' pieces
                real = wi >= 0
                if cfg.grid == "word":
                    groups = word_groups(wi, len(plan.grids[pos]))
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
            values[pos - b0, :k] = pooled
            mask[pos, :k] = has
            filled[pos, :k] = True if cfg.empty == "nearest" else has
        if plan.stats is None:  # clip by clip, in clip order: the same sums whatever the block size
            for i in range(b0, b1):
                if present[i] and train[i]:
                    train_moments.add(values[i - b0][mask[i]])
                    any_train = True
                elif present[i] and not any_train:
                    all_moments.add(values[i - b0][mask[i]])  # used only if no train clip is present
        if b1 < n or not cfg.normalize:
            writer.write_block(values_arr, b0, values)
        else:
            held = values
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
        for b0 in range(0, n, block):
            b1 = min(n, b0 + block)
            values = held if held is not None and b1 == n else np.asarray(values_arr[b0:b1])
            f = filled[b0:b1]
            values[f] = (values[f] - mean) / std
            writer.write_block(values_arr, b0, values)
    for key, arr in ((f"{m}/lengths", lengths), (f"{m}/present", present), (f"{m}/mask", mask),
                     (f"{m}/mean", mean), (f"{m}/std", std)):
        writer.write(key, arr)
    attrs = {
        "dim": dim, "L": L, "feature_set": src.feature_set, "extractor": src.attrs.get("extractor"),
        "identity": src.attrs.get("identity"), "config": src.attrs.get("config"),
        "clips": src.counts(), "stats_split": stats_split, "stats_steps": stat_steps,
        "no_signal_clips": no_signal,
    }
    if text_tokens:
        T = max([len(ids) for ids, _ in token_rows.values()], default=1)  # noqa: N806
        ids_arr = writer.create("text_tokens/input_ids", (n, T), np.int32)
        att_arr = writer.create("text_tokens/attention_mask", (n, T), np.int32)
        for b0 in range(0, n, VIEW_SHARD):
            b1 = min(n, b0 + VIEW_SHARD)
            ids, att = np.zeros((b1 - b0, T), np.int32), np.zeros((b1 - b0, T), np.int32)
            for pos in range(b0, b1):
                if pos in token_rows:
                    i_, a_ = token_rows.pop(pos)
                    ids[pos - b0, : len(i_)] = i_
                    att[pos - b0, : len(a_)] = a_
            writer.write_block(ids_arr, b0, ids)
            writer.write_block(att_arr, b0, att)
        attrs["tokens"] = {"T": T, "pad_id": 0}
    return attrs


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
