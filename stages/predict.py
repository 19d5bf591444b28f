"""Predict: score new, unlabeled media with a trained run.

new media + sidecar transcripts → segments (the ``media`` ingest layout, split ``predict``) in a
predict store → features with exactly the extractor identities the run's view was built from (the
store is the cache: scoring the same media again extracts nothing) → the run view's alignment
config, lengths L and normalisation statistics (never the new data's) → every seed's best
checkpoint, averaged → ``predictions/<run>/<video>.parquet``.

Plain functions; ``flows/predict.py`` wraps them in a Prefect flow and ``emoflow predict`` is its
thin CLI.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch

from corpora.ingest import IngestResult, ingest_media
from corpora.layouts.media import PREDICT_SPLIT
from corpora.segments import SegmentConfig
from features.align import AlignConfig, AlignSummary, align_view
from features.extractors.base import recorded_extractor
from reports.timeline import MediaSummary, render_predictions, summarize_predictions
from stages.config import ExtractConfig
from stages.extract import set_name
from stages.ingest import IngestSummary, store_ingest
from stages.train import runs_by_seed
from store import FeatureStore, schema
from store.errors import ConfigError, EmoflowError, ManifestError, StoreError
from store.featurestore import quote_name
from store.fingerprint import files_sha256, hash_obj
from store.fs import StoreFS, output_file, writing_out
from store.runtime import resolve_device
from store.schema import MODALITIES
from store.views import AlignedView, group_array, open_view
from training.batching import make_loader
from training.config import SHORT, TrainConfig
from training.data import Collator, ViewDataset, read_stats
from training.runs import RunDir
from training.train import load_run_model

_HEAD_COLUMN = {"text": "score_text", "audio": "score_audio", "vision": "score_vision"}  # store modality -> column


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run as predict needs it: its seeds' directories and what they were trained on."""

    name: str
    root: Path
    seed_dirs: dict[int, Path]
    config: TrainConfig  # the first seed's (seeds differ only in ``seed``)
    view_attrs: dict[str, Any]
    view_fingerprint: str
    fingerprint: str  # of the checkpoints and configs used: which model made a prediction
    stats: dict[str, tuple[np.ndarray, np.ndarray]]  # the run view's normalisation, per modality

    @property
    def modalities(self) -> list[str]:
        """Store modality names the model reads, in l, a, v order."""
        return [m for m in MODALITIES if m in self.config.modalities]

    @property
    def view_name(self) -> str:
        """The predict store's view for this run: one per run fingerprint, never the training view."""
        return f"predict-{self.fingerprint[:16]}"


def load_trained_run(run: str | os.PathLike[str], seed: int | None = None) -> TrainedRun:
    """Read a run directory (``emoflow train`` output: one ``seed-<n>/`` per seed, or a single seed's
    directory); ``seed`` picks one seed, else every seed is used (their predictions averaged).

    The run view's normalisation statistics come from the training store's view; a run whose view
    is gone or was rebuilt since is refused (its statistics can no longer be proven the same). Every
    chosen seed's model is rebuilt and its checkpoint loaded here, on the CPU: a damaged run directory
    is refused (``StoreError`` naming the file) before any media is ingested, also by ``--dry-run``.
    """
    root = Path(run).resolve()
    dirs = runs_by_seed(root)
    for d in dirs.values():  # an unfinished seed's checkpoint is an epoch's, not the run's result
        RunDir(d).check_finished()
    if seed is not None:
        if seed not in dirs:
            raise ConfigError(f"run {root} has no seed {seed}; it has seeds {sorted(dirs)}")
        dirs = {seed: dirs[seed]}
    first = RunDir(next(iter(dirs.values())))
    config, info = first.config(), first.info()
    if config.target != "score":
        raise ConfigError(f"run {root} classifies {config.target} ({', '.join(info.get('classes', []))}); "
                          "predict draws sentiment-score timelines and takes score runs only (a classifier's "
                          "metrics: `emoflow evaluate`)")
    fingerprints = {RunDir(d).info()["view_fingerprint"] for d in dirs.values()}
    if len(fingerprints) > 1:
        raise ConfigError(f"run {root}: its seeds were trained on different views ({sorted(fingerprints)})")
    view_fp = info["view_fingerprint"]
    for d in dirs.values():  # a damaged checkpoint fails here, before anything is ingested or extracted
        stat = RunDir(d).checkpoint.stat()
        _check_checkpoint(str(d), stat.st_size, stat.st_mtime_ns)
    stats = _view_stats(root, first, info, config)
    fingerprint = hash_obj({
        "seeds": {str(s): files_sha256([RunDir(d).checkpoint]) for s, d in sorted(dirs.items())},
        "config": config.model_dump(mode="json", exclude={"seed"}),
        "view": view_fp,
    })
    return TrainedRun(root.name, root, dict(sorted(dirs.items())), config, info["view_attrs"], view_fp,
                      fingerprint, stats)


