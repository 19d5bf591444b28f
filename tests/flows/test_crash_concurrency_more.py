"""The writing commands other than extract, killed mid-run and run two at once on one store: real
``emoflow`` processes, SIGKILLed (or paused) at chosen points, then run again.

``emoflow ingest``: killed between its rejects and its clip table; two ingests of different datasets,
or of one dataset, at once; an ingest while ``emoflow extract`` runs. ``emoflow train``: killed
mid-epoch, between the metrics and the finish stamp, and in the second seed of two; ``evaluate`` and
``predict`` then refuse the run, and the same ``--name`` trains it whole. ``emoflow predict``: killed
in ingest, extraction, scoring and between two predictions parts; two runs on one store at once, on
the same inbox and on two inboxes. After every kill the store or run holds whole things only, and
after every rerun, or both concurrent runs, the outcome equals a lone uninterrupted run's.

The commands run in processes forked from a driver (``python -m`` this module) that imported the CLI
once, so each costs its own work, not the ~6 s import. A job names the CLI arguments and optionally a
``kill`` or ``pause`` at the n-th call of a function or method (``module:Class.method``, ``match``:
an argument containing that text); a pause writes a marker file another job can wait for.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa
import pytest
import yaml

from store import FeatureStore
from store.verify import verify
from tests.helpers.extract_driver import Driver, child_process, run_batch

N_CLIPS = 16
EXTRACT = {"extractors": {"audio.mfcc": {}}, "batch_clips": 4}
TINY_TRAIN = {  # tests/helpers/training.tiny_config, on the audio ablation: seconds per run
    "k": 8, "heads": 2, "lgt_layers": 1, "glimpses": 2, "d_f": 3, "head_dim_m": 8, "head_dim_l": 4, "head_dim_a": 4,
    "head_dim_v": 4, "text_mode": "frozen", "batch_size": 8, "accumulate": 1, "max_epochs": 2, "patience": 3,
    "seed": 0, "device": "cpu", "lr_other": 1e-2, "lr_av": 1e-2, "threads": 1,
}


# -- the driver process -------------------------------------------------------------------------
def _patch(spec: dict[str, Any], action: Callable[[], None]) -> None:
    """Run ``action`` before (or ``"when": "after"``) the ``n``-th call of ``spec["at"]`` whose
    arguments include ``spec["match"]`` (any call when absent)."""
    module, _, attr = spec["at"].partition(":")
    owner: Any = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    orig, seen = getattr(owner, name), [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        fire = False
        if "match" not in spec or any(spec["match"] in str(a) for a in (*args, *kwargs.values())):
            seen[0] += 1
            fire = seen[0] == spec.get("n", 1)
        if fire and spec.get("when", "before") == "before":
            action()
        out = orig(*args, **kwargs)
        if fire and spec.get("when") == "after":
            action()
        return out

    setattr(owner, name, wrapper)


def _child(job: dict[str, Any]) -> NoReturn:
    """One ``emoflow`` command, killed or paused where the job says; its exit status is the command's."""

    def command() -> int:
        if job.get("kill"):
            _patch(job["kill"], lambda: os.kill(os.getpid(), signal.SIGKILL))
        if job.get("pause"):
            pause = job["pause"]

            def wait() -> None:
                Path(pause["marker"]).write_text(str(time.time()))
                time.sleep(pause["seconds"])

            _patch(pause, wait)
        while job.get("wait_for") and not Path(job["wait_for"]).exists():
            time.sleep(0.01)
        time.sleep(max(0.0, job.get("start_at", 0.0) - time.time()))
        from flows.cli import app

        try:
            app(job["args"], prog_name="emoflow")
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        return 0

    child_process(job, command)


def main() -> None:
    """Import what every command needs, then run each batch of jobs read from stdin."""
    import threading

    from features.extractors.base import available_extractors

    for module in ("flows.cli", "flows.extract", "flows.ingest", "flows.predict", "flows.train", "stages.train"):
        importlib.import_module(module)

    available_extractors()
    assert threading.active_count() == 1, "forking needs a single-threaded driver"
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(run_batch(json.loads(line), _child)), flush=True)


