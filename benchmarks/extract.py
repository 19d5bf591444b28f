#!/usr/bin/env python
"""Extraction benchmark: naive one-clip-at-a-time baseline vs the real pipeline (``run_extract``).

    python benchmarks/extract.py [--clips 10,100] [--shared /work/shared/data/clips]
                                 [--out benchmarks/results/extract.json] [--quick]

What it measures, per stage (text.bert, audio.mfcc, audio.egemaps, vision.cnn, vision.face) and end to end
with the extract stage's default extractors (text.bert, audio.mfcc, vision.cnn), on a mix of the
shared real clips and generated ones (corpora/synth/):

* realtime factor (media seconds / wall second), clips/s, CPU seconds of the process tree, and the
  peak RSS of the process tree (flow process + Dask workers + Prefect's ephemeral API server),
  sampled every 50 ms with psutil on a background thread (summed RSS: shared pages count per process);
* NAIVE: one clip at a time, stages in sequence (text, audio, vision), same models run in torch
  (``runtime: torch``), vision embedding every frame (``EVERY_FRAME``) with ``channels_last=False,
  prefetch=0``, one process, torch default threads; its end-to-end figure is the default
  extractors' share of that pass;
* DECODE ONLY: the mix's video decoded at 2 fps 224x224 and its audio at 16 kHz, no model, two
  clips at a time: the limit the pipeline is measured against;
* OPTIMISED: ingest into a temp store and ``flows.extract.run_extract`` with the Lite0 default
  extractor configs (vision ``batch_size`` may differ: a runtime knob, outside the identity), for a
  few executor / batch configurations; the fastest end to end becomes "optimised", is run again
  stage by stage and on 10 vs 100 generated clips (peak RSS must stay flat).

Every configuration runs in a fresh child interpreter (this script with ``--_child``), one after the
other, so model caches and RSS do not leak from one configuration into the next. In each child the
heavy libraries are imported (and Prefect's ephemeral server started) before timing; each timed run
starts with empty model caches, so model loading is inside every figure. Dask workers are new
processes each run and pay their imports inside the timed run. The load average is recorded at the
start and end of every run: the machine is shared, compare figures of one invocation only.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as ``python benchmarks/extract.py`` from anywhere
    sys.path.insert(0, str(REPO))

from corpora.layouts.media_files import MEDIA_SUFFIXES  # noqa: E402 - after the path setup above
from features.extractors.vision import EVERY_FRAME  # noqa: E402

STAGES = ("text.bert", "audio.mfcc", "audio.egemaps", "vision.cnn", "vision.face")
# end to end means the extract stage's default extractors (stages.config); the others are timed per stage
DEFAULT_STAGES = ("text.bert", "audio.mfcc", "vision.cnn")
# the naive baseline runs the models in torch (the reference runtime), as a plain script would
NAIVE_CONFIGS: dict[str, dict[str, Any]] = {
    "text.bert": {"runtime": "torch"},
    "audio.mfcc": {},
    "audio.egemaps": {},
    "vision.cnn": {**EVERY_FRAME, "channels_last": False, "prefetch": 0, "runtime": "torch"},
    "vision.face": {**EVERY_FRAME, "channels_last": False, "prefetch": 0, "runtime": "torch"},
}
# Candidate pipeline configurations (label -> executor + batching). The Lite0 default extractor
# configs are used throughout; ``vision_batch`` overrides only vision.cnn's runtime batch_size.
# ``api``: export the flow process's Prefect API URL to the Dask workers (see docs/performance.md:
# without it every Dask worker process starts its own ephemeral Prefect server). ``torch_threads``:
# torch.set_num_threads in the flow process (what OMP_NUM_THREADS=1 does), for the threads runner.
_T2 = {"dask": None, "workers": 2}
_D21 = {"dask": "local", "workers": 2, "threads_per_worker": 1}
_D12 = {"dask": "local", "workers": 1, "threads_per_worker": 2}
CANDIDATES: dict[str, dict[str, Any]] = {
    # as shipped: ExecutorConfig() and the extractor defaults
    "threads-2": {"executor": _T2, "batch_clips": 8},
    "dask-2x1": {"executor": _D21, "batch_clips": 8},
    "dask-1x2": {"executor": _D12, "batch_clips": 8},
    # threads runner, torch limited to 1 intra-op thread per task (2 tasks in flight on 2 cores)
    "threads-2-v4": {"executor": _T2, "batch_clips": 8, "vision_batch": 4},
    "threads-2-t1": {"executor": _T2, "batch_clips": 8, "torch_threads": 1},
    "threads-2-t1-v4": {"executor": _T2, "batch_clips": 8, "torch_threads": 1, "vision_batch": 4},
    "threads-2-t1-v8": {"executor": _T2, "batch_clips": 8, "torch_threads": 1, "vision_batch": 8},
    "threads-2-t1-v16": {"executor": _T2, "batch_clips": 8, "torch_threads": 1, "vision_batch": 16},
    "threads-2-t1-b4-v4": {"executor": _T2, "batch_clips": 4, "torch_threads": 1, "vision_batch": 4},
    # Dask with the flow process's Prefect API URL exported to the workers
    "dask-2x1-api": {"executor": _D21, "batch_clips": 8, "api": True},
    "dask-2x1-api-v4": {"executor": _D21, "batch_clips": 8, "api": True, "vision_batch": 4},
    "dask-2x1-api-b4-v4": {"executor": _D21, "batch_clips": 4, "api": True, "vision_batch": 4},
    "dask-1x2-api": {"executor": _D12, "batch_clips": 8, "api": True},
    # on a GPU machine (issue 19): the models on CUDA, decoding, audio and the store on CPU threads, the
    # tasks' frames run by the process's shared encoder thread in padded batches of 128 (``BATCH_SIZE``,
    # ``features.extractors.shared_batches``); ``-own``: each task calls the CNN from its own thread, as
    # before the shared encoder. Run as ``--best cuda-threads-8 --shared ''`` there (CUDA must be present)
    "cuda-threads-8": {"executor": {"dask": None, "workers": 8}, "batch_clips": 8, "device": "cuda"},
    "cuda-threads-8-own": {"executor": {"dask": None, "workers": 8}, "batch_clips": 8, "device": "cuda",
                           "shared_batches": False},
    "cuda-threads-16": {"executor": {"dask": None, "workers": 16}, "batch_clips": 8, "device": "cuda"},
    # the shared encoder on the CPU (not the default there: one thread for the CNN of every task)
    "threads-2-shared": {"executor": _T2, "batch_clips": 8, "shared_batches": True},
    # an experiment, not a shipped configuration: what the malloc_trim patch in docs/performance.md
    # does (with the threads runner the progress hook runs in the extracting process)
    "threads-2-t1-trim": {"executor": _T2, "batch_clips": 8, "torch_threads": 1, "malloc_trim": True},
    "threads-2-t1-v4-trim": {"executor": _T2, "batch_clips": 8, "torch_threads": 1, "vision_batch": 4,
                             "malloc_trim": True},
}
FULL_CANDIDATES = ("threads-2", "threads-2-t1", "threads-2-v4", "threads-2-t1-v4", "dask-2x1", "dask-2x1-api-v4")
QUICK_CANDIDATES = ("threads-2", "threads-2-t1-v4")
CHEAP_REPEATS = 3  # text and audio stages take seconds: measured this many times, minimum reported
SHARED_TRANSCRIPTS = {  # media file -> transcript file next to it (None: no transcript shipped)
    "nasa_webb_narration.mp4": "nasa_webb_narration.en.srt",
    "nasa_webb_narration.vp9_opus.webm": "nasa_webb_narration.en.srt",
    "manifesto_audiobook.mp4": "manifesto_audiobook.words.json",
    "jfk_inaugural.flac": "jfk_inaugural.txt",
    "librispeech_2412-153948-0000.flac": "librispeech_2412-153948-0000.txt",
}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ----------------------------------------------------------------------------------------------
# process-tree sampler (RSS + CPU), used inside each child
# ----------------------------------------------------------------------------------------------
def _role(proc: Any, root_pid: int) -> str:
    if proc.pid == root_pid:
        return "main"
    try:
        cmd = " ".join(proc.cmdline())
    except Exception:  # a process that just ended
        return "other"
    if "resource_tracker" in cmd:
        return "other"
    if "spawn_main" in cmd or "distributed" in cmd or "dask" in cmd:
        return "dask-worker"
    if "prefect" in cmd or "uvicorn" in cmd:
        return "prefect-server"
    return "other"


class TreeSampler(threading.Thread):
    """Samples RSS and CPU times of this process and all its descendants every ``interval`` s.

    ``start_window()`` / ``stop_window()`` bracket one measured run; the window reports the peak of
    the summed RSS of the tree, the peak per role (main, dask-worker, prefect-server, other), the
    largest single process, and the CPU seconds (user + sys) the tree spent inside the window.
    Summed RSS counts pages shared between processes (libtorch text) once per process: it is an
    upper bound of the real footprint, the right one for "does it fit".
    """

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        import psutil

        self.psutil = psutil
        self.root = psutil.Process()
        self.interval = interval
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.roles: dict[int, str] = {}
        self.procs: dict[int, Any] = {self.root.pid: self.root}
        self._at_window_start: set[int] = {self.root.pid}
        self._reset()

    def _reset(self) -> None:
        self.peak_total = 0
        self.peak_role: dict[str, int] = {}
        self.peak_single = 0
        self.cpu_base: dict[int, float] = {}
        self.cpu_last: dict[int, float] = {}
        self.max_procs = 0
        self.samples = 0

    def _tree(self) -> list[Any]:
        try:
            kids = self.root.children(recursive=True)
        except self.psutil.Error:
            kids = []
        out = [self.root]
        for k in kids:  # keep Process objects so cpu_times/roles are cheap and stable
            p = self.procs.setdefault(k.pid, k)
            out.append(p)
        return out

    def sample(self) -> None:
        per_role: dict[str, int] = {}
        total = 0
        single = 0
        cpu_now: dict[int, float] = {}
        procs = self._tree()
        for p in procs:
            try:
                with p.oneshot():
                    rss = p.memory_info().rss
                    ct = p.cpu_times()
            except self.psutil.Error:
                continue
            if p.pid not in self.roles:
                self.roles[p.pid] = _role(p, self.root.pid)
            role = self.roles[p.pid]
            per_role[role] = per_role.get(role, 0) + rss
            total += rss
            single = max(single, rss)
            cpu_now[p.pid] = ct.user + ct.system
        with self.lock:
            self.samples += 1
            self.peak_total = max(self.peak_total, total)
            self.peak_single = max(self.peak_single, single)
            self.max_procs = max(self.max_procs, len(procs))
            for role, v in per_role.items():
                self.peak_role[role] = max(self.peak_role.get(role, 0), v)
            for pid, c in cpu_now.items():
                self.cpu_base.setdefault(pid, 0.0 if self._started_after_window(pid) else c)
                self.cpu_last[pid] = c

    def _started_after_window(self, pid: int) -> bool:
        return pid not in self._at_window_start

    def start_window(self) -> None:
        with self.lock:
            self._reset()
            self._at_window_start = {p.pid for p in self._tree()}
        self.sample()

    def stop_window(self) -> dict[str, Any]:
        self.sample()
        with self.lock:
            cpu = sum(self.cpu_last[p] - self.cpu_base.get(p, 0.0) for p in self.cpu_last)
            mb = 1024 * 1024
            return {
                "peak_rss_mb": round(self.peak_total / mb, 1),
                "peak_rss_by_role_mb": {k: round(v / mb, 1) for k, v in sorted(self.peak_role.items())},
                "peak_rss_single_process_mb": round(self.peak_single / mb, 1),
                "cpu_s": round(cpu, 2),
                "max_processes": self.max_procs,
                "rss_samples": self.samples,
            }

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                self.sample()
            except Exception:  # never let the sampler kill a benchmark
                pass


# ----------------------------------------------------------------------------------------------
# child side: one configuration, fresh interpreter
# ----------------------------------------------------------------------------------------------
def _clear_model_caches() -> None:
    """Cold start for every measured run (Dask workers are fresh processes each run anyway)."""
    import gc

    from features.extractors.base import (
        clear_model_caches,  # stages.extract, imported by the callers, registers its cache
    )

    clear_model_caches()
    gc.collect()


def _warm_libraries() -> float:
    """Import the heavy libraries and run librosa's one-time lazy set-up before any timed run, in
    every child alike: a timed run then pays model loading (caches are cleared) but not imports.
    Dask worker processes are fresh in every run, so they still pay imports inside the timed run:
    that is a real cost of the process executor and shows in its figures."""
    t0 = time.perf_counter()
    import numpy as np
    import opensmile  # noqa: F401 - audio.egemaps' wrapper (pandas, audinterface); its Smile is built per run
    from transformers import AutoModel, AutoTokenizer  # noqa: F401 - transformers' lazy import

    import features.extractors.face
    import features.extractors.text
    import features.extractors.vision  # noqa: F401 - imported to time the import (with .text, .face above)
    from features.extractors.audio import MfccConfig, mfcc_frames

    mfcc_frames(np.zeros(16000, np.float32), MfccConfig())
    return round(time.perf_counter() - t0, 2)


def _clip_rows(store_url: str) -> list[dict[str, Any]]:
    from store import FeatureStore

    return FeatureStore.open(store_url).clips().to_pylist()


def _stage_media(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Media seconds each stage really covers: vision needs a video stream, audio an audio stream,
    text a transcript; end to end counts every clip's duration once."""
    def secs(pred: Any) -> float:
        return round(sum(r["duration"] for r in rows if pred(r)), 3)

    return {
        "clips": len(rows),
        "media_s": secs(lambda r: True),
        "stage_media_s": {
            "text.bert": secs(lambda r: bool((r.get("text") or "").strip())),
            "audio.mfcc": secs(lambda r: r["has_audio"]),
            "audio.egemaps": secs(lambda r: r["has_audio"]),
            "vision.cnn": secs(lambda r: r["has_video"]),
            "vision.face": secs(lambda r: r["has_video"]),
        },
        "stage_clips": {
            "text.bert": sum(1 for r in rows if (r.get("text") or "").strip()),
            "audio.mfcc": sum(1 for r in rows if r["has_audio"]),
            "audio.egemaps": sum(1 for r in rows if r["has_audio"]),
            "vision.cnn": sum(1 for r in rows if r["has_video"]),
            "vision.face": sum(1 for r in rows if r["has_video"]),
        },
    }