@functools.lru_cache(maxsize=64)
def _check_checkpoint(directory: str, size: int, mtime_ns: int) -> None:
    """Load a seed's model once per checkpoint file version (size and mtime in the key): the CLI,
    the flow and each of its tasks read the run, and a fine-tuned text encoder takes seconds to load."""
    load_run_model(Path(directory), "cpu")


def _view_stats(
    root: Path, run: RunDir, info: dict[str, Any], config: TrainConfig
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The run view's normalisation statistics: kept in the run directory (``view_stats.safetensors``),
    else (runs trained before it was written) read from the training view, which must be unchanged."""
    kept = run.view_stats()
    if kept is not None:
        return kept
    try:
        view = open_view(info["store"], info["view"])
    except (StoreError, OSError) as exc:
        raise ConfigError(f"run {root}: its training view {info['view']!r} in {info['store']} is needed for the "
                          f"normalisation statistics and cannot be opened ({exc})") from None
    if view.fingerprint != info["view_fingerprint"]:
        raise ConfigError(f"run {root}: view {view.name!r} was rebuilt since training (fingerprint "
                          f"{view.fingerprint[:12]}, run trained on {info['view_fingerprint'][:12]}); "
                          "its normalisation statistics may differ")
    group = view.group()
    return {m: (np.asarray(group_array(group, f"{m}/mean")[...]), np.asarray(group_array(group, f"{m}/std")[...]))
            for m in config.modalities}


# -- reproducing the run's features -----------------------------------------------------------------
def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flat(val, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): obj}


@dataclass(frozen=True)
class Reproduction:
    """How the predict store reproduces the run view's features: extractors and their set names."""

    extract: ExtractConfig
    feature_sets: dict[str, str]  # modality -> feature-set name (same identity as the run view's)


def reproduce_extraction(run: TrainedRun) -> Reproduction:
    """The extraction that reproduces the run view's feature sets, checked here first: an extractor
    that is not registered, whose model folder is missing, or whose identity (version, config,
    model files) differs from the one the view was built from is refused, saying what differs."""
    extractors: dict[str, dict[str, Any]] = {}
    sets: dict[str, str] = {}
    problems: list[str] = []
    for m in run.modalities:
        source = (run.view_attrs.get("modalities") or {}).get(m) or {}
        name, cfg, want = source.get("extractor"), source.get("config") or {}, source.get("identity") or {}
        if not name:  # a view not built by align or an import: nothing says how its features were made
            problems.append(f"{m}: the run's view records no extractor for this modality, so its features "
                            "cannot be made again from media")
            continue
        try:
            ext = recorded_extractor(name, cfg)
            have = ext.identity()
        except EmoflowError as exc:
            problems.append(f"{m}: extractor {name!r} cannot be built here ({exc})")
            continue
        except (OSError, RuntimeError) as exc:  # a model folder or package that is not on this machine
            problems.append(f"{m}: extractor {name!r} cannot load its model here ({type(exc).__name__}: {exc})")
            continue
        a, b = _flat(want), _flat(have)
        diff = [f"{k}: {a.get(k)!r} in the run, {b.get(k)!r} here" for k in sorted(a.keys() | b.keys())
                if a.get(k) != b.get(k)]
        if diff:
            problems.append(f"{m}: extractor {name!r} differs from the run's ({'; '.join(diff)})")
        extractors[name] = ext.config.model_dump(mode="json")
        sets[m] = set_name(ext)
    if problems:
        raise ConfigError(f"run {run.root} cannot be reproduced on this machine: " + " | ".join(problems))
    return Reproduction(ExtractConfig(extractors=extractors), sets)


def align_config_for(run: TrainedRun, feature_sets: dict[str, str]) -> AlignConfig:
    """The run view's align config, with its lengths L fixed and this store's sets of the same identity."""
    attrs = run.view_attrs
    lengths = {m: int(attrs["modalities"][m]["L"]) for m in run.modalities}
    named: dict[str, str | None] = {m: feature_sets.get(m) for m in MODALITIES}
    return AlignConfig.model_validate({**attrs["config"], "view": run.view_name, "feature_sets": named,
                                       "max_len": lengths})


# -- scoring ----------------------------------------------------------------------------------------
@dataclass
class HeadScores:
    """Per clip id: each head's score, averaged over seeds, and the M head's spread over seeds."""

    mean: dict[str, dict[str, float]]  # head (m, l, a, v) -> clip id -> score
    std_m: dict[str, float]


@torch.no_grad()
def score_view(run: TrainedRun, view: AlignedView, device: str | None = None, batch_size: int = 64) -> HeadScores:
    """Every head of every seed on the view's ``predict`` clips; seeds averaged (the ensemble)."""
    cfg = run.config.model_copy(update={"batch_size": batch_size})
    tokens = cfg.text_mode == "finetune"
    dataset = ViewDataset(view, PREDICT_SPLIT, cfg.modalities, tokens=tokens, cache_mb=cfg.cache_mb)
    target = resolve_device(device or cfg.device)
    loader = make_loader(dataset, Collator(read_stats(view, cfg.modalities), tokens), cfg, train=False, device=target)
    per_seed: list[dict[str, dict[str, float]]] = []
    for seed_dir in run.seed_dirs.values():
        model = load_run_model(seed_dir, str(target))
        model.eval()
        heads: dict[str, dict[str, float]] = {}
        for batch in loader:
            out = model(batch.to(target).inputs)
            for head, pred in out.preds.items():
                heads.setdefault(head, {}).update(zip(batch.clip_ids, pred.float().cpu().numpy().tolist()))
        per_seed.append(heads)
    mean = {h: {c: float(np.mean([s[h][c] for s in per_seed])) for c in per_seed[0][h]} for h in per_seed[0]}
    std_m = {c: float(np.std([s["m"][c] for s in per_seed])) for c in per_seed[0]["m"]}
    return HeadScores(mean, std_m)


def _present(view: AlignedView, modalities: Sequence[str]) -> dict[str, list[str]]:
    """clip id -> the modalities the model saw for it (present in the view)."""
    ids = view.clips.sort_by("row").column("clip_id").to_pylist()
    group = view.group()
    flags = {m: np.asarray(group_array(group, f"{m}/present")[...]).astype(bool) for m in modalities}
    return {c: [m for m in modalities if flags[m][i]] for i, c in enumerate(ids)}


def _failure_notes(store: FeatureStore, clip_ids: set[str]) -> dict[str, str]:
    """clip id -> the extraction failures recorded for it, one line."""
    fails = store.failures().to_pylist()
    notes: dict[str, list[str]] = {}
    for f in fails:
        if f["clip_id"] in clip_ids:
            notes.setdefault(f["clip_id"], []).append(f"{f['extractor']}: {f['error_type']}: {f['message']}")
    return {c: "; ".join(v) for c, v in notes.items()}


def prediction_table(run: TrainedRun, store: FeatureStore, view: AlignedView, scores: HeadScores) -> pa.Table:
    """One row per predict clip of the store: scores, or a named error when no modality was available."""
    clips = [c for c in store.clips().to_pylist() if c["split"] == PREDICT_SPLIT]
    seen = _present(view, run.modalities)
    failures = _failure_notes(store, {c["clip_id"] for c in clips})
    sources = store.media_sources()
    now = datetime.now(timezone.utc)
    rows = []
    for c in clips:
        cid = c["clip_id"]
        mods = seen.get(cid, [])
        error = None
        if not mods:
            why = failures.get(cid) or "no transcript text, audio or video the model reads"
            error = f"no modality the model reads ({', '.join(run.modalities)}) is available: {why}"
        source = sources.get(c["video_id"])
        row = {
            "media": source.path if source else c["media_uri"] or c["video_id"],
            "video_id": c["video_id"], "segment_id": cid,
            "start": c["start"], "end": c["end"], "text": c["text"], "modalities": mods,
            "score": None if error else scores.mean["m"][cid],
            "score_std": None if error else scores.std_m[cid],
            "error": error, "run": run.name, "run_fingerprint": run.fingerprint,
            "view_fingerprint": view.fingerprint, "predicted_at": now,
        }
        for modality, column in _HEAD_COLUMN.items():  # a head without its modality saw only padding
            head = SHORT[modality]
            row[column] = scores.mean[head][cid] if modality in mods and head in scores.mean else None
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=schema.PREDICTIONS)
    return table.sort_by([("video_id", "ascending"), ("start", "ascending")])


