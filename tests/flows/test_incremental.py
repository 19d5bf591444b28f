"""Incremental pipeline runs: only new or changed clips are extracted, the rest is left alone.

One dataset evolves through the steps of a nightly schedule (each run is ``pipeline_flow`` with
ingest + extract): first run, new clips added to the source, one media file replaced, one
transcript edited, one clip removed, nothing changed. After every run the run summary's counts are
checked, and so is the store: which index rows are new and which are untouched (same shard).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from corpora.synth import generate_dataset, write_clip
from flows.pipeline import pipeline_flow
from stages.config import PipelineConfig
from store import FeatureStore
from store.verify import account, verify

STAGES = ["ingest", "extract"]
EXTRACTORS = {"audio.mfcc": {}, "text.bert": {}}


def _rows(store: str) -> dict[str, dict[str, dict[str, Any]]]:
    """extractor -> clip -> its latest index row."""
    st = FeatureStore.open(store)
    out = {}
    for name in st.feature_set_names():
        fset = st.feature_set(name)
        out[fset.attrs["extractor"]] = {r["clip_id"]: r for r in fset.index().to_pylist()}
    return out


def _n_index_rows(store: str) -> dict[str, int]:
    st = FeatureStore.open(store)
    return {
        st.feature_set(n).attrs["extractor"]: st.feature_set(n).index_parts().num_rows for n in st.feature_set_names()
    }


def _n_shards(store: str) -> dict[str, int]:
    st = FeatureStore.open(store)
    return {st.feature_set(n).attrs["extractor"]: len(st.feature_set(n).shard_ids()) for n in st.feature_set_names()}


def _duration(store: str, clip_id: str) -> float:
    clips = FeatureStore.open(store).clips().to_pylist()
    return next(c["duration"] for c in clips if c["clip_id"] == clip_id)


def _manifest(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (root / "manifest.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _write_manifest(root: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _counts(summary: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {name: (e["done"], e["skipped"], e["failed"]) for name, e in summary["extract"]["extractors"].items()}


def _ingest(summary: dict[str, Any]) -> tuple[int, int, int, int]:
    i = summary["ingest"]
    return i["clips"], i["added"], i["removed"], i["modified"]


@pytest.fixture
def dataset(tmp_path: Path):
    data = generate_dataset(tmp_path / "data", n_clips=4, seed=5, min_seconds=1.5, max_seconds=2.5, layout="manifest")
    (data.root / "manifest.jsonl").unlink(missing_ok=True)  # manifest.csv is the one we edit
    cfg = PipelineConfig.model_validate(
        {"store": str(tmp_path / "store"), "dataset": {"path": str(data.root)},
         "extract": {"extractors": EXTRACTORS, "batch_clips": 2}}
    )
    return data, cfg


def test_each_run_extracts_only_what_is_new_or_changed(dataset, prefect_harness) -> None:
    data, cfg = dataset
    root = data.root
    old_ids = sorted(c.clip_id for c in data.clips)

    # 1. first run: everything is new
    s = pipeline_flow(cfg, STAGES)
    assert s["stages"] == STAGES
    assert _ingest(s) == (4, 4, 0, 0)
    assert _counts(s) == {"audio.mfcc": (4, 0, 0), "text.bert": (4, 0, 0)}
    first = _rows(cfg.store)

    # 2. two new clips appear in the source: only they are extracted
    header, rows = _manifest(root)
    for k, (v, a) in enumerate(((0.8, 0.8), (-0.8, -0.6))):
        write_clip(root / "media" / f"new_{k}.mp4", seconds=1.6 + 0.3 * k, v=v, a=a, seed=100 + k)
        rows.append({**{h: "" for h in header}, "clip_id": f"new_{k}", "media": f"media/new_{k}.mp4",
                     "text": "the ending was wonderful" if k == 0 else "the plot felt dull", "label": str(1.5 - 3 * k),
                     "split": "train"})
    _write_manifest(root, header, rows)
    s = pipeline_flow(cfg, STAGES)
    assert _ingest(s) == (6, 2, 0, 0)
    assert _counts(s) == {"audio.mfcc": (2, 4, 0), "text.bert": (2, 4, 0)}
    second = _rows(cfg.store)
    for ext in EXTRACTORS:
        assert sorted(second[ext]) == sorted(old_ids + ["new_0", "new_1"])
        for clip in old_ids:  # the old clips' rows are the very same commits
            assert second[ext][clip] == first[ext][clip]
    assert _n_index_rows(cfg.store) == {"audio.mfcc": 6, "text.bert": 6}

    # 3. one media file is replaced: its audio is re-extracted, its text (unchanged) is not
    # (same length: the clip duration is an input of text features, word times are capped by it)
    changed = old_ids[1]
    clip = next(c for c in data.clips if c.clip_id == changed)
    old_duration = _duration(cfg.store, changed)
    before = FeatureStore.open(cfg.store).sets_for("audio.mfcc")[0].read(changed).values
    write_clip(clip.media, seconds=clip.duration, fps=clip.fps, v=-clip.v, a=-1.0 if clip.a >= 0 else 1.0, seed=999)
    s = pipeline_flow(cfg, STAGES)
    assert _duration(cfg.store, changed) == pytest.approx(old_duration)
    assert _ingest(s) == (6, 0, 0, 1)
    assert _counts(s) == {"audio.mfcc": (1, 5, 0), "text.bert": (0, 6, 0)}
    third = _rows(cfg.store)
    assert third["audio.mfcc"][changed]["fingerprint"] != second["audio.mfcc"][changed]["fingerprint"]
    assert third["text.bert"][changed] == second["text.bert"][changed]
    for clip in set(third["audio.mfcc"]) - {changed}:
        assert third["audio.mfcc"][clip] == second["audio.mfcc"][clip]
    after = FeatureStore.open(cfg.store).sets_for("audio.mfcc")[0].read(changed).values
    assert after.shape != before.shape or not np.allclose(after, before)
    # the superseded row is still in an index part, readers see only the latest one
    assert _n_index_rows(cfg.store) == {"audio.mfcc": 7, "text.bert": 6}

    # 4. one transcript is edited: text only
    edited = old_ids[2]
    header, rows = _manifest(root)
    for r in rows:
        if r["clip_id"] == edited:
            r["text"], r["words"] = "honestly the script was superb", ""
    _write_manifest(root, header, rows)
    s = pipeline_flow(cfg, STAGES)
    assert _ingest(s) == (6, 0, 0, 1)
    assert _counts(s) == {"audio.mfcc": (0, 6, 0), "text.bert": (1, 5, 0)}

    # 5. one clip leaves the source: nothing to extract, the clip table no longer lists it
    header, rows = _manifest(root)
    _write_manifest(root, header, [r for r in rows if r["clip_id"] != "new_1"])
    s = pipeline_flow(cfg, STAGES)
    assert _ingest(s) == (5, 0, 1, 0)
    assert _counts(s) == {"audio.mfcc": (0, 5, 0), "text.bert": (0, 5, 0)}
    assert "new_1" not in FeatureStore.open(cfg.store).clips().column("clip_id").to_pylist()

    # 6. nothing changed: a no-op that writes no index part
    n_rows = _n_index_rows(cfg.store)
    s = pipeline_flow(cfg, STAGES)
    assert s["ingest"]["changed"] is False and _ingest(s) == (5, 0, 0, 0)
    assert _counts(s) == {"audio.mfcc": (0, 5, 0), "text.bert": (0, 5, 0)}
    assert _n_index_rows(cfg.store) == n_rows
    assert verify(FeatureStore.open(cfg.store)) == []


def test_a_clip_with_a_committed_clips_inputs_shares_its_features_and_is_served_by_its_own_id(
    dataset, prefect_harness
) -> None:
    """Content-addressed sharing: identical inputs are extracted once, yet every clip is committed."""
    import shutil

    from stages.align import run_align
    from store.views import open_view

    data, cfg = dataset
    root = data.root
    assert _counts(pipeline_flow(cfg, STAGES)) == {"audio.mfcc": (4, 0, 0), "text.bert": (4, 0, 0)}
    shards = _n_shards(cfg.store)

    # a new clip whose media (a byte copy), window and transcript equal a committed clip's; its label differs
    header, rows = _manifest(root)
    orig = rows[0]
    shutil.copyfile(root / orig["media"], root / "media" / "new_same_media.mp4")
    rows.append({**orig, "clip_id": "new_same_media", "media": "media/new_same_media.mp4", "label": "2.5"})
    _write_manifest(root, header, rows)
    s = pipeline_flow(cfg, STAGES)
    assert _ingest(s) == (5, 1, 0, 0)
    assert _counts(s) == {"audio.mfcc": (0, 4, 0), "text.bert": (0, 4, 0)}
    assert {name: e["linked"] for name, e in s["extract"]["extractors"].items()} == {"audio.mfcc": 1, "text.bert": 1}
    assert _n_shards(cfg.store) == shards  # nothing was extracted for it
    st = FeatureStore.open(cfg.store)
    for ext in EXTRACTORS:
        fset = st.sets_for(ext)[0]
        new, old = fset.read("new_same_media"), fset.read(orig["clip_id"])
        assert new.clip_id == "new_same_media" and new.fingerprint == old.fingerprint and new.meta == old.meta
        np.testing.assert_array_equal(new.values, old.values)
        np.testing.assert_array_equal(new.times, old.times)
        assert new.extras.keys() == old.extras.keys()
        for k in new.extras:
            np.testing.assert_array_equal(new.extras[k], old.extras[k])
    runs = [r for r in st.runs().to_pylist() if r["run_id"] == s["extract"]["run_id"]]
    assert {r["extractor"]: r["clips_linked"] for r in runs} == {"audio.mfcc": 1, "text.bert": 1}

    aligned = run_align(cfg)
    assert aligned.clips == 5 and aligned.present == {"text": 5, "audio": 5}
    view = open_view(st, aligned.view)
    row = dict(zip(view.clips.column("clip_id").to_pylist(), view.clips.column("row").to_pylist()))
    for m in ("text", "audio"):
        values = view.array(f"{m}/values")
        np.testing.assert_array_equal(values[row["new_same_media"]], values[row[orig["clip_id"]]])
    assert verify(st) == []

    # two new clips with identical inputs in one run: extracted once, the other linked after the batches
    write_clip(root / "media" / "twin_0.mp4", seconds=1.8, v=0.5, a=0.5, seed=321)
    shutil.copyfile(root / "media" / "twin_0.mp4", root / "media" / "twin_1.mp4")
    for k in range(2):
        rows.append({**{h: "" for h in header}, "clip_id": f"twin_{k}", "media": f"media/twin_{k}.mp4",
                     "text": "the same words twice", "label": "0.5", "split": "valid"})
    _write_manifest(root, header, rows)
    s = pipeline_flow(cfg, STAGES)
    assert _counts(s) == {"audio.mfcc": (1, 5, 0), "text.bert": (1, 5, 0)}
    assert {name: e["linked"] for name, e in s["extract"]["extractors"].items()} == {"audio.mfcc": 1, "text.bert": 1}
    rows_now = _rows(cfg.store)
    for ext in EXTRACTORS:
        twin_0, twin_1 = rows_now[ext]["twin_0"], rows_now[ext]["twin_1"]
        where = ("shard", "offset", "checksum")
        assert [twin_0[k] for k in where] == [twin_1[k] for k in where]
    st = FeatureStore.open(cfg.store)
    assert verify(st) == []
    for name, acc in account(st).items():  # every clip of the table is committed for its current inputs
        assert (len(acc.committed), acc.failed, acc.pending) == (7, (), ()), name

    # nothing changed: a no-op
    n_rows = _n_index_rows(cfg.store)
    s = pipeline_flow(cfg, STAGES)
    assert _counts(s) == {"audio.mfcc": (0, 7, 0), "text.bert": (0, 7, 0)}
    assert all(e["linked"] == 0 for e in s["extract"]["extractors"].values())
    assert _n_index_rows(cfg.store) == n_rows


def test_stats_only_and_unknown_stages(dataset, prefect_harness) -> None:
    from stages.pipeline import resolve_stages
    from store.errors import ConfigError

    _, cfg = dataset
    with pytest.raises(ConfigError, match="unknown pipeline stage"):
        resolve_stages(["ingest", "extrakt"])
    assert resolve_stages(["stats", "ingest"]) == ["ingest", "stats"]  # always pipeline order
    mfcc_only = cfg.extract.model_copy(update={"extractors": {"audio.mfcc": {}}})
    s = pipeline_flow(cfg.model_copy(update={"extract": mfcc_only}), ["extract", "ingest"])
    assert s["stages"] == ["ingest", "extract"] and _counts(s) == {"audio.mfcc": (4, 0, 0)}
    s = pipeline_flow(cfg, ["stats"])
    assert s["stages"] == ["stats"] and "ingest" not in s and "extract" not in s
    assert s["stats"]["clips"] == 4
    assert "dataset" in FeatureStore.open(cfg.store).report_names()
