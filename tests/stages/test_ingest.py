"""``run_ingest``: the clip table is rewritten only when the dataset changed, with the diff counted."""

from __future__ import annotations

from pathlib import Path

from corpora.synth import generate_dataset, write_clip
from stages.config import PipelineConfig
from stages.ingest import run_ingest
from store import FeatureStore


def test_reingest_of_an_unchanged_dataset_changes_nothing_and_a_changed_file_changes_its_fingerprint(
    tmp_path: Path,
) -> None:
    data = generate_dataset(tmp_path / "d", n_clips=4, seed=5)
    cfg = PipelineConfig.model_validate({"store": str(tmp_path / "s"), "dataset": {"path": str(data.root)}})
    first = run_ingest(cfg)
    assert first.changed and first.added == 4
    clips_file = tmp_path / "s" / "clips.parquet"
    mtime = clips_file.stat().st_mtime_ns
    again = run_ingest(cfg)
    assert not again.changed and clips_file.stat().st_mtime_ns == mtime

    before = {r["clip_id"]: r for r in FeatureStore.open(cfg.store).clips().to_pylist()}
    victim = data.clips[0]
    write_clip(victim.media, seconds=victim.duration, fps=victim.fps, v=-victim.v, a=-victim.a, seed=99)
    changed = run_ingest(cfg)
    assert changed.changed and changed.modified == 1
    after = {r["clip_id"]: r for r in FeatureStore.open(cfg.store).clips().to_pylist()}
    assert after[victim.clip_id]["media_fingerprint"] != before[victim.clip_id]["media_fingerprint"]
    assert all(after[c]["media_fingerprint"] == before[c]["media_fingerprint"] for c in after if c != victim.clip_id)
