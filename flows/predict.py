"""The predict flow: score new media with a trained run (``emoflow predict`` is its thin CLI).

ingest the media as segments → the extract flow (with the run's extractors; the predict store is
the cache) → align with the run view's config and statistics → score with every seed → one
predictions part per media file, an export, a timeline report and a Prefect artifact. Every stage
is incremental, so a deployment can run it on a folder where new media is dropped. The predict
store's clip table holds one run's segments, so runs on one store take turns (``store.lock``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger, task

import flows  # noqa: F401  (offline-safe Prefect defaults before Prefect is imported)
from features.align import AlignSummary
from flows.extract import run_extract
from stages.config import PipelineConfig
from stages.ingest import IngestSummary
from stages.predict import (
    PredictSummary,
    align_for_run,
    export_target,
    ingest_new_media,
    load_trained_run,
    reproduce_extraction,
    score_and_write,
)
from store.fingerprint import hash_obj
from store.lock import store_writer


@task(name="predict-ingest")
def ingest_task(
    store_url: str, media: list[str], config: PipelineConfig, allow_empty: bool
) -> tuple[IngestSummary, int]:
    return ingest_new_media(store_url, media, config.predict.segment, allow_empty)


@task(name="predict-align")
def align_task(store_url: str, run: str, seed: int | None, feature_sets: dict[str, str]) -> AlignSummary:
    return align_for_run(store_url, load_trained_run(run, seed), feature_sets)


@task(name="predict-score")
def score_task(store_url: str, run: str, config: PipelineConfig, out: str | None) -> PredictSummary:
    p = config.predict
    return score_and_write(store_url, load_trained_run(run, p.seed), device=p.device, batch_size=p.batch_size,
                           out=out)


@flow(name="emoflow-predict")
def predict_flow(
    media: list[str], run: str, config: PipelineConfig, out: str | None = None, allow_empty: bool = False,
) -> PredictSummary:
    """Score ``media`` (files or folders; subtitle files alone give text-only segments) with the
    run directory ``run`` in ``config.predict.store``; ``out`` also exports the table (.csv/.parquet).
    ``allow_empty``: folders with nothing to score are not an error (a scheduled inbox)."""
    log = get_run_logger()
    clock = StageClock()
    store = config.predict.store
    if out is not None:  # a bad export name or folder fails now, not after the scoring
        export_target(out)
    with clock("load run"):
        trained = load_trained_run(run, config.predict.seed)  # refuse a bad run before any work
        repro = reproduce_extraction(trained)
    log.info("run %s: %d seed(s) %s, modalities %s", trained.name, len(trained.seed_dirs),
             list(trained.seed_dirs), trained.modalities)
    # The clip table is this run's working set from ingest to the last part: one run at a time per store.
    with store_writer(store, f"emoflow predict --run {trained.root}", on_wait=log.warning) as waited:
        if waited >= 1.0:
            clock.seconds["wait for the store"] = waited
        with clock("ingest"):
            ingested, files = ingest_task(store, [str(Path(m).resolve()) for m in media], config, allow_empty)
        log.info("%d segments from %d media file(s), %d rejected", ingested.clips, files, ingested.rejects)
        extracted = 0
        if ingested.clips:
            extract_cfg = config.model_copy(update={"store": store, "extract": repro.extract})
            with clock("extract"):
                sets = run_extract(extract_cfg).sets
            for name, s in sets.items():
                log.info("%s: %d extracted, %d already in the store, %d failed", name, s["done"], s["skipped"],
                         s["failed"])
                extracted += s["done"]
            with clock("align"):
                log.info("%s", align_task(store, run, config.predict.seed, repro.feature_sets).message)
        with clock("score + write"):
            summary = score_task(store, run, config, out)
    summary.timings, summary.seconds = clock.seconds, clock.total
    summary.rejects, summary.first_rejects, summary.extracted = ingested.rejects, ingested.first_rejects, extracted
    summary.artifact = publish_artifact(summary)
    log.log(logging.WARNING if summary.unsaved else logging.INFO, "%s", summary.message)
    return summary


class StageClock:
    """Wall seconds per stage of one run (``with clock("extract"): ...``), for the summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    @property
    def total(self) -> float:
        return time.perf_counter() - self._t0


def publish_artifact(summary: PredictSummary) -> str:
    """The run's per-media summary as a Prefect markdown artifact with a stable key per run."""
    from prefect.artifacts import create_markdown_artifact

    key = f"emoflow-predict-{hash_obj(summary.run, length=12)}"
    create_markdown_artifact(markdown=summary.markdown, key=key, description=f"emoflow predictions of {summary.run}")
    return key
