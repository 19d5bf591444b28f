"""``stages.extract`` without Prefect: planning (skip, link, extract each new input once),
partitioning, linking shared clips, and a run's accounting per feature set."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from stages.config import ExtractConfig
from stages.extract import (
    Batch,
    BatchResult,
    ExtractTally,
    SetPlan,
    link_shared,
    partition,
    plan,
    plan_summary,
    schedule,
)
from store import FeatureStore, schema
from tests.helpers.features import feature_result


def test_plan_skips_own_commits_links_identical_inputs_and_extracts_each_new_input_once(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, create=True)
    media = {"orig": "m1", "same": "m1", "own": "m2", "twin_a": "m4", "twin_b": "m4"}
    store.write_clips(pa.Table.from_pylist(
        [{"clip_id": c, "media_fingerprint": m * 32, "start": 0.0, "end": 2.0, "duration": 2.0, "text": "a film",
          "split": "train"} for c, m in media.items()], schema=schema.CLIPS))
    cfg = ExtractConfig(extractors={"audio.mfcc": {}})

    def decided(c: ExtractConfig = cfg) -> tuple[list[str], dict[str, str], int]:
        (p,) = plan(store, c)
        todo = [r["clip_id"] for b in p.batches for r in b.clips]
        return todo, {r["clip_id"]: r["shares"] for r in p.links}, p.skipped

    # a new input is extracted once in the run; its other clips share it
    assert decided() == (["orig", "own", "twin_a"], {"same": "orig", "twin_b": "twin_a"}, 0)
    (p,) = plan(store, cfg)
    fp = {r["clip_id"]: r["fingerprint"] for b in p.batches for r in b.clips}
    fp |= {r["clip_id"]: r["fingerprint"] for r in p.links}
    fset = store.feature_set(p.feature_set)
    fset.commit([("orig", fp["orig"], feature_result(3, seed=1), 2.0),
                 ("own", fp["own"], feature_result(3, seed=2), 2.0)])
    # committed under another id: shared, not re-extracted; committed under its own id: skipped
    assert decided() == (["twin_a"], {"same": "orig", "twin_b": "twin_a"}, 2)
    # --force recomputes every distinct input once and still shares it
    forced = decided(cfg.model_copy(update={"force": True}))
    assert forced == (["orig", "own", "twin_a"], {"same": "orig", "twin_b": "twin_a"}, 0)
    # a clip whose latest row is for other inputs is not "committed" because its fingerprint is in the store:
    # reverted to inputs it had before, it shares its own older row
    fset.commit([("own", "other inputs", feature_result(2, seed=5), 2.0)])
    assert decided()[1]["own"] == "own"

    # the twins' one extraction failed: the linked twin gets the failure under its own id, not silence
    (p,) = plan(store, cfg)
    cause = {"stage": "decode", "error_type": "CorruptMediaError", "message": "bad", "transient": False}
    linked, failures = link_shared(store, p, {fp["twin_a"]: cause}, "run-1")
    assert linked == 2 and [f["clip_id"] for f in failures] == ["twin_b"]
    assert failures[0]["error_type"] == "CorruptMediaError"
    assert "shares its inputs with clip 'twin_a'" in failures[0]["message"]
    assert store.feature_set(p.feature_set).read("same").fingerprint == fp["orig"]
    # --only-failed retries twin_b: once twin_a's features commit, it is linked, not extracted
    fset.commit([("twin_a", fp["twin_a"], feature_result(3, seed=6), 2.0)])
    assert decided(cfg.model_copy(update={"only_failed": True})) == ([], {"twin_b": "twin_a"}, 4)


def test_partition_caps_clips_and_media_seconds_per_batch() -> None:
    rows = [{"clip_id": f"c{k}", "duration": d} for k, d in enumerate([2.0, 2.0, 2.0, 9.0, 1.0])]
    batches = partition(rows, "s-1", "audio.mfcc", {}, ExtractConfig(batch_clips=2, batch_seconds=10.0))
    assert [[r["clip_id"] for r in b.clips] for b in batches] == [["c0", "c1"], ["c2"], ["c3", "c4"]]
    assert [b.seconds for b in batches] == [4.0, 2.0, 10.0]


def test_schedule_starts_the_costliest_batches_first_across_extractors() -> None:
    def set_plan(extractor: str, seconds: list[float]) -> SetPlan:
        batches = [Batch(f"{extractor}-x", extractor, {}, [{"clip_id": f"{extractor}{k}", "duration": d}])
                   for k, d in enumerate(seconds)]
        return SetPlan(f"{extractor}-x", extractor, extractor.split(".")[0], len(batches), 0, batches)

    # plan order is text, audio, vision; per media second vision costs most, MFCC least
    plans = [set_plan("text.bert", [30.0, 300.0]), set_plan("audio.mfcc", [30.0]), set_plan("vision.cnn", [10.0, 5.0])]
    order = [b.clips[0]["clip_id"] for b in schedule(plans)]
    assert order == ["text.bert1", "vision.cnn0", "vision.cnn1", "text.bert0", "audio.mfcc0"]
    assert sorted(order) == sorted(b.clips[0]["clip_id"] for p in plans for b in p.batches)  # each batch once


def test_tally_counts_batches_then_links_records_the_run_and_summarises(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, create=True)
    store.ensure_feature_set("s-1", {"identity": 1})
    batch = Batch("s-1", "audio.mfcc", {}, [{"clip_id": "a", "duration": 2.0, "fingerprint": "fa"}])
    p = SetPlan("s-1", "audio.mfcc", "audio", todo=2, skipped=3, batches=[batch, batch],
                links=[{"clip_id": "b", "duration": 2.0, "fingerprint": "fb", "shares": "x"}])
    assert plan_summary([p]) == [{"feature_set": "s-1", "extractor": "audio.mfcc", "modality": "audio", "todo": 2,
                                  "skipped": 3, "batches": 2, "linked": 1}]
    tally = ExtractTally.start("run-1", [p])
    failure = {"clip_id": "x", "fingerprint": "fb", "stage": "decode", "error_type": "CorruptMediaError",
               "message": "bad", "transient": False}
    tally.add(BatchResult("s-1", "audio.mfcc", done=1, absent=1, media_seconds=2.0, wall_seconds=0.5))
    tally.add(BatchResult("s-1", "audio.mfcc", failed=1, wall_seconds=0.25, failures=[failure]))
    failures = tally.link(store, [p])  # b shares x's failed extraction: b fails too, under its own id
    assert [f["clip_id"] for f in failures] == ["b"] and failures[0]["error_type"] == "CorruptMediaError"
    tally.record(store)
    (run,) = store.runs().to_pylist()
    assert (run["run_id"], run["clips_done"], run["clips_skipped"], run["clips_linked"], run["clips_failed"],
            run["media_seconds"], run["wall_seconds"]) == ("run-1", 1, 3, 0, 2, 2.0, 0.75)
    summary = tally.summary(1.5)
    assert summary.failed == 2 and summary.wall_seconds == 1.5
    assert summary.sets["s-1"] == {"extractor": "audio.mfcc", "done": 1, "skipped": 3, "linked": 0, "failed": 2,
                                   "absent": 1, "media_seconds": 2.0, "compute_seconds": 0.75}


def test_planning_caches_fingerprints_by_clip_table_content_and_identity(tmp_path: Path, monkeypatch) -> None:
    import store.featurestore as featurestore

    store = FeatureStore.open(tmp_path, create=True)
    rows = [{"clip_id": f"c{i}", "media_fingerprint": "m" * 32, "start": float(i), "end": i + 2.0, "duration": 2.0,
             "text": f"words {i}", "split": "train"} for i in range(6)]
    store.write_clips(pa.Table.from_pylist(rows, schema=schema.CLIPS))
    cfg = ExtractConfig(extractors={"audio.mfcc": {}})
    dry = plan(store, cfg, create=False)  # a dry run writes nothing, the cache included
    assert not store.fs.exists("cache")
    (first,) = plan(store, cfg)
    assert store.fs.ls("cache/fingerprints") == [f"{first.feature_set}.parquet"]
    calls = []
    real = featurestore.feature_fingerprints
    monkeypatch.setattr(featurestore, "feature_fingerprints", lambda *a: calls.append(1) or real(*a))
    (again,) = plan(store, cfg)  # unchanged table and identity: fingerprints come from the cache
    assert calls == [] and again.batches == first.batches == dry[0].batches
    rows[2]["end"] = 3.5  # a changed window: the table's content changes, the cache is recomputed
    store.write_clips(pa.Table.from_pylist(rows, schema=schema.CLIPS))
    (changed,) = plan(store, cfg)
    assert calls == [1]
    new = {r["clip_id"]: r["fingerprint"] for b in changed.batches for r in b.clips}
    old = {r["clip_id"]: r["fingerprint"] for b in first.batches for r in b.clips}
    assert [c for c in new if new[c] != old[c]] == ["c2"]
    (other,) = plan(store, ExtractConfig(extractors={"audio.mfcc": {"n_mfcc": 20}}))  # another identity
    assert calls == [1, 1] and other.feature_set != first.feature_set


def test_extract_here_extracts_each_input_once_and_links_its_twins(tmp_path: Path) -> None:
    from stages.extract import extract_here

    store = FeatureStore.open(tmp_path, create=True)
    texts = {"a": "what a wonderful film", "twin": "what a wonderful film", "b": "dull"}
    store.write_clips(pa.Table.from_pylist(
        [{"clip_id": c, "text": t, "duration": 2.0, "split": "train"} for c, t in texts.items()], schema=schema.CLIPS))
    ((name, counts),) = extract_here(store, ExtractConfig(extractors={"text.bert": {}}), "run-1").items()
    assert counts == {"done": 2, "failed": 0, "linked": 1}
    fset = store.feature_set(name)
    assert sorted(fset.committed()) == ["a", "b", "twin"]
    assert (fset.read("twin").values == fset.read("a").values).all()
    assert extract_here(store, ExtractConfig(extractors={"text.bert": {}}), "run-2") == {
        name: {"done": 0, "failed": 0, "linked": 0}}  # an up-to-date store: nothing to do
