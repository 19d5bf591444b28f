#!/usr/bin/env python
"""How many frames ``vision.cnn``'s near-duplicate rule keeps out of the CNN, and what it costs in features.

    python benchmarks/frame_skip.py [--thresholds none,0.25,0.5,0.75,1,2,3,4,6] [--runtime auto] [--threads 1]
                                    [--clips DIR] [--out benchmarks/results/frame_skip.json]

Issue 19. Every video clip (``*.mp4``, ``*.webm``) of ``../shared/data/clips`` is decoded exactly as
the default ``vision.cnn`` sees it (``frame_events``: 2 fps, 224x224, the default stream and
decoder) and every frame is embedded once by ``load_frame_encoder`` (``--runtime``). For each
``near_duplicate`` threshold (with the default ``still_max_diff`` 3; "none" is today's default,
the still rule alone) ``reuse_sources`` — the rule the extractor runs — says which frame's
features each frame would take. Reported per clip and threshold: the fraction of frames sent to the
CNN, and over the frames that reuse another's features the error against their own features: max
and mean abs difference, relative L2 (``|reused - own| / |own|``), min and mean cosine similarity.
For scale, the same measures between consecutive frames' own features, and the time the rule
itself takes per frame next to the CNN's.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402 - after the path setup above
import torch  # noqa: E402

from features.clips import ClipInput  # noqa: E402
from features.extractors.efficientnet import FEATURE_DIM, load_frame_encoder  # noqa: E402
from features.extractors.vision import CnnVisionConfig, frame_events, reuse_reason, reuse_sources  # noqa: E402
from features.media.probe import probe_media  # noqa: E402

SHARED_CLIPS = REPO.parent / "shared" / "data" / "clips"
THRESHOLDS = "none,0.25,0.5,0.75,1,2,3,4,6"
BATCH = 4  # vision.cnn's default batch size


def clip_frames(path: Path, cfg: CnnVisionConfig) -> np.ndarray:
    """The frames the default ``vision.cnn`` decodes from ``path`` [n, H, W, 3] uint8."""
    clip = ClipInput(path.name, str(path), None, None, "", probe_media(path).duration)
    chunks: list[np.ndarray] = []
    for ev in frame_events([clip], FEATURE_DIM, fps=cfg.fps, frame_size=(cfg.width, cfg.height),
                           video_stream=cfg.video_stream, decoder=cfg.decoder, chunk_size=cfg.chunk_size):
        if ev[0] == "result":
            raise RuntimeError(f"{path.name}: no frames ({ev[2]})")
        if ev[0] == "frames":
            chunks.append(ev[2])
    return np.concatenate(chunks)


def feature_error(reused: np.ndarray, own: np.ndarray) -> dict[str, float | None]:
    """How far ``reused`` features [n, d] are from the frames' ``own`` [n, d] (None: no rows)."""
    if not len(own):
        return {"max_abs": None, "mean_abs": None, "rel_l2_max": None, "cos_min": None, "cos_mean": None}
    diff = np.abs(reused - own)
    norms = np.linalg.norm(own, axis=1)
    cos = np.sum(reused * own, axis=1) / (np.linalg.norm(reused, axis=1) * norms)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "rel_l2_max": float((np.linalg.norm(reused - own, axis=1) / norms).max()),
            "cos_min": float(cos.min()), "cos_mean": float(cos.mean())}


def measure(frames: np.ndarray, feats: np.ndarray, still: int | None, near: float | None) -> dict[str, Any]:
    """One clip at one threshold: frames sent to the CNN and the error of the reused features."""
    n = len(frames)
    source = reuse_sources(frames, still, near)
    reused = np.flatnonzero(source != np.arange(n))
    return {"near_duplicate": near, "n_frames": n, "n_computed": n - len(reused),
            "computed_fraction": (n - len(reused)) / n, **feature_error(feats[source[reused]], feats[reused])}


