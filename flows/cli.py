"""The ``emoflow`` command line: thin Typer wrappers over the flows (and, for dry runs and
evaluation, the plain stages they wrap)."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text
from typer.core import TyperGroup

from flows import ephemeral_flow_settings  # first: sets Prefect defaults before Prefect is imported
from flows.console import (
    console,
    metrics_table,
    print_notes,
    print_predict_summary,
    print_rejects,
    run_extract_with_progress,
    simple_table,
    train_with_progress,
)
from flows.demo import DEMO_MIN_CLIPS
from flows.export_cli import export_app
from flows.server_guard import guard_temporary_server
from flows.store_cli import store_app
from stages.config import PipelineConfig, dump_config, load_config
from store.errors import ConfigError, EmoflowError


class _NoUserErrorTracebacks(logging.Filter):
    """Prefect logs a failed flow or task run's exception with its traceback; for a user error the
    CLI's one line says it all, so the record keeps its message and drops the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EmoflowError):
            record.exc_info = record.exc_text = None
        return True


_NO_USER_ERROR_TRACEBACKS = _NoUserErrorTracebacks()


class _UserErrorsExit2(TyperGroup):
    """Runs every command (``store`` ones included) under the CLI's one error handler: a user error
    (``EmoflowError``: config, registry, store, manifest, media) prints one line naming the problem
    and exits 2; any other exception is a bug and keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context, which has no public name
        for runs in ("prefect.flow_runs", "prefect.task_runs"):  # a user error raised in a task is logged twice
            logging.getLogger(runs).addFilter(_NO_USER_ERROR_TRACEBACKS)  # once: the same instance
        guard_temporary_server()
        try:
            with ephemeral_flow_settings():
                return super().invoke(ctx)
        except EmoflowError as exc:
            _print_user_error(str(exc))
            raise typer.Exit(2) from None
        except Exception as exc:
            problem = _credentials_problem(exc)
            if problem is None:
                raise
            _print_user_error(problem)
            raise typer.Exit(2) from None


def _print_user_error(message: str) -> None:
    # soft_wrap and Text: one line whatever the width, brackets in names never read as markup
    console.print(Text.assemble(("error:", "bold red"), " ", " ".join(message.split())), soft_wrap=True)


def _credentials_problem(exc: BaseException) -> str | None:
    """An object store's missing credentials (botocore's, raised through s3fs from any store call) are
    the user's to set, not a bug: the one line naming them, else None. botocore can only have raised
    one if something imported it, so it is looked up only then."""
    if "botocore" not in sys.modules:
        return None
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    if not isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return None
    return (f"S3 store: {exc}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and "
            "AWS_ENDPOINT_URL for a server other than AWS, in every process that opens the store (docs/store.md)")


app = typer.Typer(cls=_UserErrorsExit2, help="emoflow: multimodal sentiment feature pipeline and feature store.",
                  no_args_is_help=True)

app.add_typer(store_app, name="store")
app.add_typer(export_app, name="export")

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="override, e.g. --set train.k=32 or "
                 "--set 'extract.extractors\\[vision.cnn].batch_size=8' (repeatable)"),
]
# The built-in extractors, for --help (static: building it from the registry would import torch on every
# command). Licences that restrict use are named here so a user can choose: docs/extraction.md.
EXTRACTORS_HELP = ("only these extractors (repeatable); built in: text.bert, audio.mfcc, vision.cnn, "
                   "vision.face (the largest face per frame, cropped, same CNN; dlib detector, Boost licence), "
                   "audio.egemaps (openSMILE eGeMAPS/ComParE; research and non-commercial use only, "
                   "commercial use needs an audEERING licence)")
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="print the resolved config and plan, write nothing")]


def _config(
    config: Path | None, overrides: list[str] | None, options: dict[str, Any], explicit: dict[str, Any] | None = None
) -> PipelineConfig:
    """The config of one command: file, then ``--set``, then the typed options by config key (None:
    not given), then ``explicit`` values, which are set even when None."""
    given = {k: v for k, v in options.items() if v is not None}
    return load_config(config, overrides, given | (explicit or {}))


@app.command()
def ingest(
    dataset: Annotated[Optional[str], typer.Argument(help="dataset root or manifest file")] = None,
    store: Annotated[Optional[str], typer.Option(help="store directory or URL")] = None,
    layout: Annotated[
        Optional[str], typer.Option(help="auto | manifest | mmsa | mosi | meld | "
                                "media (unlabeled media + sidecar transcript) | "
                                "mmsa-pkl (an MMSA feature pickle: clips, feature sets and a view)")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Validate a dataset into the store's clip table; every rejected row gets a named reason."""
    cfg = _config(config, set_, {"dataset.path": dataset, "store": store, "dataset.layout": layout})
    if dry_run:
        from corpora.ingest import resolve_layout
        from stages.ingest import dataset_path

        kind = resolve_layout(dataset_path(cfg), cfg.dataset.layout)  # a missing or unreadable dataset fails here too
        console.print(dump_config(cfg))
        console.print(f"plan: read {cfg.dataset.path} ({kind} layout) -> {cfg.store}/clips.parquet")
        return
    from flows.ingest import ingest_flow

    s = ingest_flow(cfg)
    console.print(
        f"[green]ingested[/] {s.clips} clips, {s.rejects} rejected ({s.layout} layout) into {cfg.store}; "
        + ("changed" if s.changed else "unchanged")
        + (f" (+{s.added} -{s.removed} ~{s.modified})" if s.changed else "")
    )
    if s.reject_reasons:
        reasons: list[list[object]] = [[k, v] for k, v in sorted(s.reject_reasons.items())]
        console.print(simple_table("rejects by reason", ["reason", "rows"], reasons))
        print_rejects(s.first_rejects, s.rejects, f"{cfg.store}/rejects.parquet")
    for note in s.notes:
        console.print(note, markup=False)


