"""The extraction flow on real generated media: resumable, incremental, failure-isolating, crash-safe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from corpora.synth import generate_dataset, truncate_file, write_clip
from features.extractors.base import available_extractors
from flows.extract import extract_flow, run_extract
from stages.config import PipelineConfig
from stages.extract import plan
from stages.ingest import run_ingest
from store import FeatureStore
from store.verify import vacuum, verify
from tests.helpers.paths import REPO

FAST = {"text.bert": {}, "audio.mfcc": {}}


def _config(store: Path, data: Path, extractors: dict | None = None, **extract: object) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "store": str(store),
            "dataset": {"path": str(data)},
            "extract": {"extractors": extractors if extractors is not None else FAST, "batch_clips": 3, **extract},
        }
    )


def _sets(store: Path) -> dict[str, object]:
    st = FeatureStore.open(store)
    return {st.feature_set(n).attrs["extractor"]: st.feature_set(n) for n in st.feature_set_names()}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory, demo_data, prefect_harness):
    """The demo clips ingested and extracted once with all three default extractors."""
    store = tmp_path_factory.mktemp("extracted") / "store"
    cfg = _config(store, demo_data.root, extractors={"text.bert": {}, "audio.mfcc": {}, "vision.cnn": {}})
    run_ingest(cfg)
    summary = extract_flow(cfg)
    return cfg, summary


def test_every_clip_gets_finite_features_with_time_spans_inside_the_clip(extracted, demo_data) -> None:
    cfg, summary = extracted
    assert summary.failed == 0
    durations = {c.clip_id: c.duration for c in demo_data.clips}
    dims = {"text.bert": 384, "audio.mfcc": 40, "vision.cnn": 1280}
    for name, fset in _sets(Path(cfg.store)).items():
        index = fset.index()
        assert sorted(index.column("clip_id").to_pylist()) == sorted(durations), name
        for clip_id, dur in durations.items():
            feat = fset.read(clip_id)
            assert feat.absent is None
            assert feat.values.shape[1] == dims[name] and feat.values.shape[0] > 0
            assert np.isfinite(feat.values).all()
            assert feat.times.min() >= 0 and feat.times.max() <= dur + 0.01
            if name != "text.bert":  # frames cover the clip from start to end
                assert feat.times[0, 0] == pytest.approx(0.0, abs=1e-6)
                assert feat.times[-1, 1] == pytest.approx(dur, abs=0.6)
    assert verify(FeatureStore.open(cfg.store)) == []


def test_rerun_is_a_no_op(extracted) -> None:
    cfg, _ = extracted
    before = {n: s.index_parts().num_rows for n, s in _sets(Path(cfg.store)).items()}
    again = extract_flow(cfg)
    assert all(s["done"] == 0 and s["skipped"] == 12 for s in again.sets.values())
    assert {n: s.index_parts().num_rows for n, s in _sets(Path(cfg.store)).items()} == before


def test_changed_config_writes_a_new_feature_set_and_never_mixes(extracted, tmp_path: Path) -> None:
    cfg, _ = extracted
    store = tmp_path / "store"
    shutil.copytree(cfg.store, store)
    new = _config(store, Path(cfg.dataset.path), extractors={"audio.mfcc": {"n_mfcc": 20}})
    summary = extract_flow(new)
    (name, s), = summary.sets.items()
    assert s["done"] == 12 and s["skipped"] == 0
    st = FeatureStore.open(store)
    mfcc_sets = st.sets_for("audio.mfcc")
    assert len(mfcc_sets) == 2
    assert {fs.attrs["dim"] for fs in mfcc_sets} == {20, 40}
    for fs in mfcc_sets:  # each set holds one configuration only
        dims = {fs.read(c).values.shape[1] for c in fs.index().column("clip_id").to_pylist()}
        assert dims == {fs.attrs["dim"]}


def test_bad_media_become_failure_rows_while_good_clips_commit_and_only_failed_retries_them(
    tmp_path: Path, prefect_harness
) -> None:
    data = generate_dataset(tmp_path / "d", n_clips=6, seed=11)
    cfg = _config(tmp_path / "s", data.root, extractors={"audio.mfcc": {}, "vision.cnn": {}}, batch_clips=6)
    run_ingest(cfg)
    corrupt, truncated = data.clips[1], data.clips[4]
    originals = {c.clip_id: c.media.read_bytes() for c in (corrupt, truncated)}
    corrupt.media.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(30_000))
    truncate_file(truncated.media, keep=0.3)

    summary = extract_flow(cfg)
    st = FeatureStore.open(cfg.store)
    failures = st.failures()
    assert sorted(set(failures.column("clip_id").to_pylist())) == sorted([corrupt.clip_id, truncated.clip_id])
    for row in failures.to_pylist():
        assert row["clip_id"] in row["message"] and row["error_type"] and row["stage"]
    good = {c.clip_id for c in data.clips} - {corrupt.clip_id, truncated.clip_id}
    for fs in st.sets_for("audio.mfcc") + st.sets_for("vision.cnn"):
        assert good <= set(fs.index().column("clip_id").to_pylist())
    assert summary.failed >= 2

    for c in (corrupt, truncated):  # repair the files; re-ingest sees new fingerprints
        c.media.write_bytes(originals[c.clip_id])
    run_ingest(cfg)
    retry = extract_flow(cfg.model_copy(update={"extract": cfg.extract.model_copy(update={"only_failed": True})}))
    assert sum(s["done"] for s in retry.sets.values()) >= 2 and retry.failed == 0
    assert FeatureStore.open(cfg.store).failures().num_rows == 0  # no active failure left


def test_missing_streams_are_recorded_absences_not_failures(tmp_path: Path, prefect_harness) -> None:
    root = tmp_path / "d"
    (root / "m").mkdir(parents=True)
    write_clip(root / "m" / "a.m4a", seconds=2.0, video=False)
    write_clip(root / "m" / "v.mp4", seconds=2.0, audio=False)
    (root / "manifest.csv").write_text(
        "clip_id,media,text,label,split\n"
        "audio_only,m/a.m4a,it was good,1,train\n"
        "video_only,m/v.mp4,it was bad,-1,train\n"
    )
    cfg = _config(tmp_path / "s", root, extractors={"audio.mfcc": {}, "vision.cnn": {}})
    run_ingest(cfg)
    summary = extract_flow(cfg)
    assert summary.failed == 0
    sets = _sets(Path(cfg.store))
    assert sets["vision.cnn"].read("audio_only").absent and sets["vision.cnn"].read("video_only").absent is None
    assert sets["audio.mfcc"].read("video_only").absent and sets["audio.mfcc"].read("audio_only").absent is None


CRASHING_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from stages.config import PipelineConfig
    from stages.extract import plan, process_batch
    from store import FeatureStore
    from store.featureset import FeatureSet

    cfg = PipelineConfig.model_validate_json(sys.argv[1])
    calls = []
    original = FeatureSet._write_index
    def dying_write_index(self, shard, table):
        calls.append(shard)
        if len(calls) == 2:  # the second batch dies between its shard and its index part
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, shard, table)
    FeatureSet._write_index = dying_write_index
    for p in plan(FeatureStore.open(cfg.store), cfg.extract):
        for b in p.batches:
            process_batch(cfg.store, b, "crash-run")
    """
)