def write_predictions(store: FeatureStore, run: TrainedRun, table: pa.Table) -> tuple[list[str], dict[str, str]]:
    """One part per media file under ``predictions/<run>/`` (a re-scored file replaces its part):
    the parts written, and video id -> error for those that could not be, so one file's failure
    never loses the others' parts."""
    paths: list[str] = []
    unsaved: dict[str, str] = {}
    for video in sorted(set(table.column("video_id").to_pylist())):
        part = table.filter(pc.equal(table.column("video_id"), video))
        try:
            paths.append(store.write_predictions(run.name, video, part))
        except StoreError as exc:
            unsaved[video] = str(exc)
    return paths, unsaved


EXPORT_SUFFIXES = (".csv", ".parquet")


def export_target(out: str | os.PathLike[str]) -> Path:
    """``out`` as the predictions file, checked before any scoring work (the CLI and the flow call it
    first; ``export_predictions`` again): ``store.fs.output_file`` with a .csv or .parquet name."""
    return output_file(out, "a .csv or .parquet file", EXPORT_SUFFIXES)


def export_predictions(table: pa.Table, out: str | os.PathLike[str]) -> Path:
    """``.csv`` (modalities joined with ``+``) or ``.parquet``, chosen by the suffix; an OS error
    writing it (a full disk) is a ``StoreError`` naming the file."""
    path = export_target(out)
    with writing_out(path, "the predictions"):
        if path.suffix.lower() == ".parquet":
            pq.write_table(table, path)
        else:
            joined = pa.array(["+".join(m) for m in table.column("modalities").to_pylist()], pa.string())
            flat = table.set_column(table.schema.get_field_index("modalities"), "modalities", joined)
            pacsv.write_csv(flat, path)
    return path