def rule_ms(frames: np.ndarray, still: int | None, near: float) -> float:
    """Median time of one ``reuse_reason`` call on consecutive frames, in ms (the rule's own cost)."""
    times = []
    for a, b in zip(frames[1:], frames[:-1]):
        t0 = time.perf_counter()
        reuse_reason(a, b, still, near)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| clip | near_duplicate | to the CNN | reused | max abs | mean abs | rel L2 max | cos min | cos mean |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['clip']} | {'None' if r['near_duplicate'] is None else format(r['near_duplicate'], 'g')} "
            f"| {r['n_computed']}/{r['n_frames']} ({100 * r['computed_fraction']:.0f}%) "
            f"| {r['n_frames'] - r['n_computed']} | {fmt(r['max_abs'], '.3f')} | {fmt(r['mean_abs'], '.4f')} "
            f"| {fmt(r['rel_l2_max'], '.3f')} | {fmt(r['cos_min'], '.4f')} | {fmt(r['cos_mean'], '.4f')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", default=str(SHARED_CLIPS))
    ap.add_argument("--thresholds", default=THRESHOLDS, help="comma-separated; 'none' = the rule off")
    ap.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"))
    ap.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime intra-op threads")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "frame_skip.json"))
    args = ap.parse_args()
    thresholds = [None if t.strip().lower() == "none" else float(t) for t in args.thresholds.split(",")]
    paths = sorted(p for p in Path(args.clips).iterdir() if p.suffix in (".mp4", ".webm"))
    if not paths:
        raise SystemExit(f"no .mp4/.webm clips in {args.clips}")

    torch.set_num_threads(args.threads)
    cfg = CnnVisionConfig(runtime=args.runtime)
    encoder = load_frame_encoder(cfg.weights, "cpu", cfg.runtime)
    rows: list[dict[str, Any]] = []
    clips: list[dict[str, Any]] = []
    cnn_s, n_embedded = 0.0, 0
    for path in paths:
        frames = clip_frames(path, cfg)
        t0 = time.perf_counter()
        feats = np.concatenate([encoder.features(frames[lo : lo + BATCH]) for lo in range(0, len(frames), BATCH)])
        cnn_s, n_embedded = cnn_s + time.perf_counter() - t0, n_embedded + len(frames)
        consecutive = feature_error(feats[:-1], feats[1:])
        step = np.abs(frames[1:].astype(np.int16) - frames[:-1].astype(np.int16))
        step_mean = step.reshape(len(step), -1).mean(axis=1)
        clips.append({"clip": path.name, "n_frames": len(frames), "consecutive_features": consecutive,
                      "consecutive_mean_abs_pixels": {q: float(np.quantile(step_mean, p))
                                                      for q, p in (("p10", 0.1), ("median", 0.5), ("p90", 0.9))},
                      "rule_ms_per_frame": rule_ms(frames, cfg.still_max_diff, 1.0)})
        rows += [{"clip": path.name, **measure(frames, feats, cfg.still_max_diff, t)} for t in thresholds]

    report = {
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load": os.getloadavg()[0]},
        "config": {"fps": cfg.fps, "size": [cfg.width, cfg.height], "still_max_diff": cfg.still_max_diff,
                   "runtime": encoder.runtime, "threads": args.threads},
        "cnn_ms_per_frame": 1000 * cnn_s / n_embedded, "clips": clips, "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(rows))
    print("\nconsecutive frames' own features (for scale), and the rule's cost:")
    for c in clips:
        f, px = c["consecutive_features"], c["consecutive_mean_abs_pixels"]
        print(f"- {c['clip']}: mean abs pixel step p10/median/p90 {px['p10']:.2f}/{px['median']:.2f}/"
              f"{px['p90']:.2f}; features max abs {fmt(f['max_abs'], '.3f')}, cos min {fmt(f['cos_min'], '.4f')}, "
              f"cos mean {fmt(f['cos_mean'], '.4f')}; rule {c['rule_ms_per_frame']:.2f} ms/frame")
    print(f"CNN ({encoder.runtime}, {args.threads} thread(s), batch {BATCH}): "
          f"{report['cnn_ms_per_frame']:.1f} ms/frame; written {args.out}")


if __name__ == "__main__":
    main()