# -- the test's side -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def commands(prefect_harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    """The driver of this module: its jobs are ``emoflow`` commands (``_child``)."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_LOGGING_LEVEL": "WARNING",
           "COLUMNS": "400"}
    with Driver.start(tmp_path_factory.mktemp("command-logs"), env, module=__name__) as driver:
        yield driver


def _ok(res: dict[str, Any]) -> None:
    assert res["exit"] == 0, res["log"][-4000:]


def _killed(res: dict[str, Any]) -> None:
    assert res["signal"] == signal.SIGKILL, res["log"][-4000:]


def _write_manifest(data: Path, name: str, rows: list[dict[str, str]]) -> Path:
    with open(data / name, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return data / name


@pytest.fixture(scope="module")
def world(prefect_harness, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A generated dataset, ingested, extracted (audio.mfcc), aligned and trained on (a tiny audio
    run), plus inboxes of its media and what lone runs made of them: the references."""
    from corpora.synth import generate_dataset
    from features.align import AlignConfig, align_view
    from flows.extract import run_extract
    from flows.predict import predict_flow
    from stages.config import PipelineConfig
    from stages.ingest import run_ingest
    from stages.train import run_train
    from tests.helpers.training import one_torch_thread
    from training.config import TrainConfig

    root = tmp_path_factory.mktemp("world")
    data = generate_dataset(root / "data", n_clips=N_CLIPS, seed=3, min_seconds=1.5, max_seconds=2.5)
    with open(data.manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    # manifests: the first 12 clips; all 16 plus a row for a missing file (a reject)
    fewer = _write_manifest(data.root, "fewer.csv", rows[:12])
    more = _write_manifest(data.root, "more.csv", [*rows, {**rows[0], "clip_id": "gone", "media": "media/gone.mp4"}])
    cfg = PipelineConfig.model_validate({"store": str(root / "store"), "dataset": {"path": str(data.manifest)},
                                         "executor": {"workers": 2}, "extract": EXTRACT})
    run_ingest(cfg)
    run_extract(cfg)
    align_view(FeatureStore.open(cfg.store), AlignConfig(view="v", grid="none",
                                                        feature_sets={"text": None, "vision": None}))
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump({"train": TINY_TRAIN, "runs": str(root / "runs")}))
    with one_torch_thread():
        run, _ = run_train(cfg.store, "v", TrainConfig(**TINY_TRAIN), root / "runs", ablation="audio", name="tiny")
    media = sorted((data.root / "media").glob("*.mp4"))
    inbox, other = root / "inbox", root / "other"
    for folder, files in ((inbox, media[:4]), (other, media[4:6])):
        folder.mkdir()
        for m in files:
            shutil.copy(m, folder / m.name)
    predicted = {}
    for folder in (inbox, other):
        store = root / f"predicted-{folder.name}"
        predict_flow([str(folder)], str(run), PipelineConfig.model_validate({"predict": {"store": str(store)},
                                                                            "executor": {"workers": 2}}))
        predicted[folder.name] = _predictions(store, "tiny")
    return {"root": root, "data": data.root, "manifest": data.manifest, "fewer": fewer, "more": more,
            "store": Path(cfg.store), "config": config, "run": run, "inbox": inbox, "other": other,
            "predicted": predicted}


def _predictions(store: Path, run: str) -> dict[str, list[dict[str, Any]]]:
    """video id -> its predictions part's rows (without the time they were made), in segment order."""
    table = FeatureStore.open(store).predictions(run).drop_columns(["predicted_at"])
    out: dict[str, list[dict[str, Any]]] = {}
    for row in table.sort_by("segment_id").to_pylist():
        out.setdefault(row["video_id"], []).append(row)
    return out


def _same_predictions(got: dict[str, list[dict[str, Any]]], want: dict[str, list[dict[str, Any]]]) -> None:
    assert sorted(got) == sorted(want)
    for video, rows in want.items():
        assert len(got[video]) == len(rows), video
        for g, w in zip(got[video], rows):
            assert g.keys() == w.keys(), (g, w)
            for key, value in w.items():
                assert g[key] == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value), (key, g, w)


def _predict(world: dict[str, Any], store: Path, inbox: str = "inbox", **job: Any) -> dict[str, Any]:
    return {"args": ["predict", str(world[inbox]), "--run", str(world["run"]), "--store", str(store),
                     "--set", "executor.workers=2"], **job}


def _tables(store: Path) -> tuple[pa.Table, pa.Table]:
    st = FeatureStore.open(store)
    return st.clips(), st.rejects()


# -- ingest ----------------------------------------------------------------------------------------
def _ingest(world: dict[str, Any], store: Path, manifest: str, **job: Any) -> dict[str, Any]:
    return {"args": ["ingest", str(world[manifest]), "--store", str(store)], **job}


def test_ingest_killed_between_rejects_and_clip_table_leaves_the_older_table_named_by_verify_and_reruns_whole(
    world, commands, tmp_path
) -> None:
    store, lone = tmp_path / "store", tmp_path / "lone"
    for res in commands.run(_ingest(world, store, "fewer"), _ingest(world, lone, "fewer")):
        _ok(res)
    clips_before = FeatureStore.open(store).clips()
    (killed, ref) = commands.run(
        _ingest(world, store, "more", kill={"at": "store.fs:StoreFS.write_bytes_atomic", "match": "clips.parquet"}),
        _ingest(world, lone, "more"))
    _killed(killed)
    _ok(ref)
    clips, rejects = _tables(store)
    assert clips.equals(clips_before)  # the older clip table, whole
    assert rejects.column("clip_id").to_pylist() == ["gone"]  # the new rejects, whole
    problems = [p.problem for p in verify(FeatureStore.open(store))]
    assert len(problems) == 1 and "rejects.parquet belongs to another clip table" in problems[0], problems
    (again,) = commands.run(_ingest(world, store, "more"))
    _ok(again)
    assert "changed (+4 -0 ~0)" in again["log"]
    got, want = _tables(store), _tables(lone)
    assert got[0].equals(want[0]) and got[1].equals(want[1])
    assert verify(FeatureStore.open(store)) == []


def test_two_ingests_of_different_datasets_at_once_take_turns_and_leave_one_datasets_tables(
    world, commands, tmp_path
) -> None:
    store = tmp_path / "store"
    marker = tmp_path / "first-paused"
    # the first stops for 3 s between its rejects and its clip table; the second starts then
    first, second = commands.run(
        _ingest(world, store, "more", pause={"at": "store.fs:StoreFS.write_bytes_atomic", "match": "clips.parquet",
                                             "seconds": 3.0, "marker": str(marker)}),
        _ingest(world, store, "fewer", wait_for=str(marker)))
    _ok(first)
    _ok(second)
    assert "is held by emoflow ingest" in second["log"] and "waiting for it" in second["log"]
    assert second["seconds"] - first["seconds"] > -0.5  # it ended after the first
    clips, rejects = _tables(store)
    assert clips.num_rows == 12 and rejects.num_rows == 0  # the later run's pair, not the first's rejects
    assert verify(FeatureStore.open(store)) == []


def test_two_ingests_of_one_dataset_at_once_both_succeed_and_equal_one(world, commands, tmp_path) -> None:
    store = tmp_path / "store"
    start = time.time() + 0.2
    results = commands.run(*(_ingest(world, store, "more", start_at=start) for _ in range(2)))
    for res in results:
        _ok(res)
    assert sum("changed (+16 -0 ~0)" in r["log"] for r in results) == 1  # the other found it done
    clips, rejects = _tables(store)
    assert clips.num_rows == N_CLIPS and rejects.num_rows == 1
    assert verify(FeatureStore.open(store)) == []


def test_ingest_while_extract_runs_loses_nothing_and_a_second_extract_completes_the_store(
    world, commands, tmp_path
) -> None:
    from store.verify import account

    store = tmp_path / "store"
    marker = tmp_path / "extract-paused"
    (ing,) = commands.run(_ingest(world, store, "fewer"))
    _ok(ing)
    extract = ["extract", "--store", str(store), "-e", "audio.mfcc", "--set", "extract.batch_clips=4",
               "--no-progress"]
    ext, ing = commands.run(
        {"args": extract, "pause": {"at": "store.featureset:FeatureSet._write_index", "when": "after",
                                    "seconds": 3.0, "marker": str(marker)}},
        _ingest(world, store, "manifest", wait_for=str(marker)))
    _ok(ext)
    _ok(ing)
    assert ing["seconds"] < ext["seconds"]  # extract does not hold the store: ingest did not wait
    st = FeatureStore.open(store)
    (fset,) = st.sets_for("audio.mfcc")
    assert fset.index().num_rows == 12 and verify(st) == []  # the clips extract planned, each once
    (again,) = commands.run({"args": extract})
    _ok(again)
    ref = FeatureStore.open(world["store"]).sets_for("audio.mfcc")[0]
    (fset,) = FeatureStore.open(store).sets_for("audio.mfcc")
    index = fset.index()
    assert sorted(index.column("clip_id").to_pylist()) == sorted(ref.index().column("clip_id").to_pylist())
    for clip in index.column("clip_id").to_pylist():
        np.testing.assert_array_equal(fset.read(clip).values, ref.read(clip).values)
    assert verify(st) == []
    counts = account(st)[fset.name]
    assert len(counts.committed) == N_CLIPS and not counts.failed and not counts.pending


# -- train -----------------------------------------------------------------------------------------
def _train(world: dict[str, Any], name: str, runs: Path, *extra: str, **job: Any) -> dict[str, Any]:
    return {"args": ["train", "--store", str(world["store"]), "--view", "v", "--ablation", "audio", "--name", name,
                     "--config", str(world["config"]), "--set", f"runs={runs}", "--no-progress", *extra], **job}


def _metrics(run: Path) -> dict[str, float]:
    """``seed/split/metric`` -> value, of every seed of a run."""
    return {f"{p.parent.name}/{split}/{name}": value for p in sorted(run.glob("seed-*/metrics.json"))
            for split, values in json.loads(p.read_text()).items() for name, value in values.items()}


def test_train_killed_mid_epoch_or_before_its_finish_stamp_is_refused_by_evaluate_and_predict_and_reruns_whole(
    world, commands, tmp_path
) -> None:
    runs = tmp_path / "runs"
    results = commands.run(
        _train(world, "mid-epoch", runs, kill={"at": "training.runs:RunDir.log_epoch", "when": "after"}),
        _train(world, "before-finish", runs, kill={"at": "training.runs:RunDir.finish"}),
        _train(world, "second-seed", runs, "--seeds", "2",
               kill={"at": "training.runs:RunDir.log_epoch", "n": 3, "when": "after"}),
        _train(world, "lone", runs, "--seeds", "2"))
    for res in results[:3]:
        _killed(res)
    _ok(results[3])
    for name, seed in (("mid-epoch", 0), ("before-finish", 0), ("second-seed", 1112)):
        assert (runs / name / f"seed-{seed}" / "best.safetensors").exists()  # an epoch's checkpoint, whole
    refusals = commands.run(*({"args": ["evaluate", str(runs / name), "--split", "valid"]}
                              for name in ("mid-epoch", "before-finish", "second-seed")),
                            {"args": ["predict", str(world["other"]), "--run", str(runs / "before-finish"),
                                      "--store", str(tmp_path / "pstore")]})
    for name, res in zip(("mid-epoch/seed-0", "before-finish/seed-0", "second-seed/seed-1112", "before-finish/seed-0"),
                         refusals):
        assert res["exit"] == 2, res["log"]
        assert f"error: run {runs / name} did not finish training" in res["log"].replace("\n", ""), res["log"]
    assert not (tmp_path / "pstore").exists()  # refused before anything was ingested
    seed_1111 = (runs / "second-seed" / "seed-1111" / "best.safetensors").stat().st_mtime_ns
    again = commands.run(*(_train(world, n, runs, *(["--seeds", "2"] if n == "second-seed" else []))
                           for n in ("mid-epoch", "before-finish", "second-seed")))
    for res in again:
        _ok(res)
    assert (runs / "second-seed" / "seed-1111" / "best.safetensors").stat().st_mtime_ns == seed_1111  # kept
    assert _metrics(runs / "second-seed") == pytest.approx(_metrics(runs / "lone"))
    assert _metrics(runs / "mid-epoch") == _metrics(runs / "before-finish")  # the same seed and data, whole
    twice, evaluated = commands.run(_train(world, "mid-epoch", runs),
                                    {"args": ["evaluate", str(runs / "second-seed"), "--split", "valid"]})
    assert twice["exit"] == 2 and "already holds a finished run" in twice["log"]
    _ok(evaluated)


# -- predict ---------------------------------------------------------------------------------------
def test_predict_killed_in_each_stage_leaves_whole_parts_and_a_rerun_equals_a_lone_run(
    world, commands, tmp_path
) -> None:
    points = {
        "ingest": {"at": "store.fs:StoreFS.write_bytes_atomic", "match": "predict_sources.json"},
        "extract": {"at": "store.featureset:FeatureSet._write_index", "n": 1},
        "score": {"at": "stages.predict:score_view"},
        "parts": {"at": "store.featurestore:FeatureStore.write_predictions", "n": 2, "when": "after"},
    }
    stores = {k: tmp_path / k for k in points}
    killed = commands.run(*(_predict(world, stores[k], kill=spec) for k, spec in points.items()))
    want = world["predicted"]["inbox"]
    for k, res in zip(points, killed):
        _killed(res)
        assert verify(FeatureStore.open(stores[k])) == [], k
        got = _predictions(stores[k], "tiny")
        assert len(got) == (2 if k == "parts" else 0), k  # whole parts only: each one a lone run's
        for video, rows in got.items():
            _same_predictions({video: rows}, {video: want[video]})
    again = commands.run(*(_predict(world, stores[k]) for k in points))
    for k, res in zip(points, again):
        _ok(res)
        _same_predictions(_predictions(stores[k], "tiny"), want)
        assert verify(FeatureStore.open(stores[k])) == [], k


def test_two_predicts_on_one_store_at_once_take_turns_and_each_video_equals_a_lone_run(
    world, commands, tmp_path
) -> None:
    same, two = tmp_path / "same", tmp_path / "two"

    def holding(store: Path) -> dict[str, Any]:  # the first run stops 2 s as scoring starts, holding the store
        return {"at": "stages.predict:score_view", "seconds": 2.0, "marker": str(store) + ".paused"}

    # the second starts while the first is paused: of the same inbox, and of other media
    results = commands.run(_predict(world, same, pause=holding(same)), _predict(world, same, wait_for=f"{same}.paused"),
                           _predict(world, two, pause=holding(two)),
                           _predict(world, two, "other", wait_for=f"{two}.paused"))
    for res in results:
        _ok(res)
    for first, second in (results[:2], results[2:]):
        assert "is held by emoflow predict" in second["log"] and "waiting for it" in second["log"], second["log"]
        assert second["seconds"] > first["seconds"]
    _same_predictions(_predictions(same, "tiny"), world["predicted"]["inbox"])
    _same_predictions(_predictions(two, "tiny"), world["predicted"]["inbox"] | world["predicted"]["other"])
    for store in (same, two):
        assert verify(FeatureStore.open(store)) == []


def test_the_writer_lock_names_its_holder_to_a_run_that_gives_up(tmp_path) -> None:
    from store.errors import StoreError
    from store.lock import store_writer

    heard: list[str] = []
    with store_writer(str(tmp_path), "emoflow predict --run r1"):
        t0 = time.monotonic()
        with pytest.raises(StoreError, match=r"is held by emoflow predict --run r1 \(host .*, pid \d+, for \d+ s\); "
                                             r"gave up after 0 s"):
            with store_writer(str(tmp_path), "emoflow ingest", timeout=0.3, on_wait=heard.append):
                pass
        assert time.monotonic() - t0 < 5
    assert heard and "waiting for it" in heard[0]
    with store_writer(str(tmp_path), "emoflow ingest", timeout=0) as waited:  # released: free again at once
        assert waited < 1


if __name__ == "__main__":
    main()