@app.command()
def extract(
    store: Annotated[Optional[str], typer.Option(help="store directory or URL")] = None,
    extractor: Annotated[
        Optional[list[str]],
        typer.Option("--extractor", "-e", help=EXTRACTORS_HELP),
    ] = None,
    dask: Annotated[
        Optional[str],
        typer.Option("--dask", help="'local' (LocalCluster) or a scheduler address tcp://HOST:PORT"),
    ] = None,
    workers: Annotated[Optional[int], typer.Option(help="threads, or Dask worker processes for --dask local")] = None,
    force: Annotated[bool, typer.Option("--force", help="recompute clips already in the store")] = False,
    only_failed: Annotated[bool, typer.Option("--only-failed", help="retry only clips with a failure row")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="rich progress bar")] = True,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Extract text, audio and vision features for every clip not yet in the store."""
    from stages.extract import plan, plan_summary

    cfg = _config(config, set_, {
        "store": store, "executor.dask": dask, "executor.workers": workers,
        "extract.force": force or None, "extract.only_failed": only_failed or None,
    }).with_extractors(extractor)
    from store import FeatureStore

    st = FeatureStore.open(cfg.store)
    plans = plan(st, cfg.extract, create=not dry_run)
    planned: list[list[object]] = [
        [r["feature_set"], r["extractor"], r["todo"], r["linked"], r["skipped"], r["batches"]]
        for r in plan_summary(plans)
    ]
    columns = ["feature set", "extractor", "to extract", "to share", "already in store", "batches"]
    console.print(simple_table("plan", columns, planned))
    if dry_run:
        console.print(dump_config(cfg))
        return
    total_clips = sum(p.todo for p in plans)
    total_seconds = sum(b.seconds for p in plans for b in p.batches)
    summary = run_extract_with_progress(cfg, total_clips, total_seconds, progress and sys.stdout.isatty())
    rows: list[list[object]] = []
    for name, s in summary.sets.items():
        rtf = s["media_seconds"] / summary.wall_seconds if summary.wall_seconds else 0.0
        rows.append([name, s["done"], s["linked"], s["skipped"], s["failed"], s["absent"], f"{s['media_seconds']:.1f}",
                     f"{rtf:.1f}x"])
    console.print(simple_table(f"extraction summary ({summary.wall_seconds:.1f} s wall)",
                         ["feature set", "done", "linked", "skipped", "failed", "absent", "media s", "realtime"], rows))
    if summary.failed:
        console.print(f"[yellow]{summary.failed} clip failures recorded; "
                      "see `emoflow store ls` and retry with --only-failed[/]")
        raise typer.Exit(1)


@app.command()
def align(
    store: Annotated[Optional[str], typer.Option(help="store directory or URL")] = None,
    view: Annotated[Optional[str], typer.Option(help="view name under aligned/ \\[default: default]")] = None,
    grid: Annotated[Optional[str], typer.Option(help="word | window | none \\[default: word]")] = None,
    window: Annotated[
        Optional[float],
        typer.Option(help="window length in seconds (grid=window) \\[default: 0.5]"),
    ] = None,
    hop: Annotated[Optional[float], typer.Option(help="window hop in seconds \\[default: the window length]")] = None,
    pooling: Annotated[Optional[str], typer.Option(help="mean | max | last \\[default: mean]")] = None,
    empty: Annotated[
        Optional[str],
        typer.Option(help="a step with no rows: nearest | zeros \\[default: nearest]"),
    ] = None,
    max_len: Annotated[
        Optional[int],
        typer.Option("--max-len", help="padded length L \\[default: --percentile of train lengths]"),
    ] = None,
    percentile: Annotated[
        Optional[float],
        typer.Option(help="percentile of train sequence lengths for L \\[default: 95]"),
    ] = None,
    feature_set: Annotated[
        Optional[list[str]],
        typer.Option("--feature-set", help="MODALITY=SET|EXTRACTOR, or MODALITY=none to leave it out (repeatable)"),
    ] = None,
    normalize: Annotated[
        Optional[bool],
        typer.Option("--normalize/--no-normalize", help="standardise with the train mean/std \\[default: on]"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="rebuild even when the view is up to date")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Pool the feature sets onto one time grid into a padded training view (aligned/<view>/)."""
    fsets: dict[str, str | None] = {}  # given as is: None (MODALITY=none) leaves the modality out
    for item in feature_set or []:
        mod, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--feature-set {item!r} is not MODALITY=SET (e.g. audio=audio.mfcc-7dc3e6ca)")
        named = value.strip()
        fsets[f"align.feature_sets.{mod.strip()}"] = None if named.lower() in ("", "none", "null") else named
    cfg = _config(config, set_, {
        "store": store, "align.view": view, "align.grid": grid, "align.window": window, "align.hop": hop,
        "align.pooling": pooling, "align.empty": empty, "align.max_len": max_len,
        "align.percentile": percentile, "align.normalize": normalize,
    }, fsets)
    from stages.align import plan_align, plan_rows

    if dry_run:
        p = plan_align(cfg)
        console.print(simple_table(f"align plan: view {cfg.align.view!r}, {cfg.align.grid} grid, {len(p.clips)} clips",
                             ["modality", "feature set", "dim", "L", "present", "absent", "missing", "stale"],
                             [list(r.values()) for r in plan_rows(p)]))
        for note in p.notes:
            console.print(f"[yellow]{note}[/]")
        console.print(dump_config(cfg))
        console.print("view is up to date: nothing to do" if p.up_to_date and not force else "would (re)build the view")
        return
    from flows.align import align_flow

    s = align_flow(cfg, force=force)
    for note in s.notes:
        console.print(f"[yellow]{note}[/]")
    console.print(simple_table(f"view {s.view!r} ({s.grid} grid, {s.clips} clips)",
                         ["modality", "feature set", "L", "present", "not present"],
                         [[m, s.feature_sets[m], s.L[m], s.present[m],
                           ", ".join(f"{v} {k}" for k, v in s.missing[m].items()) or "0"] for m in s.feature_sets]))
    console.print(("[green]" if s.changed else "") + s.message)


