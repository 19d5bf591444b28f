"""``emoflow demo``: generate the embedded sample dataset and run every stage on it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from flows.config import PipelineConfig


def demo_config(workdir: Path) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"store": str(workdir / "store"), "dataset": {"path": str(workdir / "data"), "layout": "manifest"}}
    )


def run_demo(workdir: Path, n_clips: int = 24, seed: int = 0, console: Console | None = None) -> dict[str, str]:
    """Run the pipeline end to end on generated clips; returns stage -> output location."""
    from features.synth import generate_dataset
    from flows.extract import run_extract
    from flows.ingest import ingest_flow

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
    return outputs
