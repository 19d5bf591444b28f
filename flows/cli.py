"""The ``emoflow`` command line: thin Typer wrappers over the flows (and, for dry runs and
evaluation, the plain stages they wrap)."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

import flows  # noqa: F401  (sets Prefect defaults before Prefect is imported)
from stages.config import PipelineConfig, dump_config, load_config
from store.errors import ConfigError, EmoflowError

console = Console()


class _NoUserErrorTracebacks(logging.Filter):
    """Prefect logs a failed flow run's exception with its traceback; for a user error the CLI's
    one line says it all, so the record keeps its message and drops the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EmoflowError):
            record.exc_info = record.exc_text = None
        return True


_NO_USER_ERROR_TRACEBACKS = _NoUserErrorTracebacks()


class _UserErrorsExit2(TyperGroup):
    """Runs every command (``store`` ones included) under the CLI's one error handler: a user error
    (``EmoflowError``: config, registry, store, manifest, media) prints one line naming the problem
    and exits 2; any other exception is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        logging.getLogger("prefect.flow_runs").addFilter(_NO_USER_ERROR_TRACEBACKS)  # once: same instance
        try:
            return super().invoke(ctx)
        except EmoflowError as exc:
            # soft_wrap and Text: one line whatever the width, brackets in names never read as markup
            console.print(Text.assemble(("error:", "bold red"), " ", " ".join(str(exc).split())), soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(cls=_UserErrorsExit2, help="emoflow: multimodal sentiment feature pipeline and feature store.",
                  no_args_is_help=True)
store_app = typer.Typer(help="Inspect and maintain a feature store.", no_args_is_help=True)
app.add_typer(store_app, name="store")

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override, e.g. --set train.k=32 or --set 'extract.extractors\\[vision.cnn].batch_size=8' (repeatable)")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="print the resolved config and plan, write nothing")]
StoreArg = Annotated[str, typer.Argument(help="store directory or fsspec URL")]


def _config(
    config: Path | None, overrides: list[str] | None, options: dict[str, Any], explicit: dict[str, Any] | None = None
) -> PipelineConfig:
    """The config of one command: file, then ``--set``, then the typed options by config key (None:
    not given), then ``explicit`` values, which are set even when None."""
    given = {k: v for k, v in options.items() if v is not None}
    return load_config(config, overrides, given | (explicit or {}))


def _table(title: str, columns: list[str], rows: list[list[object]]) -> Table:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(x) for x in r])
    return table


@app.command()
def ingest(
    dataset: Annotated[Optional[str], typer.Argument(help="dataset root or manifest file")] = None,
    store: Annotated[Optional[str], typer.Option(help="store directory or URL")] = None,
    layout: Annotated[Optional[str], typer.Option(help="auto | manifest | mmsa | mosi")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Validate a dataset into the store's clip table; every rejected row gets a named reason."""
    cfg = _config(config, set_, {"dataset.path": dataset, "store": store, "dataset.layout": layout})
    if dry_run:
        console.print(dump_config(cfg))
        console.print(f"plan: read {cfg.dataset.path} ({cfg.dataset.layout}) -> {cfg.store}/clips.parquet")
        return
    from flows.ingest import ingest_flow

    s = ingest_flow(cfg)
    console.print(
        f"[green]ingested[/] {s.clips} clips, {s.rejects} rejected ({s.layout} layout) into {cfg.store}; "
        + ("changed" if s.changed else "unchanged")
        + (f" (+{s.added} -{s.removed} ~{s.modified})" if s.changed else "")
    )
    if s.reject_reasons:
        console.print(_table("rejects by reason", ["reason", "rows"], [[k, v] for k, v in sorted(s.reject_reasons.items())]))


