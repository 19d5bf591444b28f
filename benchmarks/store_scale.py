#!/usr/bin/env python
"""Store scale benchmark (issue 18): synthetic text-shaped feature sets of 10^3…10^5 clips built
through the public commit API, timed before and after index compaction.

    python benchmarks/store_scale.py [--sizes 1000,10000,100000] [--workdir /tmp/store-scale]
                                     [--legacy-verify-max 10000] [--out benchmarks/results/store_scale.json]

Build (per size N): a store with a clip table of N clips (text only, fingerprints computed the way
extraction does) and one feature set shaped like ``text.bert`` (dim 768; 8–32 rows per clip,
mean 20; ``input_ids``/``attention_mask``/``word_index`` extras), committed with
``FeatureSet.commit`` in batches of 8 clips, as the extract flow commits. Values are random
float32 (incompressible: the worst case for disk and verify).

Timed on the store as built (one index part per batch: the "before" layout) and again after
``FeatureSet.compact`` ("after"); each figure is the best of ``--repeats`` runs in this process
with fresh ``FeatureStore`` objects (no reader caches; the OS page cache is warm for both):

- open + load index: ``FeatureStore.open(url).feature_set(name).index()``;
- planning: what an unchanged nightly ``extract`` pays per set — ``committed()`` +
  ``fingerprint_clips()`` (``stages.extract.plan``'s store reads), then the per-clip fingerprint
  comparison over the clip table (``plan``'s loop, extractor identity fixed);
- read one clip by id: fresh objects, ``read(clip)`` (loads the readers' view first) and
  ``lookup(clip)`` (a filtered read of the index: one row group of the consolidated file);
- ``store ls``: ``emoflow store ls`` in a fresh process, wall seconds including interpreter start;
- verify one set: "before" is the per-clip loop the store used until now (``read_row`` per
  clip: five array opens per clip), run up to ``--legacy-verify-max`` clips and extrapolated
  linearly beyond; "after" is the streamed ``store.verify.verify`` (shard by shard), and
  ``--sample 1000``;
- files per clip: every file under the feature set / N.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from features.extractors.base import FeatureResult  # noqa: E402 - after the path setup above
from store import FeatureStore, schema  # noqa: E402
from store.featureset import FeatureSet  # noqa: E402
from store.fingerprint import clip_fingerprint, feature_fingerprint  # noqa: E402
from store.verify import vacuum, verify  # noqa: E402

SET = "text.bert-bench0001"
DIM = 768
BATCH = 8
IDENTITY = {"name": "text.bert", "version": "bench", "config": {"model": "synthetic", "dim": DIM}}


def _clip(i: int) -> dict[str, Any]:
    row: dict[str, Any] = {"clip_id": f"vid{i // 20:06d}_{i % 20}", "video_id": f"vid{i // 20:06d}",
                           "media_uri": None, "start": None, "end": None, "duration": 4.0,
                           "text": f"synthetic transcript number {i}", "words": None, "label": 0.0,
                           "label_T": None, "label_A": None, "label_V": None,
                           "split": ("train", "valid", "test")[i % 3], "has_video": False,
                           "has_audio": False, "media_fingerprint": None}
    row["clip_fingerprint"] = clip_fingerprint(row)
    return row


def _new_set(url: Path, n: int) -> tuple[FeatureSet, list[dict[str, Any]]]:
    """A new store at ``url`` with a clip table of ``n`` clips and the empty text-shaped set."""
    store = FeatureStore.open(url, create=True)
    clips = [_clip(i) for i in range(n)]
    store.write_clips(pa.Table.from_pylist(clips, schema=schema.CLIPS))
    fset = store.ensure_feature_set(SET, {"extractor": "text.bert", "version": "bench", "modality": "text",
                                          "config": IDENTITY["config"], "identity": IDENTITY, "dim": DIM,
                                          "created": "2026-01-01T00:00:00+00:00"})
    return fset, clips


def build(url: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """N clips, committed in batches of 8 through ``FeatureSet.commit``."""
    t0 = time.perf_counter()
    fset, clips = _new_set(url, n)
    rng = np.random.default_rng(seed)
    rows_total = 0
    for start in range(0, n, BATCH):
        items = []
        for clip in clips[start:start + BATCH]:
            rows = int(rng.integers(8, 33))
            rows_total += rows
            t = np.arange(rows, dtype=np.float64) * 0.2
            feat = FeatureResult(
                values=rng.standard_normal((rows, DIM), dtype=np.float32),
                times=np.stack([t, t + 0.2], axis=1),
                extras={"input_ids": rng.integers(0, 30522, rows, dtype=np.int32),
                        "attention_mask": np.ones(rows, np.int32), "word_index": np.arange(rows, dtype=np.int32)},
                meta={"tokens": rows},
            )
            items.append((clip["clip_id"], feature_fingerprint(clip, "text", IDENTITY), feat, clip["duration"]))
        fset.commit(items)
    return {"clips": n, "rows": rows_total, "seconds": time.perf_counter() - t0}


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """(best wall s, its CPU s, last result) of ``repeats`` calls."""
    best = (float("inf"), 0.0)
    out = None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        w, c = time.perf_counter() - w0, time.process_time() - c0
        best = min(best, (w, c))
    return best[0], best[1], out


def _fset(url: Path) -> FeatureSet:
    return FeatureStore.open(url).feature_set(SET)


def _lookup(url: Path, clip: str) -> None:
    _fset(url).lookup(clip)


def _plan(url: Path) -> int:
    """``stages.extract.plan``'s work for one unchanged set (its own functions), without building an
    extractor: the clip table, its fingerprints (from the planning cache once written), the decisions."""
    from stages.extract import plan_set

    store = FeatureStore.open(url)
    clips, digest = store.clips_with_digest()
    fps = store.clip_fingerprints(SET, "text", IDENTITY, clips, digest)
    todo, links = plan_set(store.feature_set(SET), clips, fps)
    return len(todo)


def _legacy_verify(url: Path, limit: int) -> tuple[int, int]:
    """The per-clip verify loop the store used before streaming (five array opens per clip)."""
    from store.featureset import checksum

    fset = _fset(url)
    bad = checked = 0
    for row in list(fset.rows().values())[:limit]:
        feat = fset.read_row(row)
        checked += 1
        bad += checksum(feat.values, feat.times) != row.checksum or not np.isfinite(feat.values).all()
    return checked, bad


def _files(url: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(url / "features" / SET))


def _store_ls(url: Path) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "flows.cli", "store", "ls", str(url)], cwd=REPO,
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return time.perf_counter() - t0


def measure(url: Path, n: int, layout: str, repeats: int, legacy_max: int) -> dict[str, Any]:
    out: dict[str, Any] = {"layout": layout, "index_parts": len(_fset(url).index_files.uncovered_parts()),
                           "files": _files(url)}
    out["files_per_clip"] = out["files"] / n
    w, c, idx = _best(lambda: _fset(url).index().num_rows, repeats)
    assert idx == n, idx
    out["open_index_s"], out["open_index_cpu_s"] = w, c
    def store_reads() -> tuple[dict[str, str], dict[str, str]]:
        fset = _fset(url)
        return fset.committed(), fset.fingerprint_clips()

    w, c, todo = _best(store_reads, repeats)
    out["planning_store_s"], out["planning_store_cpu_s"] = w, c
    w, c, todo = _best(lambda: _plan(url), repeats)
    assert todo == 0, todo
    out["planning_s"], out["planning_cpu_s"] = w, c
    clip = _clip(n // 2)["clip_id"]
    out["read_one_clip_s"], _, _ = _best(lambda: _fset(url).read(clip), repeats)
    out["lookup_one_clip_s"], _, _ = _best(lambda: _fset(url).lookup(clip), repeats)
    out["store_ls_wall_s"] = min(_store_ls(url) for _ in range(repeats))
    if layout == "parts":
        limit = min(n, legacy_max)
        w, c, (checked, bad) = _best(lambda: _legacy_verify(url, limit), 1)
        assert bad == 0
        out["verify_legacy_s"] = w * n / checked
        out["verify_legacy_measured_clips"] = checked
        out["verify_legacy_extrapolated"] = checked < n
    else:
        store = FeatureStore.open(url)
        w, c, problems = _best(lambda: verify(store, sets=[SET]), 1)
        assert problems == [], problems[:3]
        out["verify_streamed_s"], out["verify_streamed_cpu_s"] = w, c
        out["verify_sample_1000_s"], _, _ = _best(lambda: verify(store, sets=[SET], sample=1000), repeats)
    return out


def run_size(workdir: Path, n: int, repeats: int, legacy_max: int, reuse: bool) -> dict[str, Any]:
    url = workdir / f"store-{n}"
    if not (reuse and (url / "clips.parquet").exists()):
        shutil.rmtree(url, ignore_errors=True)
        built = build(url, n)
        print(f"[{n}] built in {built['seconds']:.1f} s ({built['rows']} rows)", flush=True)
    else:
        built = {"clips": n, "reused": True}
    before = measure(url, n, "parts", repeats, legacy_max)
    print(f"[{n}] before: {json.dumps(before)}", flush=True)
    t0 = time.perf_counter()
    result = _fset(url).compact()
    compact_s = time.perf_counter() - t0
    vacuum(FeatureStore.open(url), grace_seconds=0)  # the merged-away shards, so files are counted as they stay
    after = measure(url, n, "compacted", repeats, legacy_max)
    after["compact_s"] = compact_s
    after["compacted_parts"] = result.parts if result else 0
    after["shards_merged"] = result.shards_retired if result else 0
    print(f"[{n}] after: {json.dumps(after)}", flush=True)
    return {"clips": n, "build": built, "before": before, "after": after}


def _s(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def table(results: list[dict[str, Any]]) -> str:
    """The issue's table: before → after per size."""
    def cell(r: dict[str, Any], key_b: str, key_a: str) -> str:
        b, a = r["before"].get(key_b), r["after"].get(key_a)
        extra = "*" if key_b == "verify_legacy_s" and r["before"].get("verify_legacy_extrapolated") else ""
        if a is None:
            return "–"
        return f"{_s(b)}{extra} → {_s(a)}" if b is not None else f"(not timed) → {_s(a)}"

    heads = [f"{r['clips']:,} clips" for r in results]
    lines = ["| operation (seconds) | " + " | ".join(heads) + " |", "|---|" + "---|" * len(results)]
    for label, kb, ka in [
        ("open store + load one set's index", "open_index_s", "open_index_s"),
        ("planning, store reads (`committed` + `fingerprint_clips`)", "planning_store_s", "planning_store_s"),
        ("planning an unchanged run (+ fingerprinting the clip table)", "planning_s", "planning_s"),
        ("read one clip by id (fresh objects, `read`)", "read_one_clip_s", "read_one_clip_s"),
        ("read one clip by id (fresh objects, `lookup`)", "lookup_one_clip_s", "lookup_one_clip_s"),
        ("`store ls` (wall, fresh process)", "store_ls_wall_s", "store_ls_wall_s"),
        ("`store verify`, one set (per clip → streamed)", "verify_legacy_s", "verify_streamed_s"),
    ]:
        lines.append(f"| {label} | " + " | ".join(cell(r, kb, ka) for r in results) + " |")
    lines.append("| `store verify --sample 1000` | " + " | ".join(
        _s(r['after']['verify_sample_1000_s']) for r in results) + " |")
    lines.append("| index files opened (parts → consolidated + parts) | " + " | ".join(
        f"{r['before']['index_parts']:,} → 1" for r in results) + " |")
    lines.append("| files per clip | " + " | ".join(
        f"{r['before']['files_per_clip']:.2f} → {r['after']['files_per_clip']:.2f}" for r in results) + " |")
    lines.append("| compaction itself | " + " | ".join(_s(r['after']['compact_s']) for r in results) + " |")
    return "\n".join(lines)


