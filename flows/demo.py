"""``emoflow demo``: generate the embedded sample dataset, run every stage on it, then score a new
long video with the trained model."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from stages.config import PipelineConfig

#: The demo trains with cached (frozen) text features and a short schedule: seconds, not minutes.
DEMO_TRAIN = {"text_mode": "frozen", "max_epochs": 40, "patience": 10, "batch_size": 8, "accumulate": 1}
DEMO_ABLATIONS = ("full", "text", "audio", "vision")


def demo_config(workdir: Path) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "store": str(workdir / "store"),
            "runs": str(workdir / "runs"),
            "dataset": {"path": str(workdir / "data"), "layout": "manifest"},
            "align": {"view": "demo", "grid": "word"},
            "stats": {"view": "demo"},
            "train": DEMO_TRAIN,
            "predict": {"store": str(workdir / "predict")},
        }
    )


def run_demo(workdir: Path, n_clips: int = 72, seed: int = 0, console: Console | None = None) -> dict[str, str]:
    """Run the pipeline end to end on generated clips; returns stage -> output location."""
    from corpora.synth import generate_dataset
    from corpora.synth.long import generate_long_video
    from flows.align import align_flow
    from flows.console import metrics_table
    from flows.extract import run_extract
    from flows.ingest import ingest_flow
    from flows.predict import predict_flow
    from flows.stats import stats_flow
    from flows.train import train_flow
    from stages.train import run_evaluate

    console = console or Console()
    workdir = Path(workdir).resolve()
    cfg = demo_config(workdir)
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
