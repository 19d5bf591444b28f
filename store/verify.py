"""``store verify`` and ``store vacuum``: check every committed row, remove crash leftovers;
``account``: where each clip of the clip table stands in each feature set."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from store.featureset import checksum
from store.featurestore import FeatureStore
from store.fingerprint import feature_fingerprint


@dataclass(frozen=True)
class Problem:
    feature_set: str
    clip_id: str
    problem: str


def verify(store: FeatureStore) -> list[Problem]:
    """Check every latest index row against its shard: shape, dtype, finite values, checksum."""
    problems: list[Problem] = []
    for name in store.feature_set_names():
        fset = store.feature_set(name)
        dim = fset.attrs.get("dim")
        for clip, row in fset.rows().items():
            try:
                feat = fset.read_row(row)
            except Exception as exc:  # any read error is a finding, not a crash
                problems.append(Problem(name, clip, f"unreadable shard {row.shard}: {type(exc).__name__}: {exc}"))
                continue
            if feat.values.shape[0] != row.length or feat.times.shape != (row.length, 2):
                problems.append(Problem(name, clip, f"shape {feat.values.shape} != ({row.length}, ...)"))
                continue
            if dim is not None and feat.values.shape[1] != dim:
                problems.append(Problem(name, clip, f"dim {feat.values.shape[1]} != {dim}"))
            if feat.values.dtype != np.float32:
                problems.append(Problem(name, clip, f"dtype {feat.values.dtype} != float32"))
            if not np.isfinite(feat.values).all() or not np.isfinite(feat.times).all():
                problems.append(Problem(name, clip, "non-finite values"))
            if checksum(feat.values, feat.times) != row.checksum:
                problems.append(Problem(name, clip, "checksum mismatch (shard corrupted or overwritten)"))
    return problems


@dataclass(frozen=True)
class Accounting:
    """Each clip of the clip table in one feature set: committed for its current inputs, failed
    (an active failure row), or pending (neither: not extracted yet, or lost). After a complete
    extract ``pending`` is empty: every input ends as a feature row, an absence or a failure."""

    feature_set: str
    committed: tuple[str, ...]
    failed: tuple[str, ...]
    pending: tuple[str, ...]


def account(store: FeatureStore) -> dict[str, Accounting]:
    """Classify every clip of the clip table for each feature set (by name), fingerprinting it with
    the set's identity; the clip table and the failure rows are read once for all sets."""
    clips = store.clips().to_pylist()
    failed_ids: dict[str, set[str]] = {}
    for f in store.failures().select(["clip_id", "feature_set"]).to_pylist():
        failed_ids.setdefault(f["feature_set"], set()).add(f["clip_id"])
    out = {}
    for name in store.feature_set_names():
        fset = store.feature_set(name)
        modality, identity = fset.attrs["modality"], fset.attrs["identity"]
        committed = fset.committed()
        done, failed, pending = [], [], []
        for clip in clips:
            cid = clip["clip_id"]
            if committed.get(cid) == feature_fingerprint(clip, modality, identity):
                done.append(cid)
            elif cid in failed_ids.get(name, ()):
                failed.append(cid)
            else:
                pending.append(cid)
        out[name] = Accounting(name, tuple(done), tuple(failed), tuple(pending))
    return out


def orphan_shards(store: FeatureStore, grace_seconds: float = 3600.0) -> list[tuple[str, str]]:
    """(feature set, shard) pairs no index part references, older than ``grace_seconds``.

    The grace period keeps vacuum from deleting the shard of a batch that is still being written.
    """
    orphans = []
    now = time.time()
    for name in store.feature_set_names():
        fset = store.feature_set(name)
        referenced = set(fset.index_parts().column("shard").to_pylist())
        for shard in fset.shard_ids():
            if shard in referenced:
                continue
            info = store.fs.fs.info(store.fs.path(fset.rel, "shards", shard))
            mtime = info.get("mtime") or info.get("created") or 0
            mtime = mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)
            if now - mtime >= grace_seconds:
                orphans.append((name, shard))
    return orphans


def vacuum(store: FeatureStore, grace_seconds: float = 3600.0) -> list[tuple[str, str]]:
    """Remove orphan shards and stale temp files; return what was removed."""
    removed = orphan_shards(store, grace_seconds)
    for name, shard in removed:
        store.fs.rm(f"features/{name}/shards/{shard}")
    for name in store.feature_set_names():
        for tmp in store.fs.ls(f"features/{name}/index"):
            if tmp.startswith(".tmp-"):
                store.fs.rm(f"features/{name}/index/{tmp}")
    return removed
