"""``emoflow demo``: generate the embedded sample dataset, run every stage on it, then score a new
long video with the trained model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from stages.config import PipelineConfig
from store.errors import ConfigError

#: The demo trains with cached (frozen) text features and a short schedule: seconds, not minutes.
DEMO_TRAIN = {"text_mode": "frozen", "max_epochs": 40, "patience": 10, "batch_size": 8, "accumulate": 1}
DEMO_ABLATIONS = ("full", "text", "audio", "vision")

#: fewest generated clips the demo trains on: from 6 the generator gives at least 3 negative and 3
#: positive labels, and its sign-stratified split puts both signs into train, valid and test, which
#: training (a valid split to select on, SLGM's two class centres) and the test report need; with
#: fewer a split can come out empty, which would only show after extraction
DEMO_MIN_CLIPS = 6


#: Extractors the demo can add on request (``emoflow demo -e audio.egemaps``), off by default: eGeMAPS
#: costs 4-9x audio.mfcc's CPU (docs/extraction.md), the demo's model trains on audio.mfcc anyway
#: (the aligner's default), and openSMILE's licence is research/non-commercial only.
DEMO_OPTIONAL_EXTRACTORS = ("audio.egemaps",)


def demo_config(workdir: Path, extra_extractors: Sequence[str] = ()) -> PipelineConfig:
    """The demo's pipeline config; ``extra_extractors`` are extracted too (shown in the stats report's
    probe next to the defaults) without changing what the view and the model use."""
    extractors: dict[str, dict[str, Any]] = {"text.bert": {}, "audio.mfcc": {}, "vision.cnn": {}}
    extractors.update({name: {} for name in extra_extractors})
    return PipelineConfig.model_validate(
        {
            "store": str(workdir / "store"),
            "extract": {"extractors": extractors},
            "runs": str(workdir / "runs"),
            "dataset": {"path": str(workdir / "data"), "layout": "manifest"},
            "align": {"view": "demo", "grid": "word"},
            "stats": {"view": "demo"},
            "train": DEMO_TRAIN,
            "predict": {"store": str(workdir / "predict")},
        }
    )


def run_demo(workdir: Path, n_clips: int = 72, seed: int = 0, console: Console | None = None,
             extra_extractors: Sequence[str] = ()) -> dict[str, str]:
    """Run the pipeline end to end on generated clips; returns stage -> output location.
    ``extra_extractors`` (e.g. ``DEMO_OPTIONAL_EXTRACTORS``) are extracted besides the defaults."""
    from corpora.synth import generate_dataset
    from corpora.synth.long import generate_long_video
    from flows.align import align_flow
    from flows.console import metrics_table, print_notes
    from flows.extract import run_extract
    from flows.ingest import ingest_flow
    from flows.predict import predict_flow
    from flows.stats import stats_flow
    from flows.train import train_flow
    from stages.train import run_evaluate
    from training.metrics import undefined_notes

    if n_clips < DEMO_MIN_CLIPS:
        raise ConfigError(f"--clips {n_clips}: the demo needs at least {DEMO_MIN_CLIPS} clips, so that train, "
                          "valid and test each get clips of both label signs")
    console = console or Console()
    workdir = Path(workdir).resolve()
    cfg = demo_config(workdir, extra_extractors)
    outputs: dict[str, str] = {}

    console.rule("generate")
    data = generate_dataset(Path(cfg.dataset.path or ""), n_clips=n_clips, seed=seed, layout="manifest")
    outputs["dataset"] = str(data.manifest)
    console.print(f"{len(data.clips)} clips written to {data.root}")

    console.rule("ingest")
    summary = ingest_flow(cfg)
    console.print(f"{summary.clips} clips, {summary.rejects} rejected")
    outputs["clip table"] = f"{cfg.store}/clips.parquet"

    console.rule("extract")
    extracted = run_extract(cfg)
    for name, s in extracted.sets.items():
        console.print(f"{name}: {s['done']} extracted, {s['skipped']} already in store, {s['failed']} failed")
        outputs[f"features {s['extractor']}"] = f"{cfg.store}/features/{name}"

    console.rule("align")
    aligned = align_flow(cfg)
    console.print(aligned.message)
    outputs["aligned view"] = aligned.url

    console.rule("stats")
    report = stats_flow(cfg)
    console.print(report.message)
    outputs["report"] = report.files["report.html"]

    console.rule("train + evaluate")
    rows = {}
    for ablation in DEMO_ABLATIONS:
        run = train_flow(cfg.store, cfg.align.view, cfg.train, cfg.runs, ablation=ablation)
        rows[ablation] = run_evaluate(run["run"], "test")["mean_std"]["test"]
        outputs[f"run {ablation}"] = run["run"]
    console.print(metrics_table("test metrics of the full model and the single-modality ablations", rows,
                                label="ablation"))
    print_notes(undefined_notes(rows), console)  # why a cell shows "—"

    console.rule("predict")
    long = generate_long_video(workdir / "long", seed=seed)
    console.print(f"a new {long.duration:.0f} s video of {len(long.segments)} planted segments: {long.media}")
    predicted = predict_flow([str(long.media)], outputs["run full"], cfg)
    for media in predicted.media:
        console.print(f"{media.describe()}; {media.story}")
    console.print(predicted.message)
    outputs["new video"] = str(long.media)
    outputs["predictions"] = predicted.report or predicted.store
    return outputs