# -- the stage's steps (``flows/predict.py`` runs them as tasks) -------------------------------------
def ingest_new_media(
    store_url: str, media: Sequence[str], segment: SegmentConfig, allow_empty: bool = False
) -> tuple[IngestSummary, int]:
    """New media files and folders as unlabeled ``predict`` segments in the predict store's clip table.
    Each input file keeps the video id the store's media-source record gives it, and a new file never
    takes one held by another (``corpora.layouts.media.plan_media``): its predictions part is its own.
    The record gains this run's files and keeps every earlier one. Also returns how many input files
    the paths held (a folder is its files, not one).

    Paths with no media or transcript at all are an error, unless ``allow_empty`` (an inbox folder a
    schedule polls is often empty): then the clip table is emptied and nothing is scored."""
    held = FeatureStore.open(store_url).media_sources() if StoreFS(store_url).exists("store.json") else {}
    try:
        result = ingest_media([Path(m) for m in media], segment, held)
    except ManifestError:
        if not allow_empty:
            raise
        result = IngestResult(schema.CLIPS.empty_table(), schema.REJECTS.empty_table(), "media")
    summary = store_ingest(store_url, result)
    FeatureStore.open(store_url).write_media_sources(held | result.sources)
    return summary, len(result.sources)


def align_for_run(store_url: str, run: TrainedRun, feature_sets: dict[str, str]) -> AlignSummary:
    """The run's alignment of the predict store's segments, normalised with the run view's statistics."""
    return align_view(FeatureStore.open(store_url), align_config_for(run, feature_sets), stats=run.stats)


