#!/usr/bin/env python
"""EfficientNet-Lite0 frame features: torch vs ONNX Runtime (vs OpenVINO, when it imports), CPU.

    python benchmarks/cnn_runtime.py [--rounds 5] [--frames 32] [--out benchmarks/results/cnn_runtime.json]

Issue 19. Frames: 224x224, sampled at 2 fps from the shared real clips (NASA narration, manifesto
reading) and the two portrait photos when ``../shared/data`` is there, else from two clips of the
demo generator. Every configuration (runtime × batch 1/4/16 × 1/2 intra-op threads) embeds the same
``--frames`` frames once per round; the rounds alternate the configurations (order reversed every
other round) so a change of machine load hits them all alike, and the median of the rounds is
reported: process CPU time (user + system, all threads) and wall time, in ms per frame.

Runtimes: ``torch`` (the folded, channels_last model, ``torch.set_num_threads``), ``onnx`` (the
product's session: ``features.extractors.onnx_runtime.session``, spinning off), ``onnx-spin`` (the
same with ONNX Runtime's default spinning thread pool, 2 threads only: why the product turns it
off), ``openvino`` (optional: ``pip install --target /tmp/openvino --no-deps openvino
openvino-telemetry`` and ``PYTHONPATH=/tmp/openvino``; the same ONNX file, f32 inference precision
forced, as this CPU would otherwise run bf16; one compiled model per batch size). Also reported:
the max abs difference of each runtime's features from torch's on all the frames.

Then the text encoder (``text.bert``'s MiniLM-L6, ``--text-sentences`` MOSI transcripts, or demo
lexicon sentences without the shared data): the extractor's own batches (sorted by length, 32 a
batch) through its torch and ONNX encoders, CPU-ms per sentence, same alternation.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402 - after the path setup above
import torch  # noqa: E402

from features.extractors import onnx_runtime  # noqa: E402
from features.extractors.efficientnet import (  # noqa: E402
    export_features_onnx,
    frame_features,
    load_efficientnet_lite0,
)
from features.extractors.packaged import default_weights_path  # noqa: E402
from features.media.video import decode_video  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
TEXT_BATCH = 32
BATCHES = (1, 4, 16)
THREADS = (1, 2)
Embed = Callable[[np.ndarray], np.ndarray]


def load_frames(n: int, workdir: Path) -> tuple[np.ndarray, str]:
    """``n`` 224x224 RGB frames and where they come from (cycled when the sources have fewer)."""
    parts: list[np.ndarray] = []
    clips = SHARED / "clips"
    if clips.is_dir():
        source = "shared real clips (nasa_webb_narration.mp4, manifesto_audiobook.mp4) + face photos"
        for name in ("nasa_webb_narration.mp4", "manifesto_audiobook.mp4"):
            out = decode_video(str(clips / name), fps=2.0, width=224, height=224, end=16.0)
            if out is not None:
                parts.append(out[0])
        if (SHARED / "faces").is_dir():
            from PIL import Image

            for name in ("obama.jpg", "biden.jpg"):
                with Image.open(SHARED / "faces" / name) as im:
                    parts.append(np.asarray(im.convert("RGB").resize((224, 224)))[None])
    else:
        from corpora.synth import write_clip

        source = "demo-generator clips (v = -1, +1)"
        for i, v in enumerate((-1.0, 1.0)):
            path = write_clip(workdir / f"v{i}.mp4", seconds=10.0, size=(320, 240), v=v, seed=i, audio=False)
            out = decode_video(str(path), fps=2.0, width=224, height=224)
            if out is not None:
                parts.append(out[0])
    frames = np.concatenate(parts)
    return np.ascontiguousarray(frames[np.arange(n) % len(frames)]), source


def torch_embed(threads: int) -> Embed:
    model = load_efficientnet_lite0(default_weights_path(), "cpu")

    def run(x: np.ndarray) -> np.ndarray:
        torch.set_num_threads(threads)
        return frame_features(model, x)

    return run


def onnx_embed(path: Path, threads: int, spin: bool) -> Embed:
    sess = onnx_runtime.session(path, threads)
    if spin:  # the same options with ONNX Runtime's default spinning pool
        import onnxruntime  # type: ignore[import-untyped]

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        sess = onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"frames": x})[0]


def openvino_embed(path: Path, threads: int) -> Embed | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    compiled: dict[int, Any] = {}

    def run(x: np.ndarray) -> np.ndarray:
        if len(x) not in compiled:
            model = core.read_model(str(path))
            model.reshape({"frames": [len(x), *x.shape[1:]]})
            compiled[len(x)] = core.compile_model(model, "CPU", {
                "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
            })
        return np.asarray(compiled[len(x)]({"frames": x})[0])

    return run


def time_pass(embed: Embed, frames: np.ndarray, batch: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per frame for one pass over ``frames`` in batches of ``batch``."""
    cpu, wall = time.process_time(), time.perf_counter()
    for lo in range(0, len(frames), batch):
        embed(frames[lo : lo + batch])
    n = len(frames)
    return (time.process_time() - cpu) * 1000 / n, (time.perf_counter() - wall) * 1000 / n


