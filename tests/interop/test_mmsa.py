"""MMSA export and import on a real store: the export loads through thuiar/MMSA's own
``MMDataLoader``, and store -> MMSA pickle -> ``ingest --layout mmsa-pkl`` gives back the same arrays,
labels and ids; the imported store trains, reports and exports again."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from corpora.synth import generate_dataset
from features.align import AlignConfig, align_view
from interop import build_mmsa, export_mmsa
from stages.config import ExtractConfig, PipelineConfig
from stages.extract import plan as plan_extract
from stages.extract import process_batch
from stages.ingest import IngestSummary, run_ingest
from store import FeatureStore, open_view
from store.errors import ConfigError
from store.schema import MODALITIES
from store.verify import verify
from store.views import AlignedView

VIEWS = {"aligned": AlignConfig(view="aligned"), "unaligned": AlignConfig(view="unaligned", grid="none")}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """6 generated clips in the MMSA layout (with label_T/A/V), all three modalities extracted with the
    flow's plain functions, aligned on the word grid and on grid none."""
    root = tmp_path_factory.mktemp("mmsa-data")
    generate_dataset(root, n_clips=6, seed=5, layout="mmsa", max_seconds=5.0)
    url = str(tmp_path_factory.mktemp("mmsa-store") / "store")
    assert run_ingest(PipelineConfig.model_validate({"store": url, "dataset": {"path": str(root)}})).rejects == 0
    st = FeatureStore.open(url)
    extractors = {"text.bert": {}, "audio.mfcc": {}, "vision.cnn": {}}
    for p in plan_extract(st, ExtractConfig(extractors=extractors, batch_clips=16)):
        for batch in p.batches:
            assert process_batch(url, batch, "test-interop").failed == 0
    for cfg in VIEWS.values():
        align_view(url, cfg)
    return url


