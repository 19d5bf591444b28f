#!/usr/bin/env python
"""Predict benchmark: score a generated 10-minute video end to end (segment, extract, align, model).

    python benchmarks/predict.py [--minutes 10] [--clips 72] [--workdir work/bench-predict]
                                 [--out benchmarks/results/predict.json]

1. the demo's training data and model: ``--clips`` generated clips → ingest → extract → align →
   ``train`` the full MCMF+SLGM model (the demo's frozen-text settings, one seed);
2. a new video of ``--minutes`` minutes from the same generator (planted segments with an ``.srt``,
   ``corpora.synth.long``);
3. ``flows.predict.predict_flow`` on it, twice: ``cold`` (an empty predict store: every segment is
   extracted) and ``warm`` (the same media again: the store is the cache, nothing is extracted).

Reported per pass: wall seconds per stage (the flow's own clock), segments, media seconds per wall
second, and the Pearson correlation of the scores with the planted labels (a sanity check that the
scores are the model's, not a speed figure). Run under Prefect's ephemeral API, on the machine's
cores as they are (2 on the reference machine; the load average is recorded).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as ``python benchmarks/predict.py`` from anywhere
    sys.path.insert(0, str(REPO))

from store.runtime import offline_hub  # noqa: E402 - after the path setup above

offline_hub()
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402


def train_demo_model(workdir: Path, clips: int) -> tuple[Any, str]:
    """The demo's data and full model (one seed): returns the pipeline config and the run directory."""
    from corpora.synth import generate_dataset
    from flows.align import align_flow
    from flows.demo import demo_config
    from flows.extract import run_extract
    from flows.ingest import ingest_flow
    from flows.train import train_flow

    cfg = demo_config(workdir)
    generate_dataset(Path(cfg.dataset.path or ""), n_clips=clips, seed=0, layout="manifest")
    ingest_flow(cfg)
    run_extract(cfg)
    align_flow(cfg)
    run = train_flow(cfg.store, cfg.align.view, cfg.train, cfg.runs, ablation="full")
    return cfg, run["run"]


def planted_correlation(table: Any, planted: list[Any]) -> float:
    """Pearson r of each scored segment's score with the overlap-weighted planted label it covers."""
    truth, scores = [], []
    for r in table.to_pylist():
        if r["score"] is None:
            continue
        weights = [(max(0.0, min(r["end"], p.end) - max(r["start"], p.start)), p.label) for p in planted]
        total = sum(w for w, _ in weights)
        if total > 0:
            truth.append(sum(w * lab for w, lab in weights) / total)
            scores.append(r["score"])
    return float(np.corrcoef(truth, scores)[0, 1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clips", type=int, default=72, help="generated training clips")
    ap.add_argument("--workdir", default="work/bench-predict")
    ap.add_argument("--out", default="benchmarks/results/predict.json")
    args = ap.parse_args(argv)

    from prefect.testing.utilities import prefect_test_harness

    from corpora.synth.long import generate_long_video
    from flows.predict import predict_flow
    from store import FeatureStore

    workdir = Path(args.workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    result: dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()},
        "args": vars(args), "load_start": os.getloadavg(), "passes": {},
    }
    with prefect_test_harness(server_startup_timeout=180):
        t0 = time.perf_counter()
        cfg, run = train_demo_model(workdir, args.clips)
        result["train_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        video = generate_long_video(workdir / "new", seed=1, minutes=args.minutes)
        result["video"] = {"seconds": video.duration, "planted_segments": len(video.segments),
                           "generate_seconds": round(time.perf_counter() - t0, 2)}
        for name in ("cold", "warm"):
            summary = predict_flow([str(video.media)], run, cfg)
            table = FeatureStore.open(cfg.predict.store).predictions(Path(run).name)
            result["passes"][name] = {
                "wall_seconds": round(summary.seconds, 2),
                "stages": {k: round(v, 2) for k, v in summary.timings.items()},
                "segments": summary.segments, "failed": summary.failed, "extracted": summary.extracted,
                "media_seconds_per_wall_second": round(video.duration / summary.seconds, 2),
                "planted_label_correlation": round(planted_correlation(table, video.segments), 3),
            }
            print(f"{name}: {json.dumps(result['passes'][name])}", flush=True)
    result["load_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
