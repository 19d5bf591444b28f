"""``emoflow export``: a view in another tool's format (runs under the main CLI's error handler)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.console import console, simple_table

export_app = typer.Typer(help="Write a view in another tool's format.", no_args_is_help=True)


@export_app.command("mmsa")
def export_mmsa_cmd(
    out: Annotated[Path, typer.Option(help="the pickle to write (e.g. features.pkl)")],
    store: Annotated[str, typer.Option(help="store directory or URL")] = "work/store",
    view: Annotated[str, typer.Option(help="aligned view to export")] = "default",
) -> None:
    """The view as a thuiar/MMSA feature pickle (what MMSA.data_loader.MMDataLoader reads): docs/interop.md."""
    from interop.mmsa_export import export_mmsa

    s = export_mmsa(store, view, out)
    kind = "aligned (one grid, like aligned_50)" if s.aligned else "unaligned (grid none, like unaligned_50)"
    console.print(f"[green]exported[/] view {view!r} as an {kind} MMSA pickle -> {s.path}")
    console.print(simple_table("samples", ["split", "samples"], [[k, v] for k, v in s.samples.items()]))
    console.print(simple_table("train shapes", ["key", "shape"], [[k, str(v)] for k, v in s.shapes.items()]))
    for note in s.notes:
        console.print(f"note: {note}", markup=False)