@app.command()
def extract(
    store: Annotated[Optional[str], typer.Option(help="store directory or URL")] = None,
    extractor: Annotated[Optional[list[str]], typer.Option("--extractor", "-e", help="only these extractors (repeatable)")] = None,
    dask: Annotated[Optional[str], typer.Option("--dask", help="'local' (LocalCluster) or a scheduler address tcp://HOST:PORT")] = None,
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
    rows = plan_summary(plans)
    console.print(_table("plan", ["feature set", "extractor", "to extract", "to share", "already in store", "batches"],
                         [[r["feature_set"], r["extractor"], r["todo"], r["linked"], r["skipped"], r["batches"]]
                          for r in rows]))
    if dry_run:
        console.print(dump_config(cfg))
        return
    total_clips = sum(p.todo for p in plans)
    total_seconds = sum(b.seconds for p in plans for b in p.batches)
    summary = _run_with_progress(cfg, total_clips, total_seconds, progress and sys.stdout.isatty())
    rows = []
    for name, s in summary.sets.items():
        rtf = s["media_seconds"] / summary.wall_seconds if summary.wall_seconds else 0.0
        rows.append([name, s["done"], s["linked"], s["skipped"], s["failed"], s["absent"], f"{s['media_seconds']:.1f}",
                     f"{rtf:.1f}x"])
    console.print(_table(f"extraction summary ({summary.wall_seconds:.1f} s wall)",
                         ["feature set", "done", "linked", "skipped", "failed", "absent", "media s", "realtime"], rows))
    if summary.failed:
        console.print(f"[yellow]{summary.failed} clip failures recorded; see `emoflow store ls` and retry with --only-failed[/]")
        raise typer.Exit(1)


def _run_with_progress(cfg: PipelineConfig, total_clips: int, total_seconds: float, show: bool):  # -> ExtractSummary
    """Drive a rich progress bar from completed batches (never from inside tasks)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from flows.extract import run_extract

    if not show:
        return run_extract(cfg)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as bar:
        clips_task = bar.add_task("clips", total=total_clips, rate="")
        secs_task = bar.add_task("media-seconds", total=round(total_seconds), rate="")

        def hook(res) -> None:  # noqa: ANN001 - BatchResult
            bar.advance(clips_task, res.done + res.failed)
            bar.advance(secs_task, round(res.media_seconds))
            elapsed = bar.tasks[secs_task].elapsed or 1e-9
            bar.update(secs_task, rate=f"{bar.tasks[secs_task].completed / elapsed:.1f}x realtime")

        return run_extract(cfg, progress=hook)


@app.command()
def align(
    store: Annotated[Optional[str], typer.Option(help="store directory or URL")] = None,
    view: Annotated[Optional[str], typer.Option(help="view name under aligned/ [default: default]")] = None,
    grid: Annotated[Optional[str], typer.Option(help="word | window | none [default: word]")] = None,
    window: Annotated[Optional[float], typer.Option(help="window length in seconds (grid=window) [default: 0.5]")] = None,
    hop: Annotated[Optional[float], typer.Option(help="window hop in seconds [default: the window length]")] = None,
    pooling: Annotated[Optional[str], typer.Option(help="mean | max | last [default: mean]")] = None,
    empty: Annotated[Optional[str], typer.Option(help="a step with no rows: nearest | zeros [default: nearest]")] = None,
    max_len: Annotated[Optional[int], typer.Option("--max-len", help="padded length L [default: --percentile of train lengths]")] = None,
    percentile: Annotated[Optional[float], typer.Option(help="percentile of train sequence lengths for L [default: 95]")] = None,
    feature_set: Annotated[Optional[list[str]], typer.Option("--feature-set", help="MODALITY=SET|EXTRACTOR, or MODALITY=none to leave it out (repeatable)")] = None,
    normalize: Annotated[Optional[bool], typer.Option("--normalize/--no-normalize", help="standardise with the train mean/std [default: on]")] = None,
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
        fsets[f"align.feature_sets.{mod.strip()}"] = None if value.strip().lower() in ("", "none", "null") else value.strip()
    cfg = _config(config, set_, {
        "store": store, "align.view": view, "align.grid": grid, "align.window": window, "align.hop": hop,
        "align.pooling": pooling, "align.empty": empty, "align.max_len": max_len,
        "align.percentile": percentile, "align.normalize": normalize,
    }, fsets)
    from stages.align import plan_align, plan_rows

    if dry_run:
        p = plan_align(cfg)
        console.print(_table(f"align plan: view {cfg.align.view!r}, {cfg.align.grid} grid, {len(p.clips)} clips",
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
    console.print(_table(f"view {s.view!r} ({s.grid} grid, {s.clips} clips)",
                         ["modality", "feature set", "L", "present", "not present"],
                         [[m, s.feature_sets[m], s.L[m], s.present[m],
                           ", ".join(f"{v} {k}" for k, v in s.missing[m].items()) or "0"] for m in s.feature_sets]))
    console.print(("[green]" if s.changed else "") + s.message)


@app.command()
def stats(
    store: Annotated[Optional[str], typer.Option(help="store directory or URL")] = None,
    view: Annotated[Optional[str], typer.Option(help="aligned view to summarise [default: every view]")] = None,
    name: Annotated[Optional[str], typer.Option(help="report name under reports/ [default: the view, else 'dataset']")] = None,
    values: Annotated[Optional[bool], typer.Option("--values/--no-values", help="read every feature value (NaN/inf, mean/std) [default: on]")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Dataset statistics: reports/<name>/report.md, report.html (one file) and stats.json, plus Prefect artifacts."""
    cfg = _config(config, set_, {"store": store, "stats.view": view, "stats.name": name, "stats.read_values": values})
    from flows.stats import stats_flow

    s = stats_flow(cfg)
    console.print(f"[green]{s.message}[/]")
    console.print(_table("report files", ["file", "where"], [[k, v] for k, v in s.files.items()]
                         + [["prefect artifacts", ", ".join(s.artifacts)]]))


@app.command()
def train(
    store: Annotated[Optional[str], typer.Option(help="store directory or URL")] = None,
    view: Annotated[Optional[str], typer.Option(help="aligned view to train on [default: align.view]")] = None,
    ablation: Annotated[str, typer.Option(help="full | no_uff | no_lgt | no_sm | no_slgm | text | audio | vision")] = "full",
    seeds: Annotated[Optional[int], typer.Option(help="train the first N of train.seeds and report mean ± std")] = None,
    text_mode: Annotated[Optional[str], typer.Option(help="finetune | frozen [default: train.text_mode]")] = None,
    name: Annotated[Optional[str], typer.Option(help="run name under runs/ [default: <view>-<ablation>-<UTC time>-<random>]")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Train MCMF+SLGM on an aligned view; writes a run directory with metrics and the best checkpoint."""
    cfg = _config(config, set_, {"store": store, "align.view": view, "train.text_mode": text_mode})
    if dry_run:
        console.print(dump_config(cfg))
        console.print(f"plan: train {ablation} on view {cfg.align.view!r} of {cfg.store} "
                      f"with seeds {cfg.train.seeds[:seeds] if seeds else [cfg.train.seed]} into {cfg.runs}")
        return
    from flows.train import train_flow
    from stages.train import summary_table

    out = train_flow(cfg.store, cfg.align.view, cfg.train, cfg.runs, ablation=ablation, seeds=seeds, name=name)

    console.print(f"run: {out['run']}")
    console.print(summary_table(out["mean_std"]))


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="a run directory (with seed-* runs) written by `emoflow train`")],
    split: Annotated[str, typer.Option(help="train | valid | test")] = "test",
    store: Annotated[Optional[str], typer.Option(help="the store, if it moved since training")] = None,
) -> None:
    """MMSA metrics (Acc-2 has0/non0, F1, Acc-5, Acc-7, MAE, Corr) of a run's best checkpoints, mean ± std over seeds."""
    from stages.train import run_evaluate, summary_table

    out = run_evaluate(run, split, store)
    console.print(f"{split} metrics over seeds {out['seeds']} (×100):")
    console.print(summary_table(out["mean_std"]))


@app.command()
def pipeline(
    stages: Annotated[str, typer.Option(help="comma-separated subset of ingest,extract,align,stats")] = "ingest,extract,align,stats",
    extractor: Annotated[Optional[list[str]], typer.Option("--extractor", "-e", help="only these extractors (repeatable)")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Run ingest -> extract -> align -> stats as one flow (what the scheduled deployments run)."""
    import json

    cfg = _config(config, set_, {}).with_extractors(extractor)
    from flows.pipeline import pipeline_flow
    from stages.pipeline import resolve_stages

    wanted = resolve_stages([s for s in stages.split(",") if s])  # fail before a server starts
    summary = pipeline_flow(cfg, wanted)
    console.print_json(json.dumps(summary))
    if summary.get("extract", {}).get("failed"):
        raise typer.Exit(1)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo dataset and store go")] = Path("work/demo"),
    clips: Annotated[int, typer.Option("--clips", help="number of generated clips")] = 72,
    seed: Annotated[int, typer.Option(help="generator seed")] = 0,
) -> None:
    """Generate the embedded sample dataset and run every pipeline stage on it."""
    from flows.demo import run_demo

    outputs = run_demo(workdir, n_clips=clips, seed=seed, console=console)
    console.print(_table("demo outputs", ["stage", "where"], [[k, v] for k, v in outputs.items()]))


@store_app.command("ls")
def store_ls(store: StoreArg) -> None:
    """List clips, feature sets, views and reports with counts."""
    from store import FeatureStore

    st = FeatureStore.open(store)
    clips = st.clips()
    splits = Counter(clips.column("split").to_pylist())
    console.print(f"store {st.url}: {clips.num_rows} clips " + ", ".join(f"{k}={v}" for k, v in sorted(splits.items()))
                  + f"; {st.rejects().num_rows} rejected at ingest; {st.failures().num_rows} active failures")
    from store.verify import account

    rows = []
    for name in st.feature_set_names():
        fset = st.feature_set(name)
        index = fset.index()
        absent = sum(1 for a in index.column("absent").to_pylist() if a)
        acc = account(st, fset)
        rows.append([name, fset.attrs.get("dim", "?"), index.num_rows, absent, sum(index.column("length").to_pylist()),
                     len(acc.committed), len(acc.failed), len(acc.pending)])
    console.print(_table("feature sets", ["set", "dim", "clips", "absent", "rows", "current", "failed", "pending"], rows))
    from store.views import open_view

    vrows = []
    for name in st.view_names():
        v = open_view(st, name)
        vrows.append([name, v.attrs.get("grid", "?"), v.clips.num_rows, ",".join(v.modalities), v.fingerprint[:12]])
    console.print(_table("aligned views", ["view", "grid", "clips", "modalities", "fingerprint"], vrows))
    console.print(_table("reports", ["report"], [[r] for r in st.report_names()]))


@store_app.command("verify")
def store_verify(store: StoreArg) -> None:
    """Check every committed clip against its shard (shape, dtype, finite values, checksum)."""
    from store import FeatureStore
    from store.verify import verify

    problems = verify(FeatureStore.open(store))
    if problems:
        console.print(_table("problems", ["feature set", "clip", "problem"], [[p.feature_set, p.clip_id, p.problem] for p in problems]))
        raise typer.Exit(1)
    console.print("[green]store verified: no problems[/]")


@store_app.command("vacuum")
def store_vacuum(
    store: StoreArg,
    grace: Annotated[float, typer.Option(help="only remove orphans older than this many seconds")] = 3600.0,
) -> None:
    """Remove orphan shards left by crashed writers (after a grace period for running writers)."""
    from store import FeatureStore
    from store.verify import vacuum

    removed = vacuum(FeatureStore.open(store), grace_seconds=grace)
    console.print(f"removed {len(removed)} orphan shard(s)" + "".join(f"\n  {s}/{sh}" for s, sh in removed))


def main() -> None:  # pragma: no cover - console entry for `python -m flows.cli`
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
