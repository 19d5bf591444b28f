"""Alignment on real extracted features: word/window/none grids, pooling against numpy by hand,
missing modalities kept and masked, L from percentiles, no-op re-align, re-align without re-extracting."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from corpora.synth import generate_dataset, write_clip
from features.align import (
    AlignConfig,
    align_view,
    clip_grid,
    nearest_rows,
    overlap_matrix,
    overlap_ranges,
    plan_alignment,
    pool,
    window_grid,
)
from stages.config import ExtractConfig, PipelineConfig
from stages.extract import plan as plan_extract
from stages.extract import process_batch
from stages.ingest import run_ingest
from store import FeatureStore, open_view
from store.errors import ConfigError
from tests.helpers.paths import SHARED_DATA

WORDS_JSON = SHARED_DATA / "clips" / "manifesto_audiobook.words.json"
MANIFESTO = WORDS_JSON.with_name("manifesto_audiobook.mp4")
ALL = {"text.bert": {}, "audio.mfcc": {}, "vision.cnn": {}}


def extract(store: str, extractors: dict[str, dict]) -> None:
    """Extraction without a Prefect server: the flow's own planning and batch functions."""
    st = FeatureStore.open(store)
    for p in plan_extract(st, ExtractConfig(extractors=extractors, batch_clips=16)):
        for batch in p.batches:
            res = process_batch(store, batch, "test-align")
            assert res.failed == 0, res.failures


def append_rows(manifest: Path, rows: list[dict[str, object]]) -> None:
    with manifest.open(newline="") as f:
        header = next(csv.reader(f))
    with manifest.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        for r in rows:
            w.writerow({k: r.get(k, "") for k in header})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """6 generated clips + an audio-only clip + a text-only clip, all three modalities extracted once."""
    root = tmp_path_factory.mktemp("align-data")
    data = generate_dataset(root, n_clips=6, seed=5, max_seconds=5.0)
    write_clip(root / "media" / "zz_audio_only.m4a", seconds=3.0, video=False, seed=1)
    append_rows(data.manifest, [
        {"clip_id": "zz_audio_only", "media": "media/zz_audio_only.m4a", "text": "the film was really good",
         "label": "1.5", "split": "train"},
        {"clip_id": "zz_text_only", "media": "", "text": "a truly awful and boring film", "label": "-2.0",
         "split": "train"},
    ])
    url = str(tmp_path_factory.mktemp("align-store") / "store")
    summary = run_ingest(PipelineConfig.model_validate({"store": url, "dataset": {"path": str(root)}}))
    assert summary.rejects == 0
    extract(url, ALL)
    return FeatureStore.open(url)


def _clip(store: FeatureStore, clip_id: str) -> dict:
    return next(c for c in store.clips().to_pylist() if c["clip_id"] == clip_id)


def _set(store: FeatureStore, extractor: str):
    return store.sets_for(extractor)[0]


def _view_arrays(store: FeatureStore, name: str) -> tuple[dict[str, np.ndarray], list[str], dict]:
    v = open_view(store, name)
    g = v.group()
    arrays = {}
    for m in v.modalities:
        for k in ("values", "lengths", "present", "mask", "mean", "std"):
            arrays[f"{m}/{k}"] = np.asarray(g[f"{m}/{k}"][...])
    for k in ("input_ids", "attention_mask"):
        if v.has_array(f"text_tokens/{k}"):
            arrays[f"text_tokens/{k}"] = np.asarray(g[f"text_tokens/{k}"][...])
    return arrays, v.clips.column("clip_id").to_pylist(), v.attrs