def text_batches(n: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """``n`` sentences tokenized as ``text.bert`` does, sorted by length, padded in batches of 32."""
    import csv

    from corpora.synth import LEXICON
    from features.extractors.packaged import default_model_path
    from features.extractors.text import load_text_model

    mosi = SHARED / "mosi" / "mosi_text_trainval.csv"
    if mosi.is_file():
        with mosi.open(encoding="utf-8") as fh:
            texts, source = [r["text"] for _, r in zip(range(n), csv.DictReader(fh))], "MOSI transcripts"
    else:
        words = [w for group in LEXICON.values() for w in group]
        texts = [" ".join(words[i % 7 : i % 7 + 3 + i % 20]) for i in range(n)]
        source = "demo lexicon sentences"
    tokenizer, _ = load_text_model(default_model_path(), "cpu")
    ids = sorted((tokenizer(t.split(), is_split_into_words=True, truncation=True, max_length=128)["input_ids"]
                  for t in texts), key=len)
    batches = []
    for lo in range(0, len(ids), TEXT_BATCH):
        part = ids[lo : lo + TEXT_BATCH]
        x = np.zeros((len(part), max(map(len, part))), np.int64)
        m = np.zeros_like(x)
        for r, row in enumerate(part):
            x[r, : len(row)], m[r, : len(row)] = row, 1
        batches.append((x, m))
    return batches, f"{source}, mean {np.mean([len(r) for r in ids]):.1f} word pieces"


def text_benchmark(n: int, rounds: int) -> dict[str, Any]:
    """CPU/wall ms per sentence of the text encoder, torch vs ONNX Runtime, 1 and 2 threads."""
    from features.extractors import text

    batches, source = text_batches(n)
    encoders: dict[tuple[str, int], text.TokenEncoder] = {}
    for t in THREADS:
        torch.set_num_threads(t)
        ex = text.BertTextExtractor(text.BertTextConfig(device="cpu", runtime="torch"))
        encoders["torch", t] = ex.load()[1]
        ex = text.BertTextExtractor(text.BertTextConfig(device="cpu", runtime="onnx"))
        encoders["onnx", t] = ex.load()[1]
    diff = max(float(np.abs(encoders["onnx", 1].states(x, m) - encoders["torch", 1].states(x, m))[m > 0].max())
               for x, m in batches)
    plan = list(encoders)
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {p: [] for p in plan}
    for r in range(rounds):
        for rt, t in plan if r % 2 == 0 else plan[::-1]:
            torch.set_num_threads(t)
            cpu, wall = time.process_time(), time.perf_counter()
            for x, m in batches:
                encoders[rt, t].states(x, m)
            samples[rt, t].append(((time.process_time() - cpu) * 1000 / n, (time.perf_counter() - wall) * 1000 / n))
    rows = [{"runtime": rt, "threads": t, "batch": TEXT_BATCH,
             "cpu_ms": statistics.median(c for c, _ in s), "wall_ms": statistics.median(w for _, w in s),
             "cpu_ms_rounds": [round(c, 2) for c, _ in s]} for (rt, t), s in samples.items()]
    return {"sentences": n, "source": source, "max_abs_diff_vs_torch": diff, "rows": rows}


def markdown(rows: list[dict[str, Any]], batches: tuple[int, ...] = BATCHES) -> str:
    """CPU-ms / wall-ms per frame, one line per (threads, batch), one column pair per runtime."""
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    head = "| threads | batch | " + " | ".join(f"{r} CPU-ms | {r} wall-ms" for r in runtimes) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(runtimes))]
    for t in THREADS:
        for b in batches:
            cells = []
            for rt in runtimes:
                hit = [r for r in rows if r["runtime"] == rt and r["threads"] == t and r["batch"] == b]
                cells += [f"{hit[0]['cpu_ms']:.1f}", f"{hit[0]['wall_ms']:.1f}"] if hit else ["", ""]
            lines.append(f"| {t} | {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=32, help="frames per pass (a multiple of 16)")
    ap.add_argument("--text-sentences", type=int, default=256, help="0: skip the text encoder")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cnn_runtime.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="emoflow-cnn-runtime-") as tmp:
        frames, source = load_frames(args.frames, Path(tmp))
        onnx_path = Path(tmp) / "lite0-224.onnx"
        export_features_onnx(str(default_weights_path().resolve()), 224, 224, onnx_path)

        configs: dict[tuple[str, int], Embed] = {}
        for t in THREADS:
            configs["torch", t] = torch_embed(t)
            configs["onnx", t] = onnx_embed(onnx_path, t, spin=False)
            if t > 1:
                configs["onnx-spin", t] = onnx_embed(onnx_path, t, spin=True)
            ov = openvino_embed(onnx_path, t)
            if ov is not None:
                configs["openvino", t] = ov

        ref = torch_embed(1)(frames)
        max_abs = {rt: float(np.abs(configs[rt, 1](frames) - ref).max())
                   for rt in dict.fromkeys(rt for rt, _ in configs) if (rt, 1) in configs}
        max_abs["onnx-spin"] = float(np.abs(configs["onnx-spin", 2](frames) - ref).max())

        plan = [(rt, t, b) for (rt, t) in configs for b in BATCHES]
        for rt, t, b in plan:  # warm-up: first-call allocations, OpenVINO compiles
            time_pass(configs[rt, t], frames[: 2 * b], b)
        samples: dict[tuple[str, int, int], list[tuple[float, float]]] = {p: [] for p in plan}
        load0 = os.getloadavg()
        for r in range(args.rounds):
            for rt, t, b in plan if r % 2 == 0 else plan[::-1]:
                samples[rt, t, b].append(time_pass(configs[rt, t], frames, b))
        load1 = os.getloadavg()

    text_report = text_benchmark(args.text_sentences, args.rounds) if args.text_sentences else None
    rows = [{"runtime": rt, "threads": t, "batch": b,
             "cpu_ms": statistics.median(c for c, _ in s), "wall_ms": statistics.median(w for _, w in s),
             "cpu_ms_rounds": [round(c, 2) for c, _ in s], "wall_ms_rounds": [round(w, 2) for _, w in s]}
            for (rt, t, b), s in samples.items()]
    versions = {"torch": torch.__version__, **onnx_runtime.exporter_versions()}
    try:
        import openvino

        versions["openvino"] = openvino.__version__
    except ImportError:
        pass
    report = {
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_start": load0, "load_end": load1},
        "versions": versions, "frames": {"n": len(frames), "size": [224, 224], "source": source},
        "rounds": args.rounds, "max_abs_diff_vs_torch": max_abs, "rows": rows, "text": text_report,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(rows))
    print("\nmax abs difference from torch:", {k: f"{v:.1e}" for k, v in max_abs.items()})
    if text_report:
        print(f"\ntext encoder, {text_report['sentences']} sentences ({text_report['source']}), "
              f"max abs difference {text_report['max_abs_diff_vs_torch']:.1e}")
        print(markdown(text_report["rows"], batches=(TEXT_BATCH,)))
    print(f"load average {load0[0]:.1f} → {load1[0]:.1f}; written {args.out}")


if __name__ == "__main__":
    main()