def _pipeline_config(store: str, dataset: str, cand: dict[str, Any], stages: tuple[str, ...]) -> Any:
    from stages.config import PipelineConfig

    extractors: dict[str, dict[str, Any]] = {s: {} for s in stages}
    if "vision.cnn" in extractors and cand.get("vision_batch"):
        extractors["vision.cnn"] = {"batch_size": cand["vision_batch"]}
    for name in ("vision.cnn", "vision.face"):
        if name in extractors and "shared_batches" in cand:
            extractors[name]["shared_batches"] = cand["shared_batches"]
    for name in ("text.bert", "vision.cnn", "vision.face"):  # the extractors with a model to put on a device
        if name in extractors and cand.get("device"):
            extractors[name]["device"] = cand["device"]
    return PipelineConfig.model_validate({
        "store": store,
        "dataset": {"path": dataset, "layout": "manifest"},
        "executor": cand["executor"],
        "extract": {"extractors": extractors, "batch_clips": cand.get("batch_clips", 8)},
    })


def child_naive(spec: dict[str, Any], sampler: TreeSampler) -> dict[str, Any]:
    import torch

    from features.extractors.base import ClipFailure, create_extractor
    from stages.config import PipelineConfig
    from stages.extract import clip_input
    from stages.ingest import run_ingest

    warm_s = _warm_libraries()
    store = str(Path(spec["workdir"]) / f"store-{spec['name']}")
    dataset = {"path": spec["dataset"], "layout": "manifest"}
    run_ingest(PipelineConfig.model_validate({"store": store, "dataset": dataset}))
    rows = _clip_rows(store)
    clips = [clip_input(r) for r in rows]
    runs = []
    # pass 0 is the end-to-end naive run (all stages, clip by clip); later passes repeat only the
    # cheap stages (text, audio: a few seconds) so that their per-stage minimum is less noisy
    for rep in range(1 + spec.get("cheap_repeats", 0)):
        stages = STAGES if rep == 0 else tuple(s for s in STAGES if not s.startswith("vision."))
        _clear_model_caches()
        exts = {s: create_extractor(s, NAIVE_CONFIGS[s]) for s in stages}
        wall = {s: 0.0 for s in stages}
        cpu = {s: 0.0 for s in stages}
        failures = []
        frames = cnn_frames = 0
        load0 = loadavg()
        sampler.start_window()
        t_all = time.perf_counter()
        for clip in clips:
            for s in stages:
                t0, c0 = time.perf_counter(), time.process_time()
                out = exts[s].extract([clip])
                wall[s] += time.perf_counter() - t0
                cpu[s] += time.process_time() - c0
                failures += [f"{s}:{o.clip_id}:{o.message}" for o in out if isinstance(o, ClipFailure)]
                if s == "vision.cnn":
                    for o in out:
                        if not isinstance(o, ClipFailure):
                            frames += int(o.meta.get("n_frames", 0))
                            cnn_frames += int(o.meta.get("n_computed", 0))
        total = time.perf_counter() - t_all
        tree = sampler.stop_window()
        default = [s for s in DEFAULT_STAGES if s in wall]
        runs.append({
            "rep": rep, "stages": list(stages), "wall_s": round(total, 3),
            # the default extractors alone, clip by clip: their share of this pass (one process, in sequence)
            "default_wall_s": round(sum(wall[s] for s in default), 3),
            "default_cpu_s": round(sum(cpu[s] for s in default), 3),
            "stage_wall_s": {k: round(v, 3) for k, v in wall.items()},
            "stage_cpu_s": {k: round(v, 3) for k, v in cpu.items()}, "failures": failures,
            "load_start": load0, "load_end": loadavg(), "torch_threads": torch.get_num_threads(), **tree,
            "vision_frames": {"frames": frames, "cnn_frames": cnn_frames} if rep == 0 else None,
        })
    return {"kind": "naive", "dataset": spec["dataset"], "library_warmup_s": warm_s, **_stage_media(rows), "runs": runs}