def index_only(workdir: Path, n: int, repeats: int) -> dict[str, Any]:
    """A simulated set of ``n`` clips: index rows only (shard ids, offsets, the clips' real feature
    fingerprints and 32-hex checksums as extraction writes them; no shards) and the clip table,
    published as one large index part and compacted; then the index-side operations and planning
    an unchanged run (first without, then with the planning cache) are timed."""
    url = workdir / f"index-only-{n}"
    shutil.rmtree(url, ignore_errors=True)
    store = FeatureStore.open(url, create=True)
    store.ensure_feature_set(SET, {"identity": IDENTITY, "dim": DIM})
    clips = [_clip(i) for i in range(n)]
    store.write_clips(pa.Table.from_pylist(clips, schema=schema.CLIPS))
    fingerprints = [feature_fingerprint(c, "text", IDENTITY) for c in clips]
    del clips
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 33, n)
    starts = np.cumsum(lengths) - lengths  # global row starts; a shard holds 8 clips back to back
    offsets = starts - np.repeat(starts[::BATCH], BATCH)[:n]
    t = np.datetime64("2026-01-01T00:00:00", "us") + np.arange(n) // BATCH * 30_000
    table = pa.table({
        "clip_id": [f"vid{i // 20:06d}_{i % 20}" for i in range(n)],  # as _clip names them
        "shard": [f"20260101T{i // BATCH:09d}-bench" for i in range(n)],
        "offset": offsets.astype(np.int64), "length": lengths.astype(np.int64),
        "fingerprint": fingerprints,
        "checksum": [os.urandom(16).hex() for _ in range(n)],
        "absent": pa.nulls(n, pa.string()), "meta": ['{"tokens": 20}'] * n,
        "duration": np.full(n, 4.0), "committed_at": pa.array(t, pa.timestamp("us", tz="UTC")),
    }, schema=schema.INDEX)
    store.fs.write_parquet(f"features/{SET}/index/20260101T000000-bulk.parquet", table)
    out: dict[str, Any] = {"clips": n, "simulated": "index rows only, no shards"}
    w, _, _ = _best(lambda: _fset(url).index_parts().num_rows, 1)
    out["one_part_read_s"] = w
    t0 = time.perf_counter()
    _fset(url).compact()
    out["compact_s"] = time.perf_counter() - t0
    out["consolidated_mb"] = sum(f.stat().st_size for f in (url / "features" / SET / "consolidated").iterdir()) / 1e6
    out["open_index_s"], _, _ = _best(lambda: _fset(url).index().num_rows, repeats)

    def store_reads() -> int:
        fset = _fset(url)
        return len(fset.committed()) + len(fset.fingerprint_clips())

    out["planning_store_s"], _, _ = _best(store_reads, repeats)
    t0 = time.perf_counter()
    assert _plan(url) == 0  # no planning cache yet: every clip is fingerprinted (and the cache written)
    out["plan_unchanged_uncached_s"] = time.perf_counter() - t0
    out["plan_unchanged_s"], _, _ = _best(lambda: _plan(url), repeats)
    out["lookup_one_clip_index_s"], _, _ = _best(
        lambda: latest_rows(_fset(url), f"vid{(n // 2) // 20:06d}_{(n // 2) % 20}"), repeats)
    for b in range(16):  # a small nightly run on top: 16 more parts, then an incremental compaction
        store.fs.write_parquet(f"features/{SET}/index/20270101T{b:06d}-new.parquet", table.slice(b * BATCH, BATCH))
    out["open_index_16_parts_s"], _, _ = _best(lambda: _fset(url).index().num_rows, repeats)
    t0 = time.perf_counter()
    _fset(url).compact()
    out["incremental_compact_s"] = time.perf_counter() - t0
    return out