def test_a_killed_run_resumes_to_the_same_store_as_an_uninterrupted_one(extracted, tmp_path: Path) -> None:
    cfg_full, _ = extracted
    cfg = _config(tmp_path / "s", Path(cfg_full.dataset.path), extractors={"audio.mfcc": {}}, batch_clips=3)
    run_ingest(cfg)
    proc = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, cfg.model_dump_json()], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    st = FeatureStore.open(cfg.store)
    (fs,) = st.sets_for("audio.mfcc")
    assert fs.index().num_rows == 3  # only the first batch is visible

    summary = extract_flow(cfg)
    assert next(iter(summary.sets.values()))["done"] == 9
    assert len(vacuum(st, grace_seconds=0)) == 1 and verify(st) == []
    (resumed,) = FeatureStore.open(cfg.store).sets_for("audio.mfcc")
    (reference,) = FeatureStore.open(cfg_full.store).sets_for("audio.mfcc")
    assert resumed.index().num_rows == 12
    for clip_id in reference.index().column("clip_id").to_pylist():
        np.testing.assert_array_equal(resumed.read(clip_id).values, reference.read(clip_id).values)


def test_dry_run_plan_counts_what_is_left_without_writing(extracted) -> None:
    cfg, _ = extracted
    plans = plan(FeatureStore.open(cfg.store), cfg.extract, create=False)
    want = {n: (0, 12) for n in ("text.bert", "audio.mfcc", "vision.cnn")}
    assert {p.extractor: (p.todo, p.skipped) for p in plans} == want