def _warm_prefect() -> float:
    """Start Prefect's ephemeral API server (a subprocess) before timing: a deployment runs against
    a long-lived server, so its start-up is not part of a run's extraction cost."""
    from prefect import flow

    @flow(name="bench-warmup")
    def warm() -> int:
        return 1

    t0 = time.perf_counter()
    warm()
    return round(time.perf_counter() - t0, 2)


def _apply_environment(cand: dict[str, Any]) -> dict[str, Any]:
    """Process-level knobs of a candidate; returns what to restore afterwards."""
    import torch

    saved = {"threads": torch.get_num_threads(), "api": os.environ.get("PREFECT_API_URL")}
    if cand.get("torch_threads"):
        torch.set_num_threads(int(cand["torch_threads"]))
    if cand.get("api"):
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # the running ephemeral server of this process (a singleton)
        os.environ["PREFECT_API_URL"] = server.api_url  # inherited by the spawned Dask workers
    else:
        os.environ.pop("PREFECT_API_URL", None)
    return saved


def _restore_environment(saved: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(saved["threads"])
    if saved["api"] is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = saved["api"]


def _vision_frames(store_url: str) -> dict[str, int] | None:
    """Frames sampled vs frames that went through the CNN (the rest reused a still frame's features)."""
    from store import FeatureStore

    st = FeatureStore.open(store_url)
    names = [n for n in st.feature_set_names() if n.startswith("vision.cnn-")]
    if not names:
        return None
    frames = computed = 0
    for row in st.feature_set(names[0]).rows().values():
        m = row.meta
        frames += int(m.get("n_frames", 0))
        computed += int(m.get("n_computed", m.get("n_frames", 0)))
    return {"frames": frames, "cnn_frames": computed}


def _self_rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def _malloc_trim() -> None:
    """glibc ``malloc_trim(0)``: hand the free pages of every malloc arena back to the OS."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _progress_hook(
    done_at: list[float], trace: list[list[float]], t0: float, trim: Callable[[], None]
) -> Callable[[Any], None]:
    """The per-batch hook of one run: records when each batch committed and the flow's RSS then.

    NB: Prefect ships extract_flow's globals, this hook included, to Dask workers with
    cloudpickle: it must capture only picklable things (no sampler, no psutil.Process)."""

    def progress(res: Any) -> None:
        done_at.append(time.perf_counter())
        trim()
        # RSS of the flow process after each committed batch: a creep shows up here
        trace.append([round(done_at[-1] - t0, 2), len(done_at), _self_rss_mb()])

    return progress


def child_pipeline(spec: dict[str, Any], sampler: TreeSampler) -> dict[str, Any]:
    """Runs ``spec["runs"]`` one after the other: each names a candidate, the stages to extract and
    the dataset; fresh temp store and empty model caches for each."""
    from flows import ephemeral_flow_settings
    from flows.extract import run_extract
    from stages.ingest import run_ingest

    warm_s = {"prefect": _warm_prefect(), "libraries": _warm_libraries()}
    runs = []
    for i, item in enumerate(spec["runs"]):
        cand = CANDIDATES[item["candidate"]]
        stages = tuple(item["stages"])
        store = str(Path(spec["workdir"]) / f"store-{spec['name']}-{i}")
        shutil.rmtree(store, ignore_errors=True)
        cfg = _pipeline_config(store, item["dataset"], cand, stages)
        run_ingest(cfg)
        media = _stage_media(_clip_rows(store))
        _clear_model_caches()
        saved = _apply_environment(cand)
        done_at: list[float] = []
        load0 = loadavg()
        sampler.start_window()
        t0 = time.perf_counter()
        trim = _malloc_trim if cand.get("malloc_trim") else (lambda: None)

        trace: list[list[float]] = []
        progress = _progress_hook(done_at, trace, t0, trim)

        try:
            with ephemeral_flow_settings():  # as the CLI runs every command (flows/cli.py)
                summary = run_extract(cfg, progress=progress)
        finally:
            wall = time.perf_counter() - t0
            tree = sampler.stop_window()
            _restore_environment(saved)
        runs.append({
            "candidate": item["candidate"], "config": cand, "stages": list(stages), "dataset": item["dataset"],
            **media, "wall_s": round(wall, 3), "failed": summary.failed,
            "first_batch_s": round(min(done_at) - t0, 3) if done_at else None, "batches": len(done_at),
            "sets": {s["extractor"]: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}
                     for s in summary.sets.values()},
            "load_start": load0, "load_end": loadavg(), **tree, "main_rss_after_batch": trace,
            "vision_frames": _vision_frames(store) if "vision.cnn" in stages else None,
        })
        shutil.rmtree(store, ignore_errors=True)
    return {"kind": "pipeline", "warmup_s": warm_s, "runs": runs}


def child_decode(spec: dict[str, Any], sampler: TreeSampler) -> dict[str, Any]:
    """The decode-only limit: every clip's video decoded at vision.cnn's 2 fps and 224x224 and its
    audio at audio.mfcc's 16 kHz mono, through the extractors' own decode paths, no model; two
    clips at a time on two threads (the decoders release the GIL), as the pipeline's two workers."""
    from concurrent.futures import ThreadPoolExecutor

    from features.extractors.audio import clip_audio
    from features.extractors.vision import CnnVisionConfig, frame_events
    from stages.config import PipelineConfig
    from stages.extract import clip_input
    from stages.ingest import run_ingest

    store = str(Path(spec["workdir"]) / f"store-{spec['name']}")
    run_ingest(PipelineConfig.model_validate({"store": store, "dataset": {"path": spec["dataset"],
                                                                             "layout": "manifest"}}))
    rows = _clip_rows(store)
    clips = [clip_input(r) for r in rows]
    cfg = CnnVisionConfig()

    def decode(clip: Any) -> int:
        frames = 0
        for ev in frame_events([clip], 1280, fps=cfg.fps, frame_size=(cfg.width, cfg.height),
                               video_stream=None, decoder=cfg.decoder, chunk_size=cfg.chunk_size):
            frames += len(ev[2]) if ev[0] == "frames" else 0
        clip_audio(clip, 16000, None, 40)
        return frames

    load0 = loadavg()
    sampler.start_window()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        frames = sum(pool.map(decode, clips))
    wall = time.perf_counter() - t0
    tree = sampler.stop_window()
    return {"kind": "decode", **_stage_media(rows), "wall_s": round(wall, 3), "frames": frames,
            "load_start": load0, "load_end": loadavg(), **tree}


def child_export(spec: dict[str, Any], sampler: TreeSampler) -> dict[str, Any]:
    """The ONNX exports the optimised runs load (``onnx_runtime`` caches them on disk, once per
    machine): made here, before any timed run and timed apart, by running each extractor with an
    ONNX graph, as the runs configure it, on the mix's clips until one has made (or loaded) it.
    Otherwise the first optimised run of a fresh work folder would include a one-time export
    (about 3 s here)."""
    from features.extractors.base import FeatureResult, create_extractor
    from stages.config import PipelineConfig
    from stages.extract import clip_input
    from stages.ingest import run_ingest

    store = str(Path(spec["workdir"]) / f"store-{spec['name']}")
    dataset = {"path": spec["dataset"], "layout": "manifest"}
    run_ingest(PipelineConfig.model_validate({"store": store, "dataset": dataset}))
    clips = [clip_input(r) for r in _clip_rows(store)]
    t0 = time.perf_counter()
    for name in ("text.bert", "vision.cnn"):  # the models ONNX Runtime runs (vision.face's crops: the same graph)
        ext = create_extractor(name, {})
        for clip in clips:  # the first clip with this extractor's modality makes (or loads) its graph
            (res,) = ext.extract([clip])
            if isinstance(res, FeatureResult) and res.absent is None:
                break
    shutil.rmtree(store, ignore_errors=True)
    return {"kind": "export", "wall_s": round(time.perf_counter() - t0, 3),
            "graphs": sorted(p.name for p in Path(os.environ["EMOFLOW_CACHE_DIR"], "onnx").glob("*.onnx"))}


def child_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    sampler = TreeSampler()
    sampler.start()
    try:
        children = {"naive": child_naive, "decode": child_decode, "pipeline": child_pipeline, "export": child_export}
        result = children[spec["kind"]](spec, sampler)
    finally:
        sampler.stop_event.set()
    Path(spec["result"]).write_text(json.dumps(result, indent=1))


# ----------------------------------------------------------------------------------------------
# parent side: data, jobs, table
# ----------------------------------------------------------------------------------------------
def _transcript(media: Path) -> tuple[str, list[dict[str, Any]] | None]:
    name = SHARED_TRANSCRIPTS.get(media.name)
    if not name or not (media.parent / name).is_file():
        return "", None
    path = media.parent / name
    if path.suffix == ".json":  # manifesto: [{content, start, end, words: [{word, start, end}]}]
        words = [{"word": w["word"], "start": float(w["start"]), "end": float(w["end"])}
                 for seg in json.loads(path.read_text()) for w in seg.get("words", [])]
        return " ".join(w["word"] for w in words), words
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".srt":
        lines = [ln.strip() for ln in text.splitlines()]
        text = " ".join(ln for ln in lines if ln and "-->" not in ln and not ln.isdigit())
        text = text.replace("NAR:", "").strip()
    return " ".join(text.split()), None


def prepare_data(root: Path, shared: Path | None, counts: list[int], mix_generated: int) -> dict[str, Any]:
    """Generated clips (manifest layout, seed 0) + copies of the shared clips in one dataset root;
    one manifest CSV per dataset the benchmark uses: mix.csv, gen-<n>.csv."""
    from corpora.synth import generate_dataset

    n_gen = max(counts + [mix_generated])
    stamp = root / f".generated-{n_gen}"
    t0 = time.perf_counter()
    if not stamp.exists():
        if root.exists():
            shutil.rmtree(root)
        generate_dataset(root, n_clips=n_gen, seed=0, layout="manifest")
        stamp.write_text("ok")
    gen_s = time.perf_counter() - t0
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        gen_rows = list(reader)
    shared_rows = []
    if shared and shared.is_dir():
        dst = root / "shared"
        dst.mkdir(exist_ok=True)
        for media in sorted(shared.iterdir()):
            if media.suffix.lower() not in MEDIA_SUFFIXES:
                continue
            if not (dst / media.name).exists():  # ingest confines media to the dataset root: copy
                shutil.copy2(media, dst / media.name)
            text, words = _transcript(media)
            shared_rows.append({"clip_id": f"shared_{media.stem}", "media": f"shared/{media.name}", "start": "",
                                "end": "", "text": text, "words": json.dumps(words) if words else "",
                                "label": "0.0", "split": "test"})
    manifests = {}

    def write(name: str, rows: list[dict[str, Any]]) -> None:
        path = root / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        manifests[name] = str(path)

    write("mix", shared_rows + gen_rows[:mix_generated])
    for n in counts:
        write(f"gen-{n}", gen_rows[:n])
    return {"manifests": manifests, "generate_s": round(gen_s, 1), "shared_clips": [r["clip_id"] for r in shared_rows]}


def run_child(spec: dict[str, Any], workdir: Path, name: str, verbose: bool) -> dict[str, Any]:
    """Run one job in a fresh interpreter (this script with ``--_child``) and return its result."""
    spec = dict(spec, name=name, workdir=str(workdir), result=str(workdir / f"{name}.result.json"))
    spec_path = workdir / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    t0 = time.perf_counter()
    log_path = workdir / f"{name}.log"
    # Output to a file, not a pipe, and in its own session: a child that dies hard (an abort in native
    # code) leaves its Prefect server running, which would hold a pipe open and hang this wait forever.
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--_child", str(spec_path)],
                                cwd=str(REPO), stdout=None if verbose else log, stderr=None if verbose else log,
                                start_new_session=True)
        rc = proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # whatever the child left behind
    if rc != 0:
        tail = log_path.read_text(errors="replace")[-3000:] if not verbose else ""
        raise RuntimeError(f"benchmark child {name!r} failed (rc {rc}):\n{tail}")
    out = json.loads(Path(spec["result"]).read_text())
    out["child_wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def _fastest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Of repeated runs, the fastest: on a shared machine the minimum is the least disturbed."""
    return min(runs, key=lambda r: r["wall_s"])


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarise(naive_runs: list[dict[str, Any]], stage_runs: dict[str, dict[str, Any]], e2e: dict[str, Any],
              media: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows: per stage and end to end, naive (fastest repeat) vs optimised."""
    rows = []
    full = [r for r in naive_runs if len(r["stages"]) == len(STAGES)]
    nb = min(full, key=lambda r: r["default_wall_s"])
    for s in (*STAGES, "end-to-end"):
        if s == "end-to-end":  # the default extractors
            n_wall, n_cpu, o = nb["default_wall_s"], nb["default_cpu_s"], e2e
            m_s, n_clips = media["media_s"], media["clips"]
        else:
            best_pass = min((r for r in naive_runs if s in r["stage_wall_s"]), key=lambda r: r["stage_wall_s"][s])
            n_wall, n_cpu = best_pass["stage_wall_s"][s], best_pass["stage_cpu_s"][s]
            o = _fastest(stage_runs[s])
            m_s, n_clips = media["stage_media_s"][s], media["stage_clips"][s]
        rows.append({
            "stage": s, "clips": n_clips, "media_s": m_s,
            "naive_wall_s": n_wall, "naive_rtf": _ratio(m_s, n_wall), "naive_clips_per_s": _ratio(n_clips, n_wall),
            "naive_cpu_s": round(n_cpu, 2),
            "opt_wall_s": o["wall_s"], "opt_rtf": _ratio(m_s, o["wall_s"]),
            "opt_clips_per_s": _ratio(n_clips, o["wall_s"]),
            "opt_cpu_s": o["cpu_s"], "opt_first_batch_s": o.get("first_batch_s"),
            "speedup": _ratio(n_wall, o["wall_s"]), "cpu_ratio": _ratio(n_cpu, o["cpu_s"]),
            "naive_peak_rss_mb": nb["peak_rss_mb"] if s == "end-to-end" else None,
            "opt_peak_rss_mb": o["peak_rss_mb"],
            "naive_load": [nb["load_start"][0], nb["load_end"][0]],
            "opt_load": [o["load_start"][0], o["load_end"][0]],
        })
    return rows


def _roles(r: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in r["peak_rss_by_role_mb"].items())


def _executor(cand: dict[str, Any]) -> str:
    ex = cand["executor"]
    if ex.get("dask") is None:
        s = f"threads×{ex.get('workers', 2)}" + (f", models on {cand['device']}" if cand.get("device") else "")
        return s + (f", torch {cand['torch_threads']}t" if cand.get("torch_threads") else "")
    s = f"dask {ex.get('workers')}p×{ex.get('threads_per_worker', 1)}t"
    return s + (", API URL exported" if cand.get("api") else ", as shipped")


def print_tables(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(170, shutil.get_terminal_size((170, 40)).columns))
    m = report["machine"]
    con.print(f"[bold]emoflow extract benchmark[/] {report['date']}  cores={m['cpus']}  torch={m['torch']}  "
              f"load (1/5/15 min) at start {m['load_start']}, at end {m['load_end']}")
    t = Table(title=f"Lite0 default: naive vs optimised ({report['best']}, {_executor(CANDIDATES[report['best']])}) — "
                    f"{report['mix']['clips']} clips ({len(report['mix']['shared_clips'])} shared + "
                    f"{report['mix']['generated_clips']} generated), {report['mix']['media_s']:.0f} media-s")
    for col in ("stage", "clips", "media s", "naive s", "naive ×RT", "naive clips/s", "opt s", "opt ×RT",
                "opt clips/s", "speed-up", "CPU s naive/opt", "opt 1st batch s", "peak RSS MB naive/opt",
                "load 1m naive | opt"):
        t.add_column(col, justify="right")
    for r in report["table"]:
        t.add_row(r["stage"], str(r["clips"]), f"{r['media_s']:.0f}", f"{r['naive_wall_s']:.1f}",
                  f"{r['naive_rtf']:.1f}", f"{r['naive_clips_per_s']:.2f}", f"{r['opt_wall_s']:.1f}",
                  f"{r['opt_rtf']:.1f}", f"{r['opt_clips_per_s']:.2f}", f"[bold]{r['speedup']:.2f}×[/]",
                  f"{r['naive_cpu_s']:.0f} / {r['opt_cpu_s']:.0f}",
                  "-" if r["opt_first_batch_s"] is None else f"{r['opt_first_batch_s']:.1f}",
                  f"{r['naive_peak_rss_mb'] or '-'} / {r['opt_peak_rss_mb']}",
                  f"{r['naive_load'][0]:.1f}→{r['naive_load'][1]:.1f} | {r['opt_load'][0]:.1f}→{r['opt_load'][1]:.1f}")
    con.print(t)
    d = report.get("decode_only")
    if d:
        con.print(f"decode-only limit (2 fps 224x224 video + 16 kHz audio, no model, 2 threads): {d['wall_s']:.1f} s, "
                  f"{d['rtf']:.1f}× realtime, {d['cpu_s']:.0f} CPU s; the optimised pipeline takes "
                  f"{1 / d['pipeline_share']:.2f}× that time")
    vf = report.get("vision_frames") or {}
    if vf.get("naive") and vf.get("optimised"):
        con.print("vision frames sampled / through the CNN: "
                  f"naive {vf['naive']['frames']} / {vf['naive']['cnn_frames']}, "
                  f"optimised {vf['optimised']['frames']} / {vf['optimised']['cnn_frames']} (still-frame reuse)")
    c = Table(title="optimised candidates, end to end on the mix (one child process, back to back)")
    for col in ("config", "executor", "batch_clips", "vision batch", "wall s", "×RT", "CPU s", "1st batch s",
                "peak RSS MB", "RSS by role MB", "load 1m"):
        c.add_column(col, justify="right")
    for label, r in report["candidates"].items():
        cand = CANDIDATES[label]
        c.add_row(label, _executor(cand), str(cand.get("batch_clips", 8)), str(cand.get("vision_batch", "auto")),
                  f"{r['wall_s']:.1f}", f"{r['rtf']:.1f}", f"{r['cpu_s']:.0f}",
                  "-" if r.get("first_batch_s") is None else f"{r['first_batch_s']:.1f}",
                  f"{r['peak_rss_mb']:.0f}", _roles(r), f"{r['load_start'][0]:.1f}→{r['load_end'][0]:.1f}")
    con.print(c)
    g = Table(title=f"peak RSS vs number of clips, optimised ({report['best']}), "
                    "generated clips only, fresh process each")
    for col in ("clips", "media s", "wall s", "×RT", "CPU s", "peak RSS MB", "RSS by role MB", "largest process MB",
                "load 1m"):
        g.add_column(col, justify="right")
    for n, r in report["scaling"].items():
        g.add_row(n, f"{r['media_s']:.0f}", f"{r['wall_s']:.1f}", f"{r['rtf']:.1f}", f"{r['cpu_s']:.0f}",
                  f"{r['peak_rss_mb']:.0f}", _roles(r), f"{r['peak_rss_single_process_mb']:.0f}",
                  f"{r['load_start'][0]:.1f}→{r['load_end'][0]:.1f}")
    con.print(g)
    v = report["verdict"]
    con.print(f"end to end speed-up {v['speedup']:.2f}× wall, {v['cpu_ratio']:.2f}× CPU (target ≥ 3×: "
              f"{'met' if v['speedup_ok'] else 'NOT met'}); {v['realtime']:.1f}× realtime (target ≥ 60×: "
              f"{'met' if v['realtime_ok'] else 'NOT met'}); "
              f"peak RSS {v['rss_small_mb']:.0f} → {v['rss_large_mb']:.0f} MB "
              f"({v['rss_growth_pct']:+.0f}%, flat (≤ +15%): {'yes' if v['rss_flat'] else 'NO'}); "
              f"{v['margin_rtf'] or 0:.1f}× realtime at the margin (between the scaling runs, start-up left out)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default=None, help="generated clip counts for the RSS scaling runs; the first "
                    "one is also the number of generated clips in the mix (default 10,100; --quick 4,24)")
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data" / "clips"),
                    help="folder of real media clips mixed into the benchmark dataset ('' for none)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "extract.json"),
                    help="JSON report (every run's raw figures)")
    ap.add_argument("--quick", action="store_true", help="4/24 generated clips, 2 candidates (~5 min on a busy box)")
    ap.add_argument("--candidates", default=None,
                    help=f"comma list of pipeline configs to compare, of: {', '.join(CANDIDATES)}")
    ap.add_argument("--best", default=None, help="skip the choice: use this candidate as the optimised run")
    ap.add_argument("--repeats", type=int, default=1,
                    help="naive + optimised end-to-end pairs, each in fresh processes; the fastest of each is "
                    "reported (default 1)")
    ap.add_argument("--workdir", default=None, help="keep generated data and results here (reused across runs)")
    ap.add_argument("--verbose", action="store_true", help="show the children's output (Prefect logs)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        child_main(args._child)
        return 0

    counts = [int(x) for x in (args.clips or ("4,24" if args.quick else "10,100")).split(",") if x.strip()]
    cand_names = (args.candidates.split(",") if args.candidates else
                  list(QUICK_CANDIDATES if args.quick else FULL_CANDIDATES))
    if args.best:
        cand_names = [args.best]
    for c in cand_names:
        if c not in CANDIDATES:
            ap.error(f"unknown candidate {c!r}; known: {', '.join(CANDIDATES)}")

    work = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="emoflow-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # children inherit: their own Prefect home (database) and media cache, quiet logs, offline
    os.environ.update({
        "PREFECT_HOME": str(work / "prefect"), "EMOFLOW_CACHE_DIR": str(work / "cache"),
        "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONWARNINGS": "ignore",
    })
    from store.runtime import offline_hub

    offline_hub()
    os.environ.pop("PREFECT_API_URL", None)  # each child uses its own ephemeral server
    started = time.perf_counter()
    load_start = loadavg()

    def log(msg: str) -> None:
        print(f"[bench {time.perf_counter() - started:5.0f}s, load {loadavg()[0]:4.1f}] {msg}", flush=True)

    log(f"workdir {work}; preparing data ...")
    data = prepare_data(work / "data", Path(args.shared) if args.shared else None, counts, counts[0])
    mix = data["manifests"]["mix"]
    log(f"data ready ({data['generate_s']} s); "
        f"{len(data['shared_clips'])} shared + {counts[0]} generated clips in the mix")

    # 0. the one-time ONNX exports, untimed by the runs below (as installing the packages is)
    export = run_child({"kind": "export", "dataset": mix}, work, "export", args.verbose)
    log(f"ONNX exports made or found: {', '.join(export['graphs'])} ({export['wall_s']:.1f} s)")

    # 1. naive baseline, then every candidate end to end on the mix (one child, back to back)
    naive_runs: list[dict[str, Any]] = []
    naive_spec = {"kind": "naive", "dataset": mix, "cheap_repeats": CHEAP_REPEATS - 1}
    naive = run_child(naive_spec, work, "naive", args.verbose)
    naive_runs += naive["runs"]
    log(f"naive: {naive['runs'][0]['wall_s']:.1f} s")
    decode = run_child({"kind": "decode", "dataset": mix}, work, "decode", args.verbose)
    log(f"decode only: {decode['wall_s']:.1f} s ({decode['frames']} frames)")
    cand_runs: dict[str, list[dict[str, Any]]] = {c: [] for c in cand_names}
    if len(cand_names) > 1:
        runs = [{"candidate": c, "stages": list(DEFAULT_STAGES), "dataset": mix} for c in cand_names]
        search = run_child({"kind": "pipeline", "runs": runs}, work, "search", args.verbose)
        for r in search["runs"]:
            cand_runs[r["candidate"]].append(r)
            log(f"  {r['candidate']}: {r['wall_s']:.1f} s")
        best = min(cand_names, key=lambda c: cand_runs[c][0]["wall_s"])
    else:
        best = cand_names[0]
    log(f"optimised configuration: {best}")

    # 2. the best one in a fresh process: end to end (clean RSS), then stage by stage
    stage_items = [{"candidate": best, "stages": [s], "dataset": mix}
                   for s in STAGES for _ in range(1 if s.startswith("vision.") else CHEAP_REPEATS)]
    res = run_child({"kind": "pipeline", "runs": [{"candidate": best, "stages": list(DEFAULT_STAGES), "dataset": mix}] +
                     stage_items}, work, "best", args.verbose)
    e2e_runs = [res["runs"][0]]
    stage_runs: dict[str, list[dict[str, Any]]] = {s: [] for s in STAGES}
    for r in res["runs"][1:]:
        stage_runs[r["stages"][0]].append(r)
    cand_runs[best].append(res["runs"][0])
    log(f"{best}: end to end {res['runs'][0]['wall_s']:.1f} s; stages " +
        ", ".join(f"{s} {min(x['wall_s'] for x in rs):.1f} s" for s, rs in stage_runs.items()))
    for rep in range(1, args.repeats):
        extra = run_child({"kind": "naive", "dataset": mix, "cheap_repeats": 0}, work, f"naive-r{rep}", args.verbose)
        naive_runs += [dict(r, rep=rep) for r in extra["runs"]]
        again = run_child({"kind": "pipeline", "runs": [{"candidate": best, "stages": list(DEFAULT_STAGES),
                                                         "dataset": mix}]},
                          work, f"best-r{rep}", args.verbose)
        e2e_runs += again["runs"]
        cand_runs[best] += again["runs"]
        log(f"repeat {rep}: naive {extra['runs'][0]['wall_s']:.1f} s, {best} {again['runs'][0]['wall_s']:.1f} s")

    # 3. peak RSS vs number of (generated) clips, best configuration, a fresh process each
    scaling = {}
    for n in counts:
        r = run_child({"kind": "pipeline", "runs": [{"candidate": best, "stages": list(DEFAULT_STAGES),
                                                     "dataset": data["manifests"][f"gen-{n}"]}]},
                      work, f"gen-{n}", args.verbose)["runs"][0]
        scaling[str(n)] = {**r, "rtf": _ratio(r["media_s"], r["wall_s"])}
        log(f"{n} generated clips: {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB")

    # 4. report
    import torch  # only for the version string

    media = {k: naive[k] for k in ("clips", "media_s", "stage_media_s", "stage_clips")}
    e2e = _fastest(e2e_runs)
    table = summarise(naive_runs, stage_runs, e2e, media)
    candidates = {c: {**_fastest(rs), "rtf": _ratio(media["media_s"], _fastest(rs)["wall_s"]),
                      "all_walls_s": [x["wall_s"] for x in rs]} for c, rs in cand_runs.items()}
    small, large = scaling[str(counts[0])], scaling[str(counts[-1])]
    e2e_row = table[-1]
    report = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_start": load_start, "load_end": loadavg()},
        "args": {"clips": counts, "shared": args.shared, "quick": args.quick, "candidates": cand_names,
                 "repeats": args.repeats},
        "mix": {**media, "shared_clips": data["shared_clips"], "generated_clips": counts[0]},
        "naive_configs": NAIVE_CONFIGS,
        "vision_frames": {"naive": _fastest([r for r in naive_runs if r.get("vision_frames")])["vision_frames"],
                          "optimised": e2e.get("vision_frames")},
        "best": best,
        "table": table,
        "candidates": candidates,
        "scaling": scaling,
        "naive_runs": naive_runs,
        "optimised_e2e_runs": e2e_runs,
        "stage_runs": stage_runs,
        "onnx_export": export,
        "decode_only": {**decode, "rtf": _ratio(decode["media_s"], decode["wall_s"]),
                        "pipeline_share": _ratio(decode["wall_s"], e2e["wall_s"])},
        "verdict": {
            "speedup": e2e_row["speedup"], "cpu_ratio": e2e_row["cpu_ratio"], "speedup_ok": e2e_row["speedup"] >= 3.0,
            "realtime": e2e_row["opt_rtf"], "realtime_ok": (e2e_row["opt_rtf"] or 0) >= 60.0,
            "rss_small_mb": small["peak_rss_mb"], "rss_large_mb": large["peak_rss_mb"],
            "rss_growth_pct": round(100 * (large["peak_rss_mb"] / small["peak_rss_mb"] - 1), 1),
            "rss_flat": large["peak_rss_mb"] <= 1.15 * small["peak_rss_mb"],
            # the steady state: media seconds per wall second between the two clip counts, without the
            # fixed start-up (imports, model loads, CUDA/cuDNN init) both runs pay
            "margin_rtf": _ratio(large["media_s"] - small["media_s"], large["wall_s"] - small["wall_s"]),
        },
        "total_benchmark_s": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print_tables(report)
    print(f"[bench] wrote {out}; total {report['total_benchmark_s']:.0f} s")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":  # Dask worker processes re-import this module: keep the guard
    sys.exit(main())
