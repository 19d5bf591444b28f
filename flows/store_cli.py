"""``emoflow store``: list, verify, vacuum, compact and migrate a feature store (runs under the main
CLI's error handler)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer

from flows.console import console, simple_table
from stages.config import absolute_location

store_app = typer.Typer(help="Inspect and maintain a feature store.", no_args_is_help=True)
# the config's rule for locations: a quoted '~' is the home folder, as in --store and config files
StoreArg = Annotated[str, typer.Argument(help="store directory or fsspec URL", parser=absolute_location)]


@store_app.command("ls")
def store_ls(store: StoreArg) -> None:
    """List clips, feature sets, views and reports with counts."""
    import pyarrow.compute as pc

    from store import FeatureStore

    st = FeatureStore.open(store)
    clips, digest = st.clips_with_digest()
    splits = Counter(clips.column("split").to_pylist())
    console.print(f"store {st.url}: {clips.num_rows} clips " + ", ".join(f"{k}={v}" for k, v in sorted(splits.items()))
                  + f"; {st.rejects().num_rows} rejected at ingest; {st.failures().num_rows} active failures")
    from store.verify import account

    sets = {name: st.feature_set(name) for name in st.feature_set_names()}
    rows = []
    for name, acc in account(st, (clips, digest), sets).items():
        index = sets[name].index()
        absent = pc.sum(pc.greater(pc.utf8_length(index.column("absent")), 0)).as_py() or 0
        n_rows = pc.sum(index.column("length")).as_py() or 0
        rows.append([name, sets[name].attrs.get("dim", "?"), index.num_rows, absent, n_rows,
                     len(acc.committed), len(acc.failed), len(acc.pending)])
    columns = ["set", "dim", "clips", "absent", "rows", "current", "failed", "pending"]
    console.print(simple_table("feature sets", columns, rows))
    from store.views import open_view

    vrows = []
    for name in st.view_names():
        v = open_view(st, name)
        vrows.append([name, v.attrs.get("grid", "?"), v.clips.num_rows, ",".join(v.modalities), v.fingerprint[:12]])
    console.print(simple_table("aligned views", ["view", "grid", "clips", "modalities", "fingerprint"], vrows))
    console.print(simple_table("reports", ["report"], [[r] for r in st.report_names()]))


SetOpt = Annotated[list[str] | None, typer.Option("--set", help="only this feature set (repeatable)")]


@store_app.command("verify")
def store_verify(
    store: StoreArg,
    sets: SetOpt = None,
    sample: Annotated[int | None, typer.Option(min=1, help="check this many random clips per set")] = None,
    seed: Annotated[int, typer.Option(help="random seed of --sample")] = 0,
) -> None:
    """Check every committed clip against its shard (shape, dtype, finite values, checksum), shard by shard."""
    from store import FeatureStore
    from store.verify import verify

    problems = verify(FeatureStore.open(store), sets=sets or None, sample=sample, seed=seed)
    if problems:
        found: list[list[object]] = [[p.feature_set, p.clip_id, p.problem] for p in problems]
        console.print(simple_table("problems", ["feature set", "clip", "problem"], found))
        raise typer.Exit(1)
    console.print("[green]store verified: no problems[/]")


@store_app.command("vacuum")
def store_vacuum(
    store: StoreArg,
    grace: Annotated[float, typer.Option(help="only remove orphans older than this many seconds")] = 3600.0,
) -> None:
    """Remove what crashed or finished writers left (older than a grace period, for running writers):
    orphan shards and stale temp files, shards merged away by compaction, index parts a consolidated
    file covers and consolidated files no manifest names; and the build folders and interrupted swaps
    of aligned views whose builder died (no live build lock)."""
    from store import FeatureStore
    from store.verify import vacuum
    from store.views import vacuum_views

    opened = FeatureStore.open(store)
    removed = vacuum(opened, grace_seconds=grace)
    console.print(f"removed {len(removed)} orphan shard(s)" + "".join(f"\n  {s}/{sh}" for s, sh in removed))
    views = vacuum_views(opened)
    console.print(f"cleared {len(views)} leftover(s) of dead view builds" + "".join(f"\n  {v}" for v in views))


@store_app.command("compact")
def store_compact(
    store: StoreArg,
    sets: SetOpt = None,
    min_parts: Annotated[int, typer.Option(
        min=0, help="skip a set with fewer uncovered index parts (0: merge small shards even with none)")] = 1,
) -> None:
    """Consolidate each feature set's index parts into one sorted Parquet file and merge its small
    shards into large ones (safe while writers commit; vacuum removes the merged-away shards later)."""
    from store import FeatureStore
    from store.verify import compact

    results = compact(FeatureStore.open(store), sets=sets or None, min_parts=min_parts)
    rows: list[list[object]] = [[c.feature_set, c.parts, c.rows, c.shards_retired, c.removed, f"{c.seconds:.2f}"]
                                for c in results]
    console.print(simple_table("compacted", ["set", "parts", "rows", "shards merged", "files removed", "seconds"],
                               rows))


@store_app.command("migrate")
def store_migrate(store: StoreArg) -> None:
    """Upgrade a store to the current format version, compact every feature set's index and merge its
    small shards."""
    from store import FeatureStore
    from store.featurestore import FORMAT_VERSION
    from store.verify import migrate

    results = migrate(FeatureStore.open(store))
    console.print(f"store at format version {FORMAT_VERSION}; {len(results)} feature set index(es) compacted")