def _subprocess_wall(code: str, *args: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of ``python -c code args`` in a fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, round(max(peak, before) / 1024)


LOOKUP = ("import sys; from store import FeatureStore; "
          "FeatureStore.open(sys.argv[1]).feature_set(sys.argv[2]).lookup(sys.argv[3])")
VERIFY = ("import sys; from store import FeatureStore; from store.verify import verify; "
          "assert verify(FeatureStore.open(sys.argv[1]), sets=[sys.argv[2]]) == []")


def full_scale(workdir: Path, n: int, rows: int, commit: int, repeats: int) -> dict[str, Any]:
    """A real store of ``n`` clips with shards, small enough for the disk: ``rows`` text-width rows per
    clip (768-d, random float32), committed ``commit`` clips per shard (the layout shard merging
    gives), then compacted. Times what a fresh process pays for ls, lookup and a full verify."""
    url = workdir / f"full-{n}"
    shutil.rmtree(url, ignore_errors=True)
    t0 = time.perf_counter()
    fset, clips = _new_set(url, n)
    rng = np.random.default_rng(0)
    t = np.arange(rows, dtype=np.float64) * 0.2
    times = np.stack([t, t + 0.2], axis=1)
    extras = {"input_ids": np.arange(rows, dtype=np.int32), "attention_mask": np.ones(rows, np.int32),
              "word_index": np.arange(rows, dtype=np.int32)}
    for start in range(0, n, commit):
        fset.commit((c["clip_id"], feature_fingerprint(c, "text", IDENTITY),
                     FeatureResult(values=rng.standard_normal((rows, DIM), dtype=np.float32), times=times,
                                   extras=extras, meta={"tokens": rows}), c["duration"])
                    for c in clips[start:start + commit])
    del clips
    out: dict[str, Any] = {"clips": n, "rows_per_clip": rows, "clips_per_shard": commit,
                           "simulated": f"text set of {rows} 768-d rows per clip, {commit} clips per shard"}
    out["build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _fset(url).compact()
    out["compact_s"] = time.perf_counter() - t0
    out["disk_gb"] = sum(f.stat().st_size for f in url.rglob("*") if f.is_file()) / 1e9
    out["files_per_clip"] = _files(url) / n
    out["open_index_s"], _, _ = _best(lambda: _fset(url).index().num_rows, repeats)
    _plan(url)  # writes the planning cache, as the first extract run after ingest does
    out["plan_unchanged_s"], _, _ = _best(lambda: _plan(url), repeats)
    out["store_ls_wall_s"] = min(_store_ls(url) for _ in range(repeats))
    clip = _clip(n // 2)["clip_id"]
    out["lookup_fresh_process_s"] = min(_subprocess_wall(LOOKUP, str(url), SET, clip)[0] for _ in range(repeats))
    out["verify_sample_1000_s"], _, _ = _best(lambda: verify(FeatureStore.open(url), sets=[SET], sample=1000),
                                              repeats)
    out["verify_s"], out["verify_peak_rss_mb"] = _subprocess_wall(VERIFY, str(url), SET)
    return out


def latest_rows(fset: FeatureSet, clip: str) -> int:
    """``lookup``'s index read without the shard read (a simulated set has no shards)."""
    return fset.index_files.read(clip_ids=[clip]).num_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/emoflow-store-scale"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--legacy-verify-max", type=int, default=10_000)
    ap.add_argument("--reuse", action="store_true", help="keep and reuse stores already built in --workdir")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "store_scale.json")
    ap.add_argument("--lookup-only", action="store_true",
                    help="add `lookup` timings of the compacted stores kept in --workdir to --out (a report "
                         "written before `lookup` existed)")
    ap.add_argument("--index-only", type=int, default=0,
                    help="only time the index side of a simulated set of this many clips (no shards), "
                         "added to --out")
    ap.add_argument("--full", type=int, default=0,
                    help="only build and time a store of this many clips with shards (--full-rows rows per clip, "
                         "--full-commit clips per shard), added to --out")
    ap.add_argument("--full-rows", type=int, default=4)
    ap.add_argument("--full-commit", type=int, default=1024)
    args = ap.parse_args()
    if args.full:
        report = json.loads(args.out.read_text()) if args.out.exists() else {}
        report.setdefault("full", {})[str(args.full)] = full_scale(args.workdir, args.full, args.full_rows,
                                                                  args.full_commit, args.repeats)
        print(json.dumps(report["full"][str(args.full)], indent=2))
        args.out.write_text(json.dumps(report, indent=2))
        return
    if args.index_only:  # only this, added to an existing report
        report = json.loads(args.out.read_text()) if args.out.exists() else {}
        report["index_only"] = index_only(args.workdir, args.index_only, args.repeats)
        print(json.dumps(report["index_only"], indent=2))
        args.out.write_text(json.dumps(report, indent=2))
        return
    if args.lookup_only:
        report = json.loads(args.out.read_text())
        for r in report["results"]:
            url = args.workdir / f"store-{r['clips']}"
            clip = _clip(r["clips"] // 2)["clip_id"]
            r["after"]["lookup_one_clip_s"], _, _ = _best(partial(_lookup, url, clip), args.repeats)
        report["table"] = table(report["results"])
        print(report["table"])
        args.out.write_text(json.dumps(report, indent=2))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        results.append(run_size(args.workdir, n, args.repeats, args.legacy_verify_max, args.reuse))
    md = table(results)
    print(md)
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
              "batch": BATCH, "dim": DIM, "rows_per_clip": "uniform 8-32", "results": results, "table": md}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
