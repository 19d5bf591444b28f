"""What the CLI shows: the shared console, tables, and progress bars driven from flow hooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from stages.config import PipelineConfig

if TYPE_CHECKING:  # stages.predict imports torch: not for every command
    from stages.predict import PredictSummary

console = Console()


def simple_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """A titled table of plain cells (every value printed with ``str``)."""
    out = Table(title=title)
    for c in columns:
        out.add_column(c)
    for r in rows:
        out.add_row(*[str(x) for x in r])
    return out


def run_extract_with_progress(
    cfg: PipelineConfig, total_clips: int, total_seconds: float, show: bool
):  # -> ExtractSummary
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

        def hook(res) -> None:
            bar.advance(clips_task, res.done + res.failed)
            bar.advance(secs_task, round(res.media_seconds))
            elapsed = bar.tasks[secs_task].elapsed or 1e-9
            bar.update(secs_task, rate=f"{bar.tasks[secs_task].completed / elapsed:.1f}x realtime")

        return run_extract(cfg, progress=hook)


def train_with_progress(train: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """A rich bar over the whole run: seed k/N, epoch, train loss, valid L_m (MAE or CE), best so far, ETA."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from stages.train import EpochProgress

    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}")]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("training", total=100, status="", eta="?")

        def hook(p: EpochProgress) -> None:
            elapsed = bar.tasks[task].elapsed or 0.0
            bar.update(
                task,
                description=f"seed {p.seed_index}/{p.n_seeds} epoch {p.epoch}",
                status=f"loss {p.train_loss:.3f} · valid {p.selection} {p.valid_loss:.3f} · "
                f"best {p.best_loss:.3f} (epoch {p.best_epoch})",
                eta=f"{p.eta_seconds / 60:.1f} min",
                completed=100 * elapsed / max(elapsed + p.eta_seconds, 1e-9),
            )

        return train(progress=hook)


def metrics_table(title: str, rows: dict[str, dict[str, Any]], label: str = "split") -> Table:
    """A run's metrics, a row per split (or ablation): accuracies and F1 as percentages, MAE, Corr and
    CE as decimals, ``mean ± std`` over seeds (``training.metrics.format_cell``)."""
    from training.metrics import format_cell, metric_columns

    names = metric_columns(rows)
    cells = [[name, *(format_cell(m[k], k) for k in names)] for name, m in rows.items()]
    return simple_table(title, [label, *names], cells)


def print_notes(notes: Sequence[str], out: Console | None = None) -> None:
    """The notes under a metrics table (why a metric shows "—": ``training.metrics.undefined_notes``),
    on ``out`` (default: the CLI's console)."""
    for note in notes:
        (out or console).print(Text(f"note: {note}"))


def print_rejects(first: Sequence[str], total: int, where: str) -> None:
    """The rejected inputs an ingest names (each message names the file or row and the problem), and
    where the rest are when there are more."""
    for message in first:
        console.print(Text(f"rejected: {message}"), soft_wrap=True)
    if total > len(first):
        console.print(Text(f"... {total - len(first)} more rejected; all of them are in {where}"), soft_wrap=True)


def print_predict_summary(summary: PredictSummary) -> None:
    """Per media file: segments, failures, mean score, positive/negative shares, span; then its course
    in words (one line each, never wrapped mid-name), and the totals."""
    from reports.timeline import percent

    rows = [[Path(m.media).name, m.segments, m.failed, "–" if m.mean_score is None else f"{m.mean_score:+.2f}",
             percent(m.share_positive), percent(m.share_negative), m.span] for m in summary.media]
    console.print(simple_table(f"predictions of run {summary.run}",
                               ["media", "segments", "failed", "mean", "positive", "negative", "span"], rows))
    for m in summary.media:
        console.print(Text(f"{Path(m.media).name}: {m.story}"), soft_wrap=True)
    print_rejects(summary.first_rejects, summary.rejects, f"{summary.store}/rejects.parquet")
    console.print(Text(summary.message + (f"; exported to {summary.export}" if summary.export else "")),
                  soft_wrap=True)