@dataclass
class PredictSummary:
    """What one predict run did, for the CLI, the logs and the Prefect artifact."""

    run: str
    store: str
    media: list[MediaSummary]
    parts: list[str]  # predictions parts written, relative to the store
    report: str | None  # the HTML timeline report
    export: str | None  # the --out file
    unsaved: dict[str, str] = field(default_factory=dict)  # media whose part could not be written -> why
    rejects: int = 0
    first_rejects: list[str] = field(default_factory=list)  # what ingest named of them (IngestSummary)
    extracted: int = 0  # clips whose features were computed (not found in the store) by this run
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds
    artifact: str | None = None

    @property
    def segments(self) -> int:
        return sum(m.segments for m in self.media)

    @property
    def failed(self) -> int:
        return sum(m.failed for m in self.media)

    @property
    def message(self) -> str:
        unsaved = "".join(f"; {media}: predictions NOT saved in the store ({why})"
                          for media, why in self.unsaved.items())
        return (f"predicted {self.segments - self.failed} of {self.segments} segments of {len(self.media)} media "
                f"file(s) with run {self.run} in {self.seconds:.1f} s ({self.failed} failed, {self.rejects} "
                f"rejected at ingest); report: {self.report}{unsaved}")

    @property
    def markdown(self) -> str:
        lines = [f"# emoflow predictions of run `{self.run}`", "", self.message, ""]
        lines += [f"- {m.describe()}; {m.story}" for m in self.media]
        lines += [f"- rejected: {r}" for r in self.first_rejects]
        return "\n".join(lines) + "\n"


def score_and_write(
    store_url: str, run: TrainedRun, *, device: str | None = None, batch_size: int = 64, out: str | None = None,
) -> PredictSummary:
    """Score the predict store's segments with ``run``, write one predictions part per media file,
    the timeline report of every media file this run has scored here, and ``out`` when given. A
    part that cannot be written is named in the summary and still in the report and ``out``; an
    ``out`` that cannot be written is a ``StoreError`` raised last, saying what is saved."""
    store = FeatureStore.open(store_url)
    clips = store.clips()
    if not pc.any(pc.equal(clips.column("split"), PREDICT_SPLIT)).as_py():
        table = schema.PREDICTIONS.empty_table()
    else:
        view = open_view(store, run.view_name)
        table = prediction_table(run, store, view, score_view(run, view, device, batch_size))
    parts, unsaved = write_predictions(store, run, table)
    report = None
    everything = store.predictions(run.name)
    if unsaved:  # this run's rows, not the store's older part, of a media file whose part could not be written
        ids = pa.array(list(unsaved), pa.string())
        older = everything.filter(pc.invert(pc.is_in(everything.column("video_id"), ids)))
        everything = pa.concat_tables([older, table.filter(pc.is_in(table.column("video_id"), ids))])
    if everything.num_rows:
        rendered = render_predictions(everything, StoreFS(f"{store.url}/predictions/{quote_name(run.name)}/report"),
                                      title=f"emoflow predictions of run {run.name}",
                                      run_info={"run": str(run.root), "seeds": list(run.seed_dirs),
                                                "fingerprint": run.fingerprint})
        report = rendered.html
    try:
        export = str(export_predictions(table, out)) if out else None
    except StoreError as exc:  # the parts and the report are written by now: only the export is lost
        lost = f" except those of {', '.join(sorted(unsaved))}" if unsaved else ""
        raise StoreError(f"{exc}; the predictions are saved in {store.url}{lost}"
                         + (f", the report in {report}" if report else "")) from None
    summaries = summarize_predictions(table)
    media = {m.video_id: m.media for m in summaries}
    return PredictSummary(run.name, store.url, summaries, parts, report, export,
                          {media.get(v) or v: why for v, why in unsaved.items()})