@app.command()
def stats(
    store: Annotated[Optional[str], typer.Option(help="store directory or URL")] = None,
    view: Annotated[Optional[str], typer.Option(help="aligned view to summarise \\[default: every view]")] = None,
    name: Annotated[
        Optional[str],
        typer.Option(help="report name under reports/ \\[default: the view, else 'dataset']"),
    ] = None,
    values: Annotated[
        Optional[bool],
        typer.Option("--values/--no-values", help="read every feature value (NaN/inf, mean/std) \\[default: on]"),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Dataset statistics: reports/<name>/report.md, report.html (one file) and stats.json, plus Prefect artifacts."""
    cfg = _config(config, set_, {"store": store, "stats.view": view, "stats.name": name, "stats.read_values": values})
    from flows.stats import stats_flow

    s = stats_flow(cfg)
    console.print(f"[green]{s.message}[/]")
    console.print(simple_table("report files", ["file", "where"], [[k, v] for k, v in s.files.items()]
                         + [["prefect artifacts", ", ".join(s.artifacts)]]))


@app.command()
def train(
    store: Annotated[Optional[str], typer.Option(help="store directory or URL")] = None,
    view: Annotated[Optional[str], typer.Option(help="aligned view to train on \\[default: align.view]")] = None,
    ablation: Annotated[
        str,
        typer.Option(help="full | no_uff | no_lgt | no_sm | no_slgm | text | audio | vision"),
    ] = "full",
    seeds: Annotated[
        Optional[int], typer.Option(min=1, help="train the first N of train.seeds and report mean ± std "
                                    "\\[default: train.seed alone]"),
    ] = None,
    ensemble: Annotated[
        bool,
        typer.Option("--ensemble", help="also report the seed ensemble: the seeds' predictions averaged per clip"),
    ] = False,
    text_mode: Annotated[Optional[str], typer.Option(help="finetune | frozen \\[default: train.text_mode]")] = None,
    target: Annotated[
        Optional[str],
        typer.Option(help="score (regression on label) | emotion | sentiment (classes of label_emotion / "
                     "label_sentiment, no SLGM) \\[default: train.target]"),
    ] = None,
    name: Annotated[
        Optional[str],
        typer.Option(help="run name under runs/: one folder name of at most 255 bytes \\[default: "
                     "<view>-<ablation>-<UTC time>-<random>, cut and hashed when longer than a file name]"),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
    progress: Annotated[
        bool,
        typer.Option("--progress/--no-progress", help="rich progress bar per seed and epoch"),
    ] = True,
) -> None:
    """Train MCMF+SLGM on an aligned view; writes a run directory with metrics and the best checkpoint."""
    cfg = _config(config, set_, {"store": store, "align.view": view, "train.text_mode": text_mode,
                                 "train.target": target})
    from stages.train import run_dir_name, train_plan

    into = f"{cfg.runs}/{run_dir_name(cfg.align.view, ablation, name)}" if name else cfg.runs  # a bad --name fails
    # a bad ablation, seed count, device or view fails here, dry run or not
    _, seed_list = train_plan(cfg.train, ablation, seeds, store=cfg.store, view=cfg.align.view)
    if dry_run:
        console.print(dump_config(cfg))
        console.print(f"plan: train {ablation} on view {cfg.align.view!r} of {cfg.store} "
                      f"with seeds {seed_list} into {into}")
        return
    from flows.train import run_training

    train = functools.partial(run_training, cfg.store, cfg.align.view, cfg.train, cfg.runs, ablation=ablation,
                              seeds=seeds, name=name, ensemble=ensemble)
    out = train_with_progress(train) if progress and sys.stdout.isatty() else train()
    console.print(f"run: {out['run']}")
    rows = dict(out["mean_std"])
    rows.update({f"{split} (ensemble of {len(out['seeds'])})": m for split, m in out.get("ensemble", {}).items()})
    console.print(metrics_table(f"{ablation}: mean ± std over seeds {out['seeds']}", rows))
    print_notes(out["notes"])


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="a run directory (with seed-* runs) written by `emoflow train`")],
    split: Annotated[str, typer.Option(help="train | valid | test")] = "test",
    store: Annotated[Optional[str], typer.Option(help="the store, if it moved since training")] = None,
) -> None:
    """MMSA metrics (Acc-2 has0/non0, F1, Acc-5, Acc-7, MAE, Corr) of a run's best checkpoints, mean ± std of seeds."""
    from stages.train import run_evaluate

    out = run_evaluate(run, split, store)
    console.print(metrics_table(f"{split}: mean ± std over seeds {out['seeds']}", out["mean_std"]))
    print_notes(out["notes"])


@app.command()
def predict(
    media: Annotated[list[Path], typer.Argument(help="media files, folders, or subtitle files alone (text only)")],
    run: Annotated[Path, typer.Option(help="a run directory written by `emoflow train`")],
    out: Annotated[Optional[Path], typer.Option(help="also export the predictions to FILE.csv or FILE.parquet")] = None,
    window: Annotated[
        Optional[float],
        typer.Option(help="cut fixed windows of S seconds instead of subtitle cues \\[default: cues when timed]"),
    ] = None,
    hop: Annotated[Optional[float], typer.Option(help="window hop in seconds \\[default: predict.segment.hop]")] = None,
    seed: Annotated[
        Optional[int], typer.Option(help="use this seed of the run only \\[default: every seed, averaged]")
    ] = None,
    store: Annotated[Optional[str], typer.Option(help="predict store \\[default: predict.store]")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Score new media with a trained run: sentiment per segment and over time, with a timeline report.

    Prints a summary per media file; re-scoring the same media extracts nothing.
    Exits 1 when a media file's predictions could not be saved in the store (still in the report and --out).
    """
    cfg = _config(config, set_, {"predict.store": store, "predict.seed": seed, "predict.segment.window": window,
                                 "predict.segment.hop": hop,
                                 "predict.segment.mode": "windows" if window is not None else None})
    from stages.predict import export_target, load_trained_run, reproduce_extraction

    if out is not None:  # a bad --out fails here, not after the scoring
        export_target(out)
    trained = load_trained_run(run, cfg.predict.seed)  # a bad run fails here, before a server starts
    repro = reproduce_extraction(trained)
    if dry_run:
        console.print(dump_config(cfg))
        console.print(f"plan: segment {len(media)} path(s), extract {sorted(repro.extract.extractors)} into "
                      f"{cfg.predict.store}, score with seeds {list(trained.seed_dirs)} of {trained.root}")
        return
    from flows.predict import predict_flow

    summary = predict_flow([str(m) for m in media], str(run), cfg, str(out) if out else None)
    print_predict_summary(summary)
    if summary.unsaved:
        raise typer.Exit(1)


@app.command()
def pipeline(
    stages: Annotated[
        str,
        typer.Option(help="comma-separated subset of ingest,extract,align,stats"),
    ] = "ingest,extract,align,stats",
    extractor: Annotated[
        Optional[list[str]],
        typer.Option("--extractor", "-e", help=EXTRACTORS_HELP),
    ] = None,
    store: Annotated[Optional[str], typer.Option(help="store directory or URL (else the config's)")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Run ingest -> extract -> align -> stats as one flow (what the scheduled deployments run)."""
    import json

    cfg = _config(config, set_, {"store": store}).with_extractors(extractor)
    from stages.pipeline import check_paths, resolve_stages

    wanted = resolve_stages([s for s in stages.split(",") if s])  # fail before a server starts
    check_paths(cfg, wanted)
    if dry_run:
        source = ""
        if "ingest" in wanted:
            from corpora.ingest import resolve_layout
            from stages.ingest import dataset_path

            kind = resolve_layout(dataset_path(cfg), cfg.dataset.layout)  # a missing dataset fails here too
            source = f" from {cfg.dataset.path} ({kind} layout)"
        console.print(dump_config(cfg))
        console.print(f"plan: {' -> '.join(wanted)}{source} into {cfg.store}")
        return
    from flows.pipeline import pipeline_flow

    summary = pipeline_flow(cfg, wanted)
    console.print_json(json.dumps(summary))
    if summary.get("extract", {}).get("failed"):
        raise typer.Exit(1)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo dataset and store go")] = Path("work/demo"),
    clips: Annotated[int, typer.Option("--clips", min=DEMO_MIN_CLIPS, help="number of generated clips (at least "
                                       f"{DEMO_MIN_CLIPS}: train, valid and test each need both label signs)")] = 72,
    seed: Annotated[int, typer.Option(help="generator seed")] = 0,
    extractor: Annotated[
        Optional[list[str]],
        typer.Option("--extractor", "-e", help="also extract with these (repeatable), e.g. audio.egemaps "
                     "(opt-in: slower than audio.mfcc, and openSMILE's licence is research/non-commercial only) "
                     "or vision.face (faces; the generated clips show none)"),
    ] = None,
) -> None:
    """Generate the embedded sample dataset, run every stage on it, then score a new generated video."""
    workdir = workdir.expanduser()
    try:  # a file in the way or no permission: one line naming --workdir, before any generation
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--workdir {workdir}: cannot create the folder ({exc.strerror})") from None
    from flows.demo import run_demo

    outputs = run_demo(workdir, n_clips=clips, seed=seed, console=console, extra_extractors=tuple(extractor or ()))
    console.print(simple_table("demo outputs", ["stage", "where"], [[k, v] for k, v in outputs.items()]))


def main() -> None:  # pragma: no cover - console entry for `python -m flows.cli`
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
