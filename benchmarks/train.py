#!/usr/bin/env python
"""Training-speed benchmark: seconds per epoch, clips/s and peak RSS of MCMF+SLGM on a MOSI-sized view.

    python benchmarks/train.py [--train 1284] [--valid 229] [--L 50] [--epochs 2] [--batching bucket,shuffle]
                               [--threads 1,2] [--finetune-epochs 1] [--finetune-threads 1] [--profile]
                               [--out benchmarks/results/train.json]

A synthetic aligned view (random values, written with ``store.views.write_view`` into a temp store)
with the shapes of CMU-MOSI on a 50-step grid: text 384-d (MiniLM-L6 token states), audio 40-d
(MFCC), vision 1280-d (EfficientNet-Lite0), lengths uniform in [L/4, L], text token ids
``[CLS] w… [SEP]`` of the same lengths for fine-tuning with the local MiniLM-L6.

Measured, each configuration in a fresh spawned child process (so peak RSS and caches do not leak):

* ``frozen``: the full model (all three modalities, LGT, SM, UFF, SLGM, 4 heads), default
  TrainConfig (batch 16 × accumulate 4, grad clip 0.8) over cached text states; ``--epochs`` epochs
  (epoch 1 includes decompressing the view into the loader's block cache; later epochs are the
  steady state). Target: ≤ 10 s per epoch on 2 CPU cores.
* ``finetune``: the same model with the MiniLM-L6 encoder trained from the token ids
  (``--finetune-epochs``, default 1).

For every configuration: train seconds per epoch, train clips/s, valid-evaluation seconds, peak RSS
(``VmHWM`` of the child), torch threads, and the load average at start/end (the machine is
shared: compare figures of one invocation only). ``--profile`` adds a per-phase breakdown of one
frozen epoch (data, forward, loss, backward, optimizer step, SLGM).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as ``python benchmarks/train.py`` from anywhere
    sys.path.insert(0, str(REPO))

from store.runtime import offline_hub  # noqa: E402 - after the path setup above

offline_hub()  # set before transformers is imported, inherited by worker processes

import numpy as np  # noqa: E402

DIMS = {"text": 384, "audio": 40, "vision": 1280}
VIEW = "bench"


def write_synthetic_view(root: Path, n_train: int, n_valid: int, L: int, seed: int = 0,  # noqa: N803
                         text_model: str | None = None) -> dict[str, Any]:
    """A MOSI-sized random view in the aligned-view contract (docs/architecture.md)."""
    import pyarrow as pa

    from store.views import write_view

    if text_model is None:
        from features.extractors.packaged import default_model_path

        text_model = str(default_model_path())

    rng = np.random.default_rng(seed)
    n = n_train + n_valid
    lengths = rng.integers(max(2, L // 4), L + 1, size=n).astype(np.int32)
    steps = np.arange(L)[None, :] < lengths[:, None]
    arrays: dict[str, np.ndarray] = {}
    for m, d in DIMS.items():
        values = rng.standard_normal((n, L, d), dtype=np.float32)
        values[~steps] = 0.0
        arrays.update({f"{m}/values": values, f"{m}/lengths": lengths, f"{m}/present": np.ones(n, bool),
                       f"{m}/mean": np.zeros(d, np.float32), f"{m}/std": np.ones(d, np.float32)})
    ids = rng.integers(1000, 29000, size=(n, L)).astype(np.int32)  # ordinary word pieces of the vocab
    ids[:, 0] = 101  # [CLS]
    ids[np.arange(n), lengths - 1] = 102  # [SEP]
    ids[~steps] = 0
    arrays["text_tokens/input_ids"] = ids
    arrays["text_tokens/attention_mask"] = steps.astype(np.int32)
    labels = np.round(rng.uniform(-3, 3, size=n), 1)
    split = np.array(["train"] * n_train + ["valid"] * n_valid)
    clips = pa.table({"row": np.arange(n, dtype=np.int64), "clip_id": [f"c{i:05d}" for i in range(n)],
                      "label": labels.astype(np.float64), "split": split.tolist()})
    attrs = {"fingerprint": f"bench-{n_train}-{n_valid}-{L}-{seed}", "grid": "window",
             "modalities": {m: {"dim": d, "L": L} for m, d in DIMS.items()},
             "text_model_path": text_model}
    t0 = time.perf_counter()
    write_view(root, VIEW, arrays, clips, attrs)
    return {"clips": n, "train": n_train, "valid": n_valid, "L": L, "dims": DIMS,
            "write_seconds": round(time.perf_counter() - t0, 1),
            "nbytes_mb": round(sum(a.nbytes for a in arrays.values()) / 2**20, 1)}


def _rss_mb() -> float:
    """Peak RSS of this process in MB: ``VmHWM`` (per address space, so a spawned child does not
    inherit the parent's peak as ``ru_maxrss`` does across fork+exec), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(store: str, mode: str, epochs: int, threads: int, profile: bool, overrides: dict[str, Any],
            batching: str = "bucket", device_name: str = "cpu", trace: bool = False) -> dict[str, Any]:
    """Child process: build loaders/model as ``train_on_view`` does, time train epochs and a valid pass.
    ``batching``: ``TrainConfig.batching`` (``bucket`` = length-bucketed, the default; ``shuffle``).
    ``device_name``: ``TrainConfig.device`` (cpu | cuda | auto)."""
    import torch

    torch.set_num_threads(threads)
    from store.runtime import resolve_device
    from store.views import open_view
    from training.batching import make_loader
    from training.checks import check_view, finetune_model_path
    from training.config import SHORT, TrainConfig
    from training.data import Collator, ViewDataset, read_stats
    from training.loop import build_optimizer, evaluate, seed_everything, train_epoch
    from training.model import build_model
    from training.slgm import SLGM

    load0 = os.getloadavg()
    rss0 = _rss_mb()
    config = TrainConfig(text_mode=mode, device=device_name, seed=1111, batching=batching, **overrides)
    device = resolve_device(config.device)
    view = open_view(store, VIEW)
    dims = check_view(view, config)
    seed_everything(config.seed, config.deterministic)
    t0 = time.perf_counter()
    model = build_model(config, {SHORT[m]: d for m, d in dims.items()}, finetune_model_path(view, config)).to(device)
    build_s = time.perf_counter() - t0
    tokens = mode == "finetune"
    ds = {
        s: ViewDataset(view, s, config.modalities, tokens=tokens, cache_mb=config.cache_mb,
                       whole_shards=batching == "shards")
        for s in ("train", "valid")
    }
    collator = Collator(read_stats(view, config.modalities), finetune_text=tokens)
    loaders = {s: make_loader(d, collator, config, train=s == "train") for s, d in ds.items()}
    optimizer = build_optimizer(model, config)
    slgm = SLGM(torch.as_tensor(ds["train"].labels), {x: config.head_dim(x) for x in model.tasks},
                distance=config.distance, momentum=config.label_momentum, exclude_zero=config.exclude_zero,
                label_clip=config.label_clip).to(device) if config.use_slgm and len(model.tasks) > 1 else None
    cuda = device.type == "cuda"
    per_epoch = []
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        train_epoch(model, loaders["train"], optimizer, config, device, slgm, epoch)  # ends with a host read
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        evaluate(model, loaders["valid"], device)
        per_epoch.append({"epoch": epoch, "train_s": round(train_s, 2), "valid_s": round(time.perf_counter() - t, 2),
                          "train_clips_per_s": round(len(ds["train"]) / train_s, 1)})
    out: dict[str, Any] = {
        "mode": mode, "threads": threads, "batching": batching, "epochs": per_epoch, "build_model_s": round(build_s, 2),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "peak_rss_mb": round(_rss_mb(), 0), "rss_at_start_mb": round(rss0, 0),
        "load_start": [round(x, 2) for x in load0], "load_end": [round(x, 2) for x in os.getloadavg()],
        "overrides": overrides, "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
    }
    if cuda:
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 0)
    if profile:
        out["profile"] = profile_epoch(model, loaders["train"], optimizer, config, slgm, epochs + 1, device)
    if trace:
        out["trace"] = trace_steps(model, loaders["train"], optimizer, config, slgm, epochs + 1 + profile, device)
    return out