def test_store_io_errors_are_retried_by_prefect_and_nothing_half_commits(
    tmp_path: Path, demo_data, prefect_harness, monkeypatch
) -> None:
    from store.featureset import FeatureSet

    cfg = _config(tmp_path / "s", demo_data.root, extractors={"audio.mfcc": {}}, batch_clips=12, retries=1)
    run_ingest(cfg)
    original, calls = FeatureSet._write_index, []

    def flaky_write_index(self, shard, table):  # the patched method's own signature
        calls.append(shard)
        if len(calls) == 1:
            raise OSError(5, "Input/output error (injected)")
        original(self, shard, table)

    monkeypatch.setattr(FeatureSet, "_write_index", flaky_write_index)
    summary = extract_flow(cfg)
    assert len(calls) == 2  # the task ran again after the I/O error
    assert next(iter(summary.sets.values()))["done"] == 12
    (fset,) = FeatureStore.open(cfg.store).sets_for("audio.mfcc")
    assert fset.index_parts().num_rows == 12  # the failed attempt left no visible rows


def test_deterministic_errors_are_not_retried(tmp_path: Path, demo_data, prefect_harness, monkeypatch) -> None:
    from store.featureset import FeatureSet

    cfg = _config(tmp_path / "s", demo_data.root, extractors={"audio.mfcc": {}}, batch_clips=12, retries=3)
    run_ingest(cfg)
    calls = []

    def broken_commit(self, items):
        calls.append(1)
        raise ValueError("a bug, not an I/O problem")

    monkeypatch.setattr(FeatureSet, "commit", broken_commit)
    with pytest.raises(ValueError, match="a bug"):
        extract_flow(cfg)
    assert len(calls) == 1


def test_on_threads_each_task_gets_its_share_of_the_torch_and_blas_threads(
    tmp_path: Path, demo_data, prefect_harness
) -> None:
    """Two in-flight tasks on the threads runner: torch and OpenBLAS each get half the cores (else
    OpenBLAS's idle threads spin on the other task's core), and both are given back afterwards."""
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    cfg = _config(tmp_path / "s", demo_data.root, extractors={"audio.mfcc": {}}, batch_clips=6)
    cfg = cfg.model_copy(update={"executor": cfg.executor.model_copy(update={"dask": None, "workers": 2})})
    run_ingest(cfg)
    available_extractors()  # the extractors' libraries (numpy's and scipy's OpenBLAS) are loaded
    before = (torch.get_num_threads(), blas_threads())
    seen: list[tuple[int, list[int]]] = []
    run_extract(cfg, progress=lambda res: seen.append((torch.get_num_threads(), blas_threads())))
    share = max(1, (os.cpu_count() or 1) // 2)
    assert seen and len(before[1]) >= 2, "the batches reported; numpy's and scipy's BLAS are seen"
    assert all(t == share and set(blas) == {share} for t, blas in seen), (seen, before)
    assert (torch.get_num_threads(), blas_threads()) == before


def test_the_flow_ships_to_dask_while_a_lock_holding_progress_hook_is_registered() -> None:
    """Prefect pickles the flow's function by value for Dask; a registered hook (a rich progress bar
    holds locks) must not go with it."""
    import threading

    import cloudpickle

    import flows.extract

    lock = threading.Lock()
    with flows.extract._progress.added(lambda res: lock.locked()):
        assert cloudpickle.dumps(flows.extract.extract_flow.fn)
