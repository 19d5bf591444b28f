#!/usr/bin/env python
"""Peak memory and wall time of building a three-modality aligned view, by clip count and block size.

    python benchmarks/align_memory.py [--sizes 2000,8000] [--block-mb 64,512] [--workdir /tmp/emoflow-align-mem]
                                      [--out benchmarks/results/align_memory.json]

Synthetic stores are built through the store's own commit API (``FeatureSet.commit``): 4-second
clips with text 384-d (20 rows), audio 40-d (MFCC-like, 100 rows/s) and vision 1280-d (2 frames/s)
random float32 features, committed in batches of 8 with the fingerprints the extractors' identities
give, so ``align`` finds every clip usable. Each view is then built (``features.align.align_view``,
0.5 s windows) in a fresh spawned process, whose peak RSS (``VmHWM``) and wall seconds are
reported: before issue 18 the whole [N, L, D] view of every modality was held in memory (≈ 55 KB
per clip here, ×2 while normalising); now values are held in blocks of ``--block-mb`` per modality.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as ``python benchmarks/align_memory.py`` from anywhere
    sys.path.insert(0, str(REPO))

from benchmarks.train import _rss_mb  # noqa: E402 - after the path setup above
from features.extractors.base import FeatureResult  # noqa: E402
from store import FeatureStore, schema  # noqa: E402
from store.fingerprint import clip_fingerprint, feature_fingerprint  # noqa: E402

DURATION = 4.0
#: modality -> (extractor name, dim, rows per second of clip)
SETS = {"text": ("text.bert", 384, 5.0), "audio": ("audio.mfcc", 40, 100.0), "vision": ("vision.cnn", 1280, 2.0)}
BATCH = 8


def _clip(i: int) -> dict[str, Any]:
    row: dict[str, Any] = {"clip_id": f"vid{i // 20:06d}_{i % 20}", "video_id": f"vid{i // 20:06d}",
                           "media_uri": None, "start": 0.0, "end": DURATION, "duration": DURATION,
                           "text": f"synthetic transcript number {i}", "words": None, "label": 0.0,
                           "split": ("train", "valid", "test")[i % 3], "has_video": True, "has_audio": True,
                           "media_fingerprint": f"{i:064x}"}
    row["clip_fingerprint"] = clip_fingerprint(row)
    return row


def build(url: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """N clips with features of all three modalities, committed in batches of ``BATCH``."""
    t0 = time.perf_counter()
    shutil.rmtree(url, ignore_errors=True)
    store = FeatureStore.open(url, create=True)
    clips = [_clip(i) for i in range(n)]
    store.write_clips(pa.Table.from_pylist(clips, schema=schema.CLIPS))
    rng = np.random.default_rng(seed)
    for m, (extractor, dim, rate) in SETS.items():
        identity = {"name": extractor, "version": "bench", "dim": dim}
        fset = store.ensure_feature_set(f"{extractor}-bench", {
            "extractor": extractor, "version": "bench", "modality": m, "config": {}, "identity": identity,
            "dim": dim, "created": "2026-01-01T00:00:00+00:00"})
        rows = int(DURATION * rate)
        t = np.arange(rows, dtype=np.float64) / rate
        times = np.stack([t, t + 1 / rate], axis=1)
        for start in range(0, n, BATCH):
            items = []
            for clip in clips[start:start + BATCH]:
                extras = ({"word_index": np.arange(rows, dtype=np.int32),
                           "input_ids": rng.integers(1000, 29000, rows, dtype=np.int32),
                           "attention_mask": np.ones(rows, np.int8)} if m == "text" else {})
                feat = FeatureResult(values=rng.standard_normal((rows, dim), dtype=np.float32), times=times,
                                     extras=extras, meta={})
                items.append((clip["clip_id"], feature_fingerprint(clip, m, identity), feat, DURATION))
            fset.commit(items)
    return {"clips": n, "build_s": round(time.perf_counter() - t0, 1)}


def measure(url: str, block_mb: float) -> dict[str, Any]:
    """Child process: build the view once, report wall seconds and peak RSS."""
    from features.align import AlignConfig
    from features.align.view import align_view

    rss0 = _rss_mb()
    t0 = time.perf_counter()
    summary = align_view(url, AlignConfig(view=f"mem-{block_mb:g}", grid="window", window=0.5), force=True,
                         block_mb=block_mb)
    return {"block_mb": block_mb, "align_s": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(_rss_mb()),
            "rss_before_mb": round(rss0), "clips": summary.clips}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000,8000")
    ap.add_argument("--block-mb", default="64,512", help="block sizes to compare (MB of values per modality)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/emoflow-align-mem"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "align_memory.json")
    args = ap.parse_args(argv)
    results = []
    ctx = mp.get_context("spawn")
    for n in (int(x) for x in args.sizes.split(",")):
        url = args.workdir / f"store-{n}"
        built = build(url, n)
        print(f"built {built}", flush=True)
        for block in (float(x) for x in args.block_mb.split(",")):
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:  # a fresh interpreter per build
                r = pool.submit(measure, str(url), block).result()
            results.append({**built, **r})
            print(json.dumps(results[-1]), flush=True)
    print("\n| clips | block MB | align s | peak RSS MB |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['clips']:,} | {r['block_mb']:g} | {r['align_s']:.1f} | {r['peak_rss_mb']:,} |")
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