def trace_steps(model: Any, loader: Any, optimizer: Any, config: Any, slgm: Any, epoch: int, device: Any,
                steps: int = 24) -> str:
    """torch.profiler tables (by self device time, by call count) over ``steps`` training steps of
    ``training.loop.train_epoch``: which kernels and host calls an epoch is made of."""
    import itertools

    from torch.profiler import ProfilerActivity, profile

    from training.loop import train_epoch

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    few = list(itertools.islice(iter(loader), steps))
    with profile(activities=activities) as prof:
        train_epoch(model, few, optimizer, config, device, slgm, epoch)
    table = prof.key_averages()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return (table.table(sort_by=sort, row_limit=25) + "\n" + table.table(sort_by="count", row_limit=15))


def profile_epoch(model: Any, loader: Any, optimizer: Any, config: Any, slgm: Any, epoch: int,
                  device: Any) -> dict[str, Any]:
    """One epoch of ``training.loop.train_epoch``'s exact steps, each phase timed (seconds), plus the
    forward time per sub-module (forward hooks). On CUDA every phase ends with a synchronize, so
    the phases add up to more than an unprofiled epoch (which overlaps host and device work)."""
    import torch
    from torch import nn

    from training.loop import multitask_loss

    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    phases = dict.fromkeys(("data", "forward", "loss", "backward", "clip+step", "slgm"), 0.0)
    modules: dict[str, float] = {}
    starts: dict[str, float] = {}
    named = {"encoder_l": model.encoders["l"] if "l" in model.encoders else None}
    named.update({f"encoder_{u}": model.encoders[u] for u in ("a", "v") if u in model.encoders})
    if model.text_encoder is not None:
        named["text_encoder"] = model.text_encoder
    if model.lgt is not None:
        named.update({f"lgt_{b}": m for b, m in model.lgt.items()})
    named.update({f"sm_{b}": m for b, m in model.pool.items()})
    if model.fusion is not None:
        named["fusion"] = model.fusion
    named.update({f"head_{x}": m for x, m in model.heads.items()})
    hooks = []
    for name, mod in named.items():
        if mod is None:
            continue
        hooks.append(mod.register_forward_pre_hook(
            lambda m, a, name=name: starts.__setitem__(name, now())))
        hooks.append(mod.register_forward_hook(
            lambda m, a, o, name=name: modules.__setitem__(
                name, modules.get(name, 0.0) + now() - starts[name])))
    model.train()
    if slgm is not None:
        slgm.start_epoch(epoch)
    n_batches = len(loader)
    acc = config.accumulate
    params = [p for g in optimizer.param_groups for p in g["params"]]
    optimizer.zero_grad(set_to_none=True)
    t_all = now()
    t = now()
    for b, batch in enumerate(loader):
        batch = batch.to(device)
        phases["data"] += now() - t
        group_size = min(acc, n_batches - (b // acc) * acc)
        t = now()
        out = model(batch.inputs)
        phases["forward"] += now() - t
        t = now()
        targets = slgm.targets(batch.index) if slgm is not None else None
        loss, _ = multitask_loss(out, batch.label, targets)
        phases["loss"] += now() - t
        t = now()
        (loss / group_size).backward()
        phases["backward"] += now() - t
        t = now()
        if (b + 1) % acc == 0 or b + 1 == n_batches:
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        phases["clip+step"] += now() - t
        t = now()
        if slgm is not None:
            slgm.step(out.features, batch.index)
        phases["slgm"] += now() - t
        t = now()
    for h in hooks:
        h.remove()
    total = now() - t_all
    return {"total_s": round(total, 2), "phases_s": {k: round(v, 2) for k, v in phases.items()},
            "forward_by_module_s": {k: round(v, 2) for k, v in sorted(modules.items(), key=lambda kv: -kv[1])}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=1284)
    ap.add_argument("--valid", type=int, default=229)
    ap.add_argument("--L", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=2, help="frozen-mode epochs per configuration")
    ap.add_argument("--finetune-epochs", type=int, default=1, help="0 skips finetune mode")
    ap.add_argument("--threads", default="1,2", help="torch threads to try in frozen mode (comma list)")
    ap.add_argument("--finetune-threads", default="1", help="torch threads to try in finetune mode (comma list)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--trace", action="store_true", help="torch.profiler tables of 24 steps of the first config")
    ap.add_argument("--device", default="auto", help="TrainConfig.device: cpu | cuda | auto (CUDA when present)")
    ap.add_argument("--text-model", default=None, help="local text-model folder for finetune mode "
                    "(default: the packaged MiniLM-L6)")
    ap.add_argument("--batching", default="bucket,shuffle", help="TrainConfig.batching values to compare (comma "
                    "list); the first is used for every thread count, the others at the first thread count")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="TrainConfig override (YAML value)")
    ap.add_argument("--out", default="benchmarks/results/train.json")
    args = ap.parse_args(argv)

    from store.yaml12 import read_yaml  # --set values read as the CLI reads them

    overrides = {k: read_yaml(v) for k, v in (s.split("=", 1) for s in args.set)}
    threads = [int(x) for x in args.threads.split(",") if x]
    result: dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()},
        "args": vars(args), "runs": [],
    }
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="emoflow-train-bench-") as tmp:
        store = str(Path(tmp) / "store")
        result["view"] = write_synthetic_view(Path(store), args.train, args.valid, args.L, text_model=args.text_model)
        print(f"view: {result['view']}", flush=True)
        batchings = [x for x in args.batching.split(",") if x]
        configs = [("frozen", args.epochs, t, args.profile and t == threads[0], batchings[0]) for t in threads]
        configs += [("frozen", args.epochs, threads[0], False, x) for x in batchings[1:]]
        if args.finetune_epochs:
            configs += [("finetune", args.finetune_epochs, int(t), False, x)
                        for t in args.finetune_threads.split(",") if t for x in batchings]
        ctx = mp.get_context("spawn")
        for mode, epochs, t, prof, batching in configs:
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:  # a fresh interpreter per config
                r = pool.submit(measure, store, mode, epochs, t, prof, overrides, batching, args.device,
                                args.trace and not result["runs"]).result()
            result["runs"].append(r)
            last = r["epochs"][-1]
            print(f"{mode:8s} {r['device']} threads={t} batching={batching}: "
                  + ", ".join(f"epoch {e['epoch']} {e['train_s']:.1f} s" for e in r["epochs"])
                  + f"; valid {last['valid_s']:.1f} s; {last['train_clips_per_s']:.0f} clips/s; peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB; load {r['load_start'][0]:.1f}→{r['load_end'][0]:.1f}", flush=True)
            if "profile" in r:
                print(f"  profile: {json.dumps(r['profile'])}", flush=True)
            if "trace" in r:
                print(r["trace"], flush=True)
    result["load"] = {"start": [round(x, 2) for x in load0], "end": [round(x, 2) for x in os.getloadavg()]}
    print()
    print("| mode | device | torch threads | batching | s/epoch (train, last epoch) | epoch 1 (cold cache) "
          "| train clips/s | valid pass s | peak RSS MB | load 1-min |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in result["runs"]:
        e = r["epochs"]
        print(f"| {r['mode']} | {r['device']} | {r['threads']} | {r['batching']} | {e[-1]['train_s']:.2f} | "
              f"{e[0]['train_s']:.2f} | "
              f"{e[-1]['train_clips_per_s']:.0f} | {e[-1]['valid_s']:.1f} | {r['peak_rss_mb']:.0f} | "
              f"{r['load_start'][0]:.1f}→{r['load_end'][0]:.1f} |")
    out = (REPO / args.out) if not os.path.isabs(args.out) else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
