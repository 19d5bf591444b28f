"""``emoflow ingest --layout mmsa-pkl FILE``: an official MMSA feature pickle into a store.

The samples become the clip table (validated by the ingest grammar, like any layout's rows), each
feature array a feature set committed through the store's protocol under an identity that names the
file's sha256, and the file's padding becomes a ``grid: none`` view whose arrays equal the file's: the
official features turn into a fingerprinted store that emoflow's stats, training and export read.
The file is loaded with ``interop.safe_pickle`` (a pickle is code; only arrays and containers pass).
``stages.ingest.run_ingest`` runs the steps: ``read_mmsa_pickle``, the clip table, ``import_features``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from corpora.fields import id_key
from corpora.ingest import IngestResult, collect, validate
from corpora.rows import INVALID_ID, INVALID_ROW, RawClip, Reject
from features.align import AlignConfig, align_view
from features.extractors.base import FeatureResult
from interop.mmsa import FEATURE_KEYS, LENGTH_KEYS, SPLITS, TEXT_BERT, UNIMODAL, decoded, split_mmsa_id
from interop.safe_pickle import load_untrusted
from store import FeatureStore
from store.errors import ManifestError
from store.fingerprint import feature_fingerprint, files_sha256, hash_obj
from store.ids import now_utc

LAYOUT = "mmsa-pkl"
IMPORT_VERSION = "1"  # bump when the rows an import commits change
COMMIT_CLIPS = 256  # clips per committed shard
REQUIRED_KEYS = ("id", "regression_labels")


@dataclass
class MMSAImport:
    """What an import committed: one feature set per modality, their L, the view."""

    sha256: str
    aligned: bool
    feature_sets: dict[str, str]
    committed: dict[str, int]  # modality -> clips committed now (0: all were already there)
    L: dict[str, int]
    view: str | None
    notes: list[str] = field(default_factory=list)


# What every key emoflow reads must be, per split: its axes (N: the split's samples, = len(id)).
# Checked for every split and key before anything is written, so a bad file leaves the store as it was.
SHAPES: dict[str, tuple[str | int, ...]] = {
    "id": ("N",), "raw_text": ("N",), "regression_labels": ("N",), **dict.fromkeys(UNIMODAL.values(), ("N",)),
    **dict.fromkeys(LENGTH_KEYS.values(), ("N",)), **dict.fromkeys(FEATURE_KEYS.values(), ("N", "L", "D")),
    TEXT_BERT: ("N", 3, "L"),
}
ANY_ITEMS = frozenset({"id", "raw_text"})  # items of any type: the ingest grammar judges each sample's own
FINITE = frozenset({*LENGTH_KEYS.values(), TEXT_BERT})  # step counts and token ids: NaN means nothing there
LABELS = frozenset({"regression_labels", *UNIMODAL.values()})  # None reads as NaN: a reject, or no label_T/A/V
NUMBER_KINDS = "iuf"  # numpy dtype kinds of real numbers (not bool, complex, str, bytes, object)
FLOAT32_MAX = float(np.finfo(np.float32).max)  # feature sets store float32: a larger finite value has no row
TOKEN_ID_END = 2**31  # token ids are stored as int32
SCALARS = (str, int, float, type(None))  # what a sample's id may be before the ingest grammar judges it


def _checked(value: Any, key: str, where: str) -> np.ndarray:
    """``value`` as the array ``SHAPES[key]`` describes, else a ManifestError naming ``key`` and why.
    Numbers held as Python objects (an object array) are judged by their items."""
    axes = SHAPES[key]
    shown = f"{'an' if key in ANY_ITEMS else 'a numeric'} [{', '.join(map(str, axes))}] array"
    try:
        arr = np.asarray(value, dtype=object if key in ANY_ITEMS else None)
        if arr.dtype.kind == "O" and key not in ANY_ITEMS:
            arr = np.asarray(arr.tolist(), dtype=float if key in LABELS and arr.ndim == 1 else None)  # None: NaN
    except (TypeError, ValueError):  # what loads safely (arrays, lists, numbers, strings) fails only this way
        raise ManifestError(f"{where}: {key!r} is not {shown} (its items are not numbers of one shape)") from None
    if key not in ANY_ITEMS and arr.dtype.kind not in NUMBER_KINDS:
        problem = f"dtype {arr.dtype}"
    elif arr.ndim != len(axes) or any(isinstance(a, int) and a != n for a, n in zip(axes, arr.shape)):
        problem = f"shape {arr.shape}" if arr.ndim <= 4 else f"{arr.ndim} axes"  # a list nested in itself: 64
    elif empty := [f"{a} = 0" for a, n in zip(axes[1:], arr.shape[1:]) if n == 0]:
        problem = f"shape {arr.shape}: {', '.join(empty)}"
    elif key in FINITE and not np.isfinite(arr).all():
        problem = "NaN or infinite values"
    else:
        return arr
    raise ManifestError(f"{where}: {key!r} is not {shown} ({problem})")


def _text_keys(data: dict[Any, Any]) -> dict[Any, Any]:
    """``data`` with bytes keys (a Python 2 pickle's str) as text, so ``b'train'`` is ``'train'``."""
    return {decoded(k): v for k, v in data.items()}


def _not_a_feature_file(data: Any, source: str) -> ManifestError:
    """The error for a file without any split, saying what it holds instead."""
    if isinstance(data, dict):
        keys = [str(k)[:40] for k in list(data)[:8]]
        held = f"its top-level keys are {keys}{' …' if len(data) > 8 else ''}" if data else "it is an empty dict"
    else:
        held = f"it holds a {type(data).__name__}"
    return ManifestError(f"{source}: not an MMSA feature file (a dict with train/valid/test; {held})")


def _splits(data: Any, source: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The file's splits, every key emoflow reads checked (``SHAPES``) and made an array; one D per
    feature key across the splits that import it. A top-level key holding samples under another
    name (``dev``, ``val``) is an error: MMSA reads only train/valid/test, and skipping it would
    drop its samples without a word. Other top-level keys are ignored, named in the notes returned."""
    if not isinstance(data, dict):
        raise _not_a_feature_file(data, source)
    data = _text_keys(data)
    notes: list[str] = []
    others = [k for k in data if k not in SPLITS]
    for key in others:
        if isinstance(data[key], dict) and "id" in _text_keys(data[key]):
            raise ManifestError(f"{source}: {str(key)[:40]!r} holds samples, but MMSA's splits are train, valid "
                                "and test (its loader reads no other); rename it to one of those")
    if others:
        notes.append(f"ignored top-level key(s) of {Path(source).name}: {[str(k)[:40] for k in others[:8]]}")
    out: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        part = data.get(split)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise ManifestError(f"{source}: {split!r} is a {type(part).__name__}, not a dict of arrays")
        part = _text_keys(part)
        missing = [k for k in REQUIRED_KEYS if k not in part]
        if missing:
            raise ManifestError(f"{source}: split {split!r} lacks {missing}")
        where = f"{source}: split {split!r}"
        arrays = {key: _checked(part[key], key, where) for key in SHAPES if key in part}
        n = len(arrays["id"])
        for key, arr in arrays.items():
            if len(arr) != n:
                raise ManifestError(f"{where}: {key!r} has {len(arr)} samples, 'id' has {n}")
        out[split] = part | arrays
    if not out:
        raise _not_a_feature_file(data, source)
    for m in _modalities(out):
        dims = sorted({part[FEATURE_KEYS[m]].shape[2] for part in out.values()})
        if len(dims) != 1:
            raise ManifestError(f"{source}: {FEATURE_KEYS[m]!r} has different dims across splits: {dims}")
    return out, notes


def _modalities(splits: dict[str, dict[str, Any]]) -> list[str]:
    """The modalities an import commits: those whose key every split has."""
    return [m for m, key in FEATURE_KEYS.items() if all(key in part for part in splits.values())]


def _partial_modalities(splits: dict[str, dict[str, Any]]) -> list[str]:
    """Notes naming the modalities some splits have and others lack: they are not imported (a view
    needs the modality's set for every clip), which the summary must say rather than drop them."""
    notes = []
    for m, key in FEATURE_KEYS.items():
        has = [s for s, part in splits.items() if key in part]
        if has and len(has) < len(splits):
            lacks = [s for s in splits if s not in has]
            notes.append(f"{m}: not imported: {key!r} is in {', '.join(has)} but not in {', '.join(lacks)}")
    return notes


def _number(value: Any) -> Any:
    """numpy scalars as Python numbers (the field grammar takes JSON-like values only); a float32
    label becomes its shortest decimal (-2.4, not -2.4000000953674316), what the dataset wrote."""
    if isinstance(value, (np.float32, np.float16)):
        return float(str(value)) if np.isfinite(value) else float(value)
    return value.item() if isinstance(value, np.generic) else value


def _unimodal(value: Any) -> Any:
    """A unimodal label as the grammar reads it: NaN is no label (emoflow's export writes NaN for a
    clip without one, and a None in an object array reads as NaN), not a reject of the whole clip."""
    value = _number(value)
    return None if isinstance(value, float) and np.isnan(value) else value


def _flag(found: dict[int, str], bad: np.ndarray, values: np.ndarray, problem: str, start: int = 0) -> None:
    """Record ``problem`` (formatted with the first bad value) for each sample with a ``bad`` value;
    ``bad`` and ``values`` have one row per sample, from sample ``start`` on. A sample keeps its first."""
    width = int(np.prod(bad.shape[1:]))  # not -1: a split of 0 samples has nothing to infer it from
    rows, flat = bad.reshape(len(bad), width), values.reshape(len(values), width)
    for i in np.flatnonzero(rows.any(axis=1)):
        found.setdefault(start + int(i), problem.format(flat[i][rows[i]][0]))


def _sample_problems(part: dict[str, Any]) -> dict[int, str]:
    """Why samples of a checked split cannot be imported as the file has them, by sample index; each
    becomes a reject (``INVALID_ROW``) while the other samples import. What is judged is what the
    import reads: a ``<m>_lengths`` that is no whole number of steps, feature values a float32 row
    cannot hold (a float64 file's 1e300 would become inf, then 0), and, where ``text_bert`` gives the
    text's lengths and token ids, ids that are no int32 token id and a mask that is not 0/1."""
    found: dict[int, str] = {}
    for m, key in FEATURE_KEYS.items():
        if key not in part:
            continue
        values = part[key]
        if values.dtype.kind == "f" and values.dtype.itemsize > 4:
            for start in range(0, len(values), COMMIT_CLIPS):  # a block at a time: no second full-size array
                block = values[start:start + COMMIT_CLIPS]
                _flag(found, np.isfinite(block) & (np.abs(block) > FLOAT32_MAX), block,
                      f"{key!r} holds {{:.3g}}, beyond float32's range (±3.4e38), the type feature sets store", start)
        lengths_key = LENGTH_KEYS.get(m)
        if lengths_key in part:
            n = part[lengths_key].astype(np.float64)  # finite: _checked
            _flag(found, (n < 0) | (n != np.floor(n)), n, f"{lengths_key} {{:g}} is not a number of steps")
    bert, text = part.get(TEXT_BERT), part.get("text")
    if bert is not None and text is not None and bert.shape[1:] == (3, text.shape[1]):
        ids, mask = bert[:, 0].astype(np.float64), bert[:, 1]
        _flag(found, (ids < 0) | (ids >= TOKEN_ID_END) | (ids != np.floor(ids)), ids,
              f"{TEXT_BERT} holds the token id {{:g}}, not one in [0, 2^31)")
        _flag(found, (mask != 0) & (mask != 1), mask, f"{TEXT_BERT}'s attention mask holds {{:g}}, not 0 or 1")
    return found


def _raw_clips(splits: dict[str, dict[str, Any]], name: str) -> Iterator[tuple[RawClip, str, int]]:
    for split, part in splits.items():
        texts = part.get("raw_text")
        problems = _sample_problems(part)
        for i, sample_id in enumerate(part["id"]):
            source = f"{name}:{split}[{i}]"
            video, clip = split_mmsa_id(_number(sample_id))
            extra = {k: _unimodal(part[key][i]) for k, key in UNIMODAL.items() if key in part}
            text = decoded(_number(texts[i])) if texts is not None else ""
            raw = RawClip(source=source, clip_id=clip, video_id=video, text=text,
                          label=_number(part["regression_labels"][i]), split=split, extra_labels=extra)
            if not isinstance(clip, SCALARS):  # a list, dict or array: the rejects table could not even show it
                raw.clip_id = raw.video_id = None
                raw.problem = Reject(INVALID_ID, f"{source}: the sample id is a {type(clip).__name__}, not a string")
            elif i in problems:
                raw.problem = Reject(INVALID_ROW, f"clip {clip!r}: {problems[i]}" if isinstance(clip, str)
                                     else f"{source}: {problems[i]}")
            yield raw, split, i


def _lengths(part: dict[str, Any], modality: str) -> tuple[np.ndarray, str, np.ndarray]:
    """Each sample's real steps of ``modality``, the rule that gave them, and which samples the file
    gives more steps than its L (read as L: every stored step, counted in the notes): the file's
    ``<m>_lengths`` (whole numbers ≥ 0: ``_sample_problems``); for text the attention mask of
    ``text_bert`` when its tokens are the text rows; else the steps up to the last one with a
    non-zero value (trailing all-zero steps are padding)."""
    values = np.asarray(part[FEATURE_KEYS[modality]])
    L = values.shape[1]  # noqa: N806 - L is the name everyone uses
    if modality in LENGTH_KEYS and LENGTH_KEYS[modality] in part:
        given = part[LENGTH_KEYS[modality]]
        return np.clip(given, 0, L).astype(np.int64), LENGTH_KEYS[modality], given > L
    longer = np.zeros(len(values), bool)
    bert = part.get(TEXT_BERT)
    if modality == "text" and bert is not None and np.shape(bert)[1:] == (3, L):
        return np.asarray(bert)[:, 1, :].astype(bool).sum(axis=1).astype(np.int64), "text_bert attention mask", longer
    nonzero = np.any(values != 0, axis=2)
    last = L - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, 0).astype(np.int64), "last non-zero step", longer


def _features(part: dict[str, Any], modality: str, i: int, n_rows: int, duration: float) -> FeatureResult:
    """Sample ``i``'s first ``n_rows`` steps; rows get nominal spans spread evenly over the clip (the
    file has no times); non-finite values become 0, as MMSA's loader does for audio."""
    dim = np.shape(part[FEATURE_KEYS[modality]])[2]
    if n_rows == 0:
        return FeatureResult(np.zeros((0, dim), np.float32), np.zeros((0, 2)), absent="no steps in the MMSA file")
    v = np.asarray(part[FEATURE_KEYS[modality]][i, :n_rows], np.float32)
    bad = ~np.isfinite(v)
    meta: dict[str, Any] = {"nonfinite_zeroed": int(bad.sum())} if bad.any() else {}
    v = np.where(bad, np.float32(0), v)
    edges = np.linspace(0.0, duration, n_rows + 1)
    times = np.stack([edges[:-1], edges[1:]], axis=1)
    extras = {}
    bert = part.get(TEXT_BERT)
    if modality == "text" and bert is not None and np.shape(bert)[1:] == (3, np.shape(part["text"])[1]):
        extras = {"input_ids": np.asarray(bert[i, 0, :n_rows]).astype(np.int32),
                  "attention_mask": np.asarray(bert[i, 1, :n_rows]).astype(np.int32)}
    return FeatureResult(v, times, extras, meta)


@dataclass
class MMSAFile:
    """A loaded, checked MMSA pickle: its validated clip and rejects tables and its arrays."""

    path: Path
    sha256: str
    splits: dict[str, dict[str, Any]]
    result: IngestResult
    where: dict[str, tuple[str, int]]  # clip id -> (split, sample index) of every accepted clip
    notes: list[str] = field(default_factory=list)  # what of the file is not imported, for the summary


def read_mmsa_pickle(path: str | os.PathLike[str]) -> MMSAFile:
    """Load the MMSA feature pickle at ``path`` safely and validate its samples into clip rows.

    Clip ids come from ``video$_$clip`` (``interop.mmsa.split_mmsa_id``); samples the ingest grammar
    rejects (a label outside [-3, 3], a bad id, a duplicate) go to the rejects table and get no features.
    Clip durations are nominal (the file has no times: 0.4 s per transcript word, as for any text-only clip).
    """
    file = Path(path)
    if not file.is_file():  # a FIFO or device would block or never end; a folder is a common slip
        kind = "a folder" if file.is_dir() else "not a regular file" if file.exists() else None
        problem = f"{kind}, not an MMSA feature file" if kind else "no such MMSA feature file"
        raise ManifestError(f"{file}: {problem}")
    sha = files_sha256([file])
    splits, notes = _splits(load_untrusted(file), str(file))
    found = list(_raw_clips(splits, file.name))
    result = collect((raw for raw, _, _ in found), file.parent, LAYOUT)
    where: dict[str, tuple[str, int]] = {}  # id key -> the sample collect kept: the first valid one
    for raw, split, i in found:
        try:
            key = id_key(validate(raw, file.parent)["clip_id"])
        except Exception:  # collect recorded why in the rejects table
            continue
        where.setdefault(key, (split, i))
    accepted = {id_key(c): c for c in result.clips.column("clip_id").to_pylist()}
    return MMSAFile(file, sha, splits, result, {c: where[k] for k, c in accepted.items()}, notes)


def import_features(store_url: str, source: MMSAFile, view: str | None = "default") -> MMSAImport:
    """Commit the file's arrays as one feature set per modality for the clips of the store's clip
    table that came from it (write that first: ``stages.ingest`` does), then build view ``view``.

    The sets' identity names the file's sha256, so another file makes other sets and re-importing
    the same file commits nothing new. The view (None: none) is ``grid: none`` with L = the file's
    padded length per modality and ``normalize: false``, so its arrays equal the file's.
    """
    splits, file = source.splits, source.path
    clips = {c["clip_id"]: c for c in source.result.clips.to_pylist()}
    if not clips:  # empty sets and a view build that fails naming the clip table as empty would mislead
        return MMSAImport(source.sha256, False, {}, {}, {}, None,
                          [*source.notes, f"every sample of {file.name} was rejected (the reject table names why): "
                           "no feature set and no view"])
    store = FeatureStore.open(store_url)
    modalities = _modalities(splits)
    sets: dict[str, str] = {}
    committed: dict[str, int] = {}
    L: dict[str, int] = {}  # noqa: N806 - L is the name everyone uses
    notes = [*source.notes, *_partial_modalities(splits)]
    for m in modalities:
        key = FEATURE_KEYS[m]
        L[m] = max(np.shape(part[key])[1] for part in splits.values())
        lengths = {s: _lengths(part, m) for s, part in splits.items()}
        rule = next(iter(lengths.values()))[1]
        identity = {"name": f"mmsa.{m}", "version": IMPORT_VERSION,
                    "imported_from": {"sha256": source.sha256, "key": key, "lengths": rule}}
        name = f"mmsa.{m}-{hash_obj(identity)[:8]}"
        attrs = {"extractor": f"mmsa.{m}", "version": IMPORT_VERSION, "modality": m,
                 "config": {"source": file.name, "sha256": source.sha256, "key": key, "lengths": rule},
                 "identity": identity, "dim": next(iter(splits.values()))[key].shape[2],  # one D: _splits
                 "created": now_utc().isoformat()}
        fset = store.ensure_feature_set(name, attrs)
        done = fset.committed()
        batch: list[tuple[str, str, FeatureResult, float]] = []
        count = zeroed = zeroed_clips = longer = 0
        for cid, clip in clips.items():
            split, i = source.where[cid]
            longer += bool(lengths[split][2][i])
            fp = feature_fingerprint(clip, m, identity)
            if done.get(cid) == fp:
                continue
            n_rows = int(lengths[split][0][i])
            result = _features(splits[split], m, i, n_rows, clip["duration"])
            zeroed += result.meta.get("nonfinite_zeroed", 0)
            zeroed_clips += "nonfinite_zeroed" in result.meta
            batch.append((cid, fp, result, clip["duration"]))
            if len(batch) >= COMMIT_CLIPS:
                fset.commit(batch)
                count += len(batch)
                batch = []
        fset.commit(batch)
        sets[m], committed[m] = name, count + len(batch)
        notes.append(f"{m}: {committed[m]} clips committed to {name} (L={L[m]}, lengths from {rule})")
        if longer:
            notes.append(f"{m}: {rule} gives {longer} clip(s) more steps than the file's L={L[m]}: read as L "
                         "(every step the file holds)")
        if zeroed:
            notes.append(f"{m}: {zeroed} NaN or infinite value(s) in {zeroed_clips} clip(s) set to 0, as MMSA's "
                         "loader does with COVAREP's -inf (each row's meta counts them: nonfinite_zeroed)")
    aligned = len(set(L.values())) == 1  # one L for every modality: MMSA's aligned_50 kind
    if aligned:
        notes.append(f"aligned file: every modality has L={next(iter(L.values()))}")
    if not modalities:
        notes.append("no text, audio or vision arrays in every split: clip table only")
    view_name = view if modalities else None
    if view_name:
        cfg = AlignConfig.model_validate({"view": view_name, "grid": "none", "max_len": L, "normalize": False,
                                          "feature_sets": {m: sets.get(m) for m in FEATURE_KEYS}})
        notes.append(align_view(store, cfg).message)
    return MMSAImport(source.sha256, aligned, sets, committed, L, view_name, notes)