@pytest.fixture(scope="module")
def exported(store: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("mmsa-export")
    return {name: Path(export_mmsa(store, name, out / f"{name}_features.pkl").path) for name in VIEWS}


def _array(view: AlignedView, name: str) -> np.ndarray:
    return np.asarray(view.array(name)[...])


def _mmsa_args(path: Path, *, dataset: str, aligned: bool, batch_size: int) -> Any:
    """A Self-MM-style config as MMSA's get_config_regression builds it (the keys MMDataset reads)."""
    from easydict import EasyDict

    return EasyDict({
        "model_name": "self_mm", "dataset_name": dataset, "featurePath": str(path), "custom_feature": None,
        "feature_T": None, "feature_A": None, "feature_V": None, "seq_lens": [50, 50, 50],
        "feature_dims": [768, 5, 20], "train_mode": "regression", "use_bert": True, "use_finetune": True,
        "need_data_aligned": aligned, "need_normalized": False, "batch_size": batch_size,
    })


@pytest.mark.parametrize("name", list(VIEWS))
def test_the_export_loads_through_mmsa_own_data_loader(store: str, exported: dict[str, Path], name: str) -> None:
    """``MMSA.data_loader.MMDataLoader`` (the installed mmsa package, unmodified) reads the export:
    samples per split, shapes, labels (SIMS-style T/A/V too), ids and lengths match the view."""
    mmsa_loader = pytest.importorskip("MMSA.data_loader")
    aligned = name == "aligned"
    view = open_view(store, name)
    table = {c["clip_id"]: c for c in FeatureStore.open(store).clips().to_pylist()}
    rows = {c["clip_id"]: c["row"] for c in view.clips.to_pylist()}
    values = {m: _array(view, f"{m}/values") for m in MODALITIES}
    lengths = {m: _array(view, f"{m}/lengths") for m in MODALITIES}
    ids = _array(view, "text_tokens/input_ids")
    # "sims" makes MMDataset read regression_labels_T/A/V as well
    args = _mmsa_args(exported[name], dataset="sims" if aligned else "mosi", aligned=aligned, batch_size=64)
    loaders = mmsa_loader.MMDataLoader(args, num_workers=0)
    splits = view.clips.column("split").to_pylist()
    T = ids.shape[1] if aligned else values["text"].shape[1]  # noqa: N806
    assert list(args["seq_lens"]) == [T, values["audio"].shape[1], values["vision"].shape[1]]
    assert list(args["feature_dims"]) == [768, values["audio"].shape[2], values["vision"].shape[2]]
    for split in ("train", "valid", "test"):
        dataset = loaders[split].dataset
        assert len(dataset) == splits.count(split) == 2
        batch = next(iter(loaders[split]))
        assert batch["text"].shape == (2, 3, T)
        assert batch["audio"].shape == (2, *values["audio"].shape[1:])
        assert batch["vision"].shape == (2, *values["vision"].shape[1:])
        for k, sample_id in enumerate(batch["id"]):
            video, _, local = sample_id.partition("$_$")
            cid = f"{video}_{local}"
            clip, r = table[cid], rows[cid]
            assert clip["video_id"] == video and batch["raw_text"][k] == clip["text"] and clip["split"] == split
            assert batch["labels"]["M"][k].item() == pytest.approx(clip["label"], abs=1e-6)
            if aligned:
                for m in "TAV":
                    assert batch["labels"][m][k].item() == pytest.approx(clip[f"label_{m}"], abs=1e-6)
            else:
                assert set(batch["labels"]) == {"M"}
                assert int(batch["audio_lengths"][k]) == lengths["audio"][r]
                assert int(batch["vision_lengths"][k]) == lengths["vision"][r]
            np.testing.assert_array_equal(batch["audio"][k].numpy(), values["audio"][r])
            np.testing.assert_array_equal(batch["vision"][k].numpy(), values["vision"][r])
            np.testing.assert_array_equal(batch["text"][k, 0].numpy(), ids[r, :T])


def _import(path: Path, url: str) -> IngestSummary:
    cfg = {"store": url, "dataset": {"path": str(path), "layout": "mmsa-pkl"}}
    return run_ingest(PipelineConfig.model_validate(cfg))


@pytest.mark.parametrize("name", list(VIEWS))
def test_round_trip_store_to_mmsa_pickle_to_store_keeps_arrays_labels_and_ids(
    store: str, exported: dict[str, Path], name: str, tmp_path: Path
) -> None:
    new = str(tmp_path / "imported")
    summary = _import(exported[name], new)
    assert (summary.clips, summary.rejects, summary.layout) == (6, 0, "mmsa-pkl")
    before, after = FeatureStore.open(store).clips().to_pylist(), FeatureStore.open(new).clips().to_pylist()
    assert sorted(c["clip_id"] for c in after) == sorted(c["clip_id"] for c in before)
    old = {c["clip_id"]: c for c in before}
    for clip in after:  # labels went through float32 (as MMSA stores them) and back to their decimals
        want = old[clip["clip_id"]]
        keys = ("video_id", "text", "split", "label", "label_T", "label_A", "label_V")
        assert [clip[k] for k in keys] == [want[k] for k in keys]
    v0, v1 = open_view(store, name), open_view(new, "default")
    assert v1.attrs["grid"] == "none" and v1.attrs["normalized"] is False and v1.attrs["text_model_path"] is None
    order = [v1.clips.column("clip_id").to_pylist().index(c) for c in v0.clips.column("clip_id").to_pylist()]
    np.testing.assert_array_equal(v1.clips.column("label").to_numpy()[order], v0.clips.column("label").to_numpy())
    for m in MODALITIES:
        np.testing.assert_array_equal(_array(v1, f"{m}/values")[order], _array(v0, f"{m}/values"))
        np.testing.assert_array_equal(_array(v1, f"{m}/lengths")[order], _array(v0, f"{m}/lengths"))
        np.testing.assert_array_equal(_array(v1, f"{m}/present")[order], _array(v0, f"{m}/present"))
    if name == "unaligned":  # token i is text row i: the token ids of the L text rows come back too
        L = _array(v0, "text/values").shape[1]  # noqa: N806
        for arr in ("input_ids", "attention_mask"):
            back = _array(v1, f"text_tokens/{arr}")[order]
            np.testing.assert_array_equal(back, _array(v0, f"text_tokens/{arr}")[:, : back.shape[1]])
            assert back.shape[1] == L
    # and out again: the imported store's export equals the first one (a word-grid view's tokens are no
    # text rows, so they do not come back: its re-export has no text_bert)
    first = pickle.loads(exported[name].read_bytes())
    again, _ = build_mmsa(new, "default")
    for split, part in first.items():
        pos = {i: k for k, i in enumerate(again[split]["id"])}
        idx = [pos[i] for i in part["id"]]
        for key, want in part.items():
            if key == "text_bert" and name == "aligned":
                assert key not in again[split]
                continue
            np.testing.assert_array_equal(np.asarray(again[split][key])[idx], want, err_msg=f"{split}/{key}")


def test_reimporting_the_same_file_commits_nothing(exported: dict[str, Path], tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    first = _import(exported["unaligned"], url)
    assert any("6 clips committed" in n for n in first.notes)
    again = _import(exported["unaligned"], url)
    assert not again.changed and all("0 clips committed" in n for n in again.notes[:3])
    assert "up to date" in again.notes[-1]
    st = FeatureStore.open(url)
    sets = {st.feature_set(n).attrs["identity"]["imported_from"]["sha256"] for n in st.feature_set_names()}
    assert len(st.feature_set_names()) == 3 and len(sets) == 1  # one file, one identity per modality
    assert verify(st) == []  # committed through the store's protocol: checksums, dims, finite values


def test_the_imported_store_reports_and_trains(exported: dict[str, Path], tmp_path: Path) -> None:
    from reports.run import run_stats
    from training.config import TrainConfig
    from training.train import train_on_view

    url = str(tmp_path / "s")
    _import(exported["unaligned"], url)
    stats, _ = run_stats(url, "default")
    assert stats.clips == 6 and stats.splits == {"train": 2, "valid": 2, "test": 2}
    cfg = TrainConfig(text_mode="frozen", max_epochs=1, batch_size=2, k=8, heads=2, num_workers=0)
    run, _ = train_on_view(url, "default", cfg, tmp_path / "run")
    assert (Path(run.path) / "metrics.json").exists()
    with pytest.raises(ConfigError, match="text_model_path"):  # MMSA token ids come with no local model
        train_on_view(url, "default", TrainConfig(max_epochs=1), tmp_path / "run2")


def test_export_cli_writes_the_pickle_and_a_missing_view_is_one_error_line(store: str, tmp_path: Path) -> None:
    from flows.cli import app

    runner = CliRunner()
    out = tmp_path / "f.pkl"
    result = runner.invoke(app, ["export", "mmsa", "--store", store, "--view", "unaligned", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "unaligned" in result.output and str(out) in result.output
    assert set(pickle.loads(out.read_bytes())) == {"train", "valid", "test"}
    result = runner.invoke(app, ["export", "mmsa", "--store", store, "--view", "nope", "--out", str(out)])
    assert result.exit_code == 2 and result.output.startswith("error:") and "'nope'" in result.output
    dry = runner.invoke(app, ["ingest", str(out), "--store", str(tmp_path / "s"), "--layout", "mmsa-pkl", "--dry-run"])
    assert dry.exit_code == 0 and "mmsa-pkl" in dry.output


def test_clips_without_a_score_label_are_left_out_of_the_export_with_a_note(store: str, tmp_path: Path) -> None:
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from store.errors import StoreError

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    path = copy / "aligned" / "aligned" / "clips.parquet"
    clips = pq.read_table(path)
    labels = clips.column("label").to_pylist()
    pq.write_table(clips.set_column(clips.column_names.index("label"), "label",
                                    pa.array([None, float("nan"), *labels[2:]], pa.float64())), path)
    data, summary = build_mmsa(str(copy), "aligned")
    assert sum(summary.samples.values()) == len(labels) - 2
    assert "2 clip(s) without a score label left out" in " ".join(summary.notes)
    assert all(np.isfinite(part["regression_labels"]).all() for part in data.values())
    pq.write_table(clips.set_column(clips.column_names.index("label"), "label",
                                    pa.nulls(len(labels), pa.float64())), path)
    with pytest.raises(StoreError, match="has no clip with a score label"):
        build_mmsa(str(copy), "aligned")