def _hand_pool(values: np.ndarray, times: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy by hand: the mean of the rows overlapping each step (a < e and b > s)."""
    out = np.zeros((len(steps), values.shape[1]), np.float64)
    has = np.zeros(len(steps), bool)
    for j, (s, e) in enumerate(steps):
        sel = (times[:, 0] < e) & (times[:, 1] > s)
        if sel.any():
            out[j] = values[sel].astype(np.float64).mean(axis=0)
            has[j] = True
    return out, has


# -- pooling units --------------------------------------------------------------------------
def test_fast_overlap_ranges_agree_with_the_overlap_definition() -> None:
    rng = np.random.default_rng(0)
    starts = np.sort(rng.uniform(0, 10, 200))
    times = np.stack([starts, starts + 0.025], axis=1)
    steps = np.concatenate([window_grid(10.0, 0.7, 0.3), [[2.0, 2.0], [9.99, 10.5]]])
    lo, hi = overlap_ranges(times, steps)
    members = overlap_matrix(times, steps)
    for j in range(len(steps)):
        assert np.array_equal(np.flatnonzero(members[j]), np.arange(lo[j], hi[j])), j
    values = rng.normal(size=(200, 3)).astype(np.float32)
    for how in ("mean", "max", "last"):
        fast, has_f = pool(values, times, steps, how)
        shuffled = rng.permutation(200)  # not monotone: the general path
        slow, has_s = pool(values[shuffled], times[shuffled], steps, how if how != "last" else "mean")
        if how != "last":
            np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
        assert np.array_equal(has_f, has_s)


def test_empty_steps_take_the_nearest_row_or_zeros_and_are_masked() -> None:
    values = np.array([[1.0], [2.0], [3.0]], np.float32)
    times = np.array([[0.0, 1.0], [1.0, 2.0], [5.0, 6.0]])
    steps = np.array([[0.0, 2.0], [2.5, 3.0], [4.0, 4.5], [5.5, 5.6]])
    out, has = pool(values, times, steps, "mean", "nearest")
    assert has.tolist() == [True, False, False, True]
    assert out[:, 0].tolist() == [1.5, 2.0, 3.0, 3.0]
    out, _ = pool(values, times, steps, "max", "zeros")
    assert out[:, 0].tolist() == [2.0, 0.0, 0.0, 3.0]
    out, _ = pool(values, times, steps, "last", "zeros")
    assert out[:, 0].tolist() == [2.0, 0.0, 0.0, 3.0]
    assert nearest_rows(times, np.array([[2.2, 2.3]])).tolist() == [1]


def test_window_grid_covers_the_clip() -> None:
    g = window_grid(4.417, 1.0, 0.5)
    assert g[0].tolist() == [0.0, 1.0] and g[-1, 1] == pytest.approx(4.417) and len(g) == 8
    assert window_grid(0.3, 1.0, 0.5).tolist() == [[0.0, 0.3]]
    with pytest.raises(ValidationError):
        AlignConfig(grid="bogus")
    with pytest.raises(ValidationError):
        AlignConfig(unknown=1)


# -- on the store ---------------------------------------------------------------------------
def test_word_grid_pools_word_pieces_into_words_and_frames_into_word_spans(store: FeatureStore) -> None:
    align_view(store, AlignConfig(view="word_raw", grid="word", normalize=False, max_len=64))
    arrays, order, attrs = _view_arrays(store, "word_raw")
    assert attrs["grid"] == "word" and set(attrs["modalities"]) == {"text", "audio", "vision"}
    text_set, audio_set = _set(store, "text.bert"), _set(store, "audio.mfcc")
    checked = 0
    for i, cid in enumerate(order):
        clip = _clip(store, cid)
        if not clip["words"] or not clip["media_uri"]:
            continue
        n = len(clip["words"])
        assert arrays["text/lengths"][i] == arrays["audio/lengths"][i] == n
        t = text_set.read(cid)
        for j in range(n):  # text: mean of the word's pieces, [CLS]/[SEP] never pooled in
            expect = t.values[t.extras["word_index"] == j].astype(np.float64).mean(axis=0)
            np.testing.assert_allclose(arrays["text/values"][i, j], expect, rtol=1e-5, atol=1e-5)
        assert arrays["text/mask"][i, :n].all() and not arrays["text/mask"][i, n:].any()
        a = audio_set.read(cid)
        spans = np.array([[w["start"], w["end"]] for w in clip["words"]])
        expect, has = _hand_pool(a.values, a.times, spans)
        np.testing.assert_allclose(arrays["audio/values"][i, :n], expect, rtol=1e-4, atol=1e-4)
        assert np.array_equal(arrays["audio/mask"][i, :n], has)
        assert not arrays["audio/values"][i, n:].any()  # padding is zeros
        checked += 1
    assert checked >= 5
    # tokens for fine-tuning: the text set's input ids, zero-padded
    i = order.index(next(c for c in order if c.startswith("v")))
    t = text_set.read(order[i])
    ids = arrays["text_tokens/input_ids"][i]
    assert ids[: len(t.values)].tolist() == t.extras["input_ids"].tolist() and not ids[len(t.values):].any()
    assert arrays["text_tokens/attention_mask"][i].sum() == len(t.values)
    assert attrs["text_model_path"] and Path(attrs["text_model_path"]).is_dir()


def test_window_grid_matches_a_hand_computed_mean_over_overlapping_rows(store: FeatureStore) -> None:
    cfg = AlignConfig(view="win", grid="window", window=1.0, hop=0.5, normalize=False, max_len=100)
    align_view(store, cfg)
    arrays, order, _ = _view_arrays(store, "win")
    checked = 0
    for i, cid in enumerate(order):
        clip = _clip(store, cid)
        steps = window_grid(clip["duration"], 1.0, 0.5)
        assert arrays["audio/lengths"][i] == len(steps)
        for m, ext in (("audio", "audio.mfcc"), ("vision", "vision.cnn"), ("text", "text.bert")):
            if not arrays[f"{m}/present"][i]:
                continue
            f = _set(store, ext).read(cid)
            v, t = f.values, f.times
            if m == "text":  # word pieces only: [CLS]/[SEP] span the whole clip
                keep = f.extras["word_index"] >= 0
                v, t = v[keep], t[keep]
            expect, has = _hand_pool(v, t, steps)
            got = arrays[f"{m}/values"][i, : len(steps)]
            np.testing.assert_allclose(got[has], expect[has], rtol=1e-4, atol=1e-4, err_msg=f"{cid} {m}")
            assert np.array_equal(arrays[f"{m}/mask"][i, : len(steps)], has)
            checked += 1
    assert checked >= 15


def test_clips_missing_a_modality_are_kept_and_masked(store: FeatureStore) -> None:
    align_view(store, AlignConfig(view="masks", grid="word"))
    arrays, order, attrs = _view_arrays(store, "masks")
    assert len(order) == 8
    audio_only, text_only = order.index("zz_audio_only"), order.index("zz_text_only")
    assert arrays["audio/present"][audio_only] and arrays["text/present"][audio_only]
    assert not arrays["vision/present"][audio_only]
    assert not arrays["vision/mask"][audio_only].any() and not arrays["vision/values"][audio_only].any()
    assert arrays["text/present"][text_only]
    for m in ("audio", "vision"):
        assert not arrays[f"{m}/present"][text_only] and not arrays[f"{m}/mask"][text_only].any()
        assert not arrays[f"{m}/values"][text_only].any()
    # the grid exists without the modality: lengths count the clip's words for every modality
    n_words = len("a truly awful and boring film".split())
    assert arrays["audio/lengths"][text_only] == arrays["text/lengths"][text_only] == n_words
    # the audio-only clip had no word timings: words spread evenly over its 3 s
    assert arrays["audio/mask"][audio_only, : arrays["audio/lengths"][audio_only]].all()
    assert attrs["modalities"]["vision"]["clips"] == {"ok": 6, "absent": 2}
    assert attrs["modalities"]["audio"]["clips"] == {"ok": 7, "absent": 1}


def test_none_grid_keeps_raw_sequences_at_their_own_rates(store: FeatureStore) -> None:
    align_view(store, AlignConfig(view="raw", grid="none", normalize=False, max_len={"audio": 300}))
    arrays, order, attrs = _view_arrays(store, "raw")
    text_set = _set(store, "text.bert")
    i = order.index("zz_text_only")
    t = text_set.read("zz_text_only")
    n = len(t.values)  # [CLS] + pieces + [SEP]
    assert t.extras["word_index"][0] == -1 and t.extras["word_index"][-1] == -1
    assert arrays["text/lengths"][i] == n
    np.testing.assert_array_equal(arrays["text/values"][i, :n], t.values)
    assert arrays["audio/values"].shape[1] == 300 and attrs["modalities"]["audio"]["L"] == 300
    lens = [len(_set(store, "text.bert").read(c).values) for c in order if _clip(store, c)["split"] == "train"]
    assert attrs["modalities"]["text"]["L"] == math.ceil(np.percentile(lens, 95))
    assert arrays["audio/lengths"][i] == 0 and not arrays["audio/present"][i]


def test_L_comes_from_a_percentile_of_train_lengths_and_truncates(store: FeatureStore) -> None:  # noqa: N802 - L, the view's length
    clips = store.clips().to_pylist()
    train = [len(clip_grid(c, AlignConfig())) for c in clips if c["split"] == "train"]
    plan = plan_alignment(store, AlignConfig(view="p50", percentile=50))
    assert plan.lengths == dict.fromkeys(("text", "audio", "vision"), math.ceil(np.percentile(train, 50)))
    summary = align_view(store, AlignConfig(view="short", max_len=3))
    arrays, order, _ = _view_arrays(store, "short")
    assert summary.L == {"text": 3, "audio": 3, "vision": 3}
    assert arrays["text/values"].shape[1:] == (3, 384) and arrays["audio/lengths"].max() == 3
    with pytest.raises(ConfigError):
        plan_alignment(store, AlignConfig(view="bad", max_len={"text": 4, "audio": 5}))


def test_normalised_values_use_the_train_mean_and_std(store: FeatureStore) -> None:
    align_view(store, AlignConfig(view="norm", grid="window", window=1.0))
    align_view(store, AlignConfig(view="unnorm", grid="window", window=1.0, normalize=False))
    norm, order, attrs = _view_arrays(store, "norm")
    raw, _, _ = _view_arrays(store, "unnorm")
    assert attrs["normalized"] is True
    train = np.array([_clip(store, c)["split"] == "train" for c in order])
    sel = raw["audio/mask"] & train[:, None] & raw["audio/present"][:, None]
    x = raw["audio/values"][sel].astype(np.float64)
    np.testing.assert_allclose(norm["audio/mean"], x.mean(axis=0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(norm["audio/std"], x.std(axis=0), rtol=1e-4, atol=1e-3)
    z = norm["audio/values"][sel]
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-3)
    assert not norm["audio/values"][~(np.arange(norm["audio/values"].shape[1]) < norm["audio/lengths"][:, None])].any()


def test_fixed_statistics_normalise_with_the_given_mean_and_std_not_this_stores(store: FeatureStore) -> None:
    """How predict scores new clips: with the training view's statistics, whatever the new data's."""
    align_view(store, AlignConfig(view="unnorm", grid="window", window=1.0, normalize=False))  # no-op when built
    raw, _, _ = _view_arrays(store, "unnorm")
    dims = {m: raw[f"{m}/mean"].shape[0] for m in ("text", "audio", "vision")}
    stats = {m: (np.full(d, 2.0, np.float32), np.full(d, 4.0, np.float32)) for m, d in dims.items()}
    summary = align_view(store, AlignConfig(view="fixed", grid="window", window=1.0), stats=stats)
    fixed, _, attrs = _view_arrays(store, "fixed")
    filled = raw["audio/mask"] & raw["audio/present"][:, None]
    np.testing.assert_allclose(fixed["audio/values"][filled], (raw["audio/values"][filled] - 2.0) / 4.0, rtol=1e-5)
    np.testing.assert_array_equal(fixed["vision/std"], 4.0)
    assert attrs["modalities"]["audio"]["stats_split"] == "fixed"
    other = {m: (mean + 1.0, std) for m, (mean, std) in stats.items()}
    assert align_view(store, AlignConfig(view="fixed", grid="window", window=1.0), stats=other).fingerprint != \
        summary.fingerprint
    with pytest.raises(ConfigError, match="lack modalities"):
        plan_alignment(store, AlignConfig(view="fixed", grid="window", window=1.0), stats={"text": stats["text"]})


def test_unchanged_realign_is_a_no_op_and_a_new_L_realigns_without_extracting(store: FeatureStore) -> None:  # noqa: N802
    cfg = AlignConfig(view="noop", grid="word")
    first = align_view(store, cfg)
    assert first.changed
    view_json = store.fs.read_bytes("aligned/noop/view.json")
    again = align_view(store, cfg)
    assert not again.changed and "up to date" in again.message
    assert again.fingerprint == first.fingerprint
    assert store.fs.read_bytes("aligned/noop/view.json") == view_json  # not rewritten
    shards = {n: store.feature_set(n).shard_ids() for n in store.feature_set_names()}
    longer = align_view(store, cfg.model_copy(update={"max_len": 20}))
    assert longer.changed and longer.fingerprint != first.fingerprint and longer.L["audio"] == 20
    assert open_view(store, "noop").group()["audio/values"].shape[1] == 20
    assert {n: store.feature_set(n).shard_ids() for n in store.feature_set_names()} == shards
    assert all(p.todo == 0 for p in plan_extract(store, ExtractConfig(extractors=ALL), create=False))
    assert align_view(store, cfg.model_copy(update={"max_len": 20})).changed is False
    assert align_view(store, cfg.model_copy(update={"max_len": 20}), force=True).changed is True


def test_a_new_label_or_class_realigns_and_a_new_transcript_masks_stale_text(
    store: FeatureStore, tmp_path: Path
) -> None:
    copy = tmp_path / "store"
    shutil.copytree(store.fs.root, copy)
    st = FeatureStore.open(copy)
    cfg = AlignConfig(view="labels")
    base = align_view(st, cfg)
    table = st.clips().to_pylist()
    table[0]["label"] = 2.5
    import pyarrow as pa

    from store import schema

    st.write_clips(pa.Table.from_pylist(table, schema=schema.CLIPS))
    relabelled = align_view(st, cfg)
    assert relabelled.changed and relabelled.present == base.present
    assert open_view(st, "labels").clips.column("label")[0].as_py() == 2.5
    table[0]["label_emotion"] = "joy"  # a class label reaches the view's clip table (categorical targets)
    st.write_clips(pa.Table.from_pylist(table, schema=schema.CLIPS))
    assert align_view(st, cfg).changed
    classes = open_view(st, "labels").clips
    assert classes.column("label_emotion").to_pylist()[0] == "joy"
    assert classes.column("label_sentiment").to_pylist() == [None] * classes.num_rows
    table[0]["text"] = "a completely different transcript"
    table[0]["words"] = None
    st.write_clips(pa.Table.from_pylist(table, schema=schema.CLIPS))
    stale = align_view(st, cfg)
    assert stale.missing["text"] == {"stale": 1} and stale.present["audio"] == base.present["audio"]
    arrays, order, _ = _view_arrays(st, "labels")
    assert not arrays["text/present"][0] and not arrays["text/mask"][0].any()


def test_explicit_feature_sets_and_unknown_names(store: FeatureStore) -> None:
    audio = _set(store, "audio.mfcc").name
    s = align_view(store, AlignConfig(view="audio_only", feature_sets={"audio": audio, "text": None, "vision": None}))
    assert s.feature_sets == {"audio": audio}
    with pytest.raises(ConfigError):
        plan_alignment(store, AlignConfig(feature_sets={"vision": "vision.nope"}))
    with pytest.raises(ConfigError):
        plan_alignment(store, AlignConfig(feature_sets={"vision": audio}))


# -- real word timings ----------------------------------------------------------------------
@pytest.mark.shared_data
def test_word_grid_on_real_speech_with_real_word_timings(tmp_path: Path) -> None:
    if not (WORDS_JSON.is_file() and MANIFESTO.is_file()):
        pytest.skip("../shared/data/clips/manifesto_audiobook.* is absent")
    start, end = 20.0, 35.0
    words = [w for cue in json.loads(WORDS_JSON.read_text()) for w in cue["words"]
             if w["start"] >= start and w["end"] <= end]
    rel = [{"word": w["word"], "start": round(w["start"] - start, 3), "end": round(w["end"] - start, 3)}
           for w in words]
    root = tmp_path / "data"
    (root / "media").mkdir(parents=True)
    shutil.copy(MANIFESTO, root / "media" / "manifesto.mp4")  # ingest confines media to the dataset root
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip_id", "media", "start", "end", "text", "words", "label", "split"])
        w.writerow(["manifesto_20", "media/manifesto.mp4", start, end, " ".join(x["word"] for x in rel),
                    json.dumps(rel), 0.5, "train"])
    url = str(tmp_path / "store")
    run_ingest(PipelineConfig.model_validate({"store": url, "dataset": {"path": str(root)}}))
    extract(url, {"text.bert": {}, "audio.mfcc": {}})
    st = FeatureStore.open(url)
    summary = align_view(st, AlignConfig(grid="word", normalize=False))
    assert summary.L["text"] == len(rel) > 25
    arrays, _, _ = _view_arrays(st, "default")
    assert arrays["text/mask"][0].all() and arrays["audio/mask"][0].all()
    a = _set(st, "audio.mfcc").read("manifesto_20")
    assert a.times[-1, 1] == pytest.approx(end - start, abs=0.03)
    spans = np.array([[x["start"], x["end"]] for x in rel])
    expect, _ = _hand_pool(a.values, a.times, spans)
    np.testing.assert_allclose(arrays["audio/values"][0], expect, rtol=1e-4, atol=1e-4)
    # a word's audio frames lie inside it: a long word pools more frames than a short one
    n_frames = overlap_matrix(a.times, spans).sum(axis=1)
    durations = spans[:, 1] - spans[:, 0]
    assert np.corrcoef(n_frames, durations)[0, 1] > 0.99


@pytest.mark.parametrize("grid", ["word", "window", "none"])
def test_a_view_built_in_blocks_equals_the_one_built_at_once_value_for_value(
    store: FeatureStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grid: str
) -> None:
    """Issue 18: the streamed build (blocks of clips, raw values written then normalised block by
    block) gives the very arrays of the single-block build, statistics included."""
    import features.align.view as view_module

    copy = tmp_path / "store"
    shutil.copytree(store.fs.root, copy)
    st = FeatureStore.open(copy)
    align_view(st, AlignConfig(view="whole", grid=grid))
    monkeypatch.setattr(view_module, "VIEW_SHARD", 2)  # blocks of 2 clips ...
    align_view(st, AlignConfig(view="blocks", grid=grid), block_mb=1e-6)  # ... as the budget allows no more
    whole, blocks = open_view(st, "whole"), open_view(st, "blocks")
    assert whole.clips.num_rows > 2  # so the second build really took several blocks
    names = [f"{m}/{k}" for m in whole.modalities for k in ("values", "lengths", "present", "mask", "mean", "std")]
    names += ["text_tokens/input_ids", "text_tokens/attention_mask"]
    for name in names:
        np.testing.assert_array_equal(np.asarray(whole.array(name)[...]), np.asarray(blocks.array(name)[...]),
                                      err_msg=name)
    assert whole.clips.equals(blocks.clips)
    assert whole.attrs["modalities"] == blocks.attrs["modalities"]
