#!/usr/bin/env python
"""Requests per store operation on object storage (issue 18): an ``s3://`` store on moto's S3 server
(loopback, in this process; tests/helpers/s3.py), N committed batches, counted at the server by kind
(GET / PUT / HEAD / LIST / DELETE …), before and after index compaction.

    python benchmarks/store_s3_requests.py [--batches 100] [--per 2]
                                           [--out benchmarks/results/store_s3_requests.json]

Build: one feature set (dim 4, 1–5 rows per clip, a ``word_index`` extra), ``--batches`` commits of
``--per`` clips through ``FeatureSet.commit`` (one shard + one index part each, as extraction commits).

Counted, each on fresh objects (no reader caches; s3fs keeps no listing cache under StoreFS):

- open store: ``FeatureStore.open(url)``;
- open set + index: ``store.feature_set(name).index()`` (every index row; the readers' view);
- plan unchanged run: ``store.feature_set(name).committed()``: what ``stages.extract.plan_set``
  reads when every clip is committed (four projected index columns);
- store ls: ``emoflow store ls URL`` in this process (Typer's test runner), its own open included;
- read one clip: ``feature_set(name).lookup(clip)`` (index lookup + shard reads) and ``read(clip)``
  on a set whose index is already loaded (the shard reads alone);
- verify: ``store.verify.verify`` (every row against its shard); vacuum: ``vacuum(grace=0)`` on a
  clean store (nothing to remove: the listing and index reads it costs);
- compact: the compaction itself, once, between "before" and "after".

Request latency on loopback moto is ~10 ms (a Python server sharing this process); on S3 each
request costs ~10–30 ms in-region, so the counts, not the seconds, are the figure to carry over.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as ``python benchmarks/store_s3_requests.py`` from anywhere
    sys.path.insert(0, str(REPO))

from store import FeatureStore  # noqa: E402
from store.verify import vacuum, verify  # noqa: E402
from tests.helpers.features import feature_result  # noqa: E402
from tests.helpers.s3 import S3Server, s3_server  # noqa: E402

SET = "x.bench-00000000"
KINDS = ("GET", "PUT", "HEAD", "LIST", "DELETE")


def build(url: str, batches: int, per: int) -> None:
    store = FeatureStore.open(url, create=True)
    fset = store.ensure_feature_set(SET, {"identity": {"bench": 1}, "dim": 4, "extractor": "x.bench",
                                          "modality": "audio"})
    for b in range(batches):
        fset.commit([(f"c{i}", f"fp{i}", feature_result(i % 5 + 1, seed=i), 1.0)
                     for i in range(b * per, (b + 1) * per)])


def measure(s3: S3Server, label: str, op: Callable[[], Any]) -> dict[str, Any]:
    start = time.perf_counter()
    with s3.counting() as count:
        op()
    row: dict[str, Any] = {k: count[k] for k in KINDS}
    row |= {k: n for k, n in count.by_kind.items() if k not in KINDS}
    row |= {"total": count.total, "seconds": round(time.perf_counter() - start, 3)}
    print(f"  {label:<28} " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def operations(s3: S3Server, url: str, clip: str) -> dict[str, dict[str, Any]]:
    from typer.testing import CliRunner

    from flows.cli import app

    def store_ls() -> None:
        result = CliRunner().invoke(app, ["store", "ls", url])
        assert result.exit_code == 0, result.output

    def read_loaded() -> None:
        fset = FeatureStore.open(url).feature_set(SET)
        fset.index()
        with s3.counting() as count:  # only the clip's reads count: subtract the index load
            fset.read(clip)
        reads.update(count.by_kind)

    reads: dict[str, int] = {}
    rows = {
        "open store": measure(s3, "open store", lambda: FeatureStore.open(url)),
    }
    store = FeatureStore.open(url)
    rows["open set + index"] = measure(s3, "open set + index", lambda: store.feature_set(SET).index())
    rows["plan unchanged run"] = measure(s3, "plan unchanged run", lambda: store.feature_set(SET).committed())
    rows["store ls"] = measure(s3, "store ls", store_ls)
    rows["read one clip (lookup)"] = measure(s3, "read one clip (lookup)", lambda: store.feature_set(SET).lookup(clip))
    read_loaded()
    rows["read one clip (index loaded)"] = {k: reads.get(k, 0) for k in KINDS} | {"total": sum(reads.values())}
    print("  read one clip (index loaded) " + json.dumps(rows["read one clip (index loaded)"]))
    rows["verify"] = measure(s3, "verify", lambda: verify(FeatureStore.open(url)))
    rows["vacuum"] = measure(s3, "vacuum", lambda: vacuum(FeatureStore.open(url), grace_seconds=0))
    return rows


def table(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> str:
    kinds = " / ".join(KINDS) + " (total)"
    lines = [f"| operation | before: {kinds} | after: {kinds} |", "|---|---|---|"]
    for op in before:
        cells = [" / ".join(str(r.get(k, 0)) for k in KINDS) + f" ({r['total']})" for r in (before[op], after[op])]
        lines.append(f"| {op} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=100, help="committed batches (= index parts before compaction)")
    parser.add_argument("--per", type=int, default=2, help="clips per batch")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/store_s3_requests.json")
    args = parser.parse_args()

    import moto
    import s3fs  # type: ignore[import-untyped]

    with s3_server() as s3:
        url = s3.url("bench")
        t0 = time.perf_counter()
        with s3.counting() as built:
            build(url, args.batches, args.per)
        build_s = time.perf_counter() - t0
        print(f"built {args.batches} batches x {args.per} clips in {build_s:.1f} s: {dict(built.by_kind)} "
              f"({built.total / args.batches:.1f} requests per commit)", flush=True)
        clip = f"c{args.batches * args.per // 2}"
        print(f"before compaction ({args.batches} index parts):")
        before = operations(s3, url, clip)
        compact = measure(s3, "compact", lambda: FeatureStore.open(url).feature_set(SET).compact())
        print("after compaction (one consolidated file):")
        after = operations(s3, url, clip)

    report = {
        "batches": args.batches, "clips": args.batches * args.per, "per_batch": args.per,
        "commit": {"requests": dict(built.by_kind), "per_commit": round(built.total / args.batches, 2),
                   "seconds": round(build_s, 2)},
        "before": before, "compact": compact, "after": after,
        "versions": {"moto": moto.__version__, "s3fs": s3fs.__version__},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "server": "moto S3 server on 127.0.0.1 in the benchmark process; requests counted by a WSGI middleware",
    }
    print(table(before, after))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
