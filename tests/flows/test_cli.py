"""The `emoflow` CLI end to end on real files: ingest, extract, store ls/verify/vacuum, dry runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from store import FeatureStore
from store.verify import account
from tests.helpers.cli import one_error_line

runner = CliRunner()


def test_ingest_dry_run_prints_the_resolved_config_and_writes_nothing(demo_data, tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", str(demo_data.root), "--store", str(tmp_path / "s"), "--dry-run",
                                 "--set", "extract.batch_clips=5"])
    assert result.exit_code == 0, result.output
    assert "batch_clips: 5" in result.output and str(tmp_path / "s") in result.output
    assert not (tmp_path / "s").exists()


def test_bad_override_is_a_clear_config_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", "x", "--store", str(tmp_path), "--set", "extract.batch_clips=zero"])
    assert "extract.batch_clips" in one_error_line(result)



def test_unknown_extractor_is_one_line_naming_it_and_the_known_ones(tmp_path: Path) -> None:
    line = one_error_line(runner.invoke(app, ["extract", "-e", "typo", "--store", str(tmp_path)]))
    assert "'typo'" in line and all(n in line for n in ("audio.mfcc", "text.bert", "vision.cnn"))


def test_bad_extractor_config_is_one_line_naming_the_field(tmp_path: Path) -> None:
    FeatureStore.open(tmp_path, create=True)
    line = one_error_line(runner.invoke(app, ["extract", "--store", str(tmp_path), "-e", "audio.mfcc", "--dry-run",
                                               "--set", "extract.extractors[audio.mfcc].n_mfcc=many"]))
    assert "audio.mfcc" in line and "n_mfcc" in line


def test_missing_store_config_file_and_run_are_one_line_each(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    assert "no emoflow store" in one_error_line(runner.invoke(app, ["store", "ls", missing]))
    assert "no emoflow store" in one_error_line(runner.invoke(app, ["extract", "--store", missing, "--dry-run"]))
    assert "cannot read config" in one_error_line(runner.invoke(app, ["ingest", "x", "--config", f"{missing}.yaml"]))
    assert "not a run directory" in one_error_line(runner.invoke(app, ["evaluate", missing]))
    assert "not key=value" in one_error_line(runner.invoke(app, ["ingest", "x", "--set", "store"]))


@pytest.mark.parametrize("raised_in, command, error, problem", [
    ("flow", ["ingest", "{tmp}/no-data", "--store", "{tmp}/s"], "ManifestError", "dataset path does not exist"),
    ("task", ["stats", "--store", "{tmp}"], "StoreError", "no emoflow store here"),
])
def test_a_user_error_inside_a_flow_or_task_is_one_line_without_a_traceback(
    tmp_path: Path, prefect_harness, raised_in: str, command: list[str], error: str, problem: str
) -> None:
    from prefect.logging.configuration import setup_logging

    setup_logging()  # Prefect's first flow run would configure logging and drop a handler added before
    records: list[logging.LogRecord] = []
    capture = logging.Handler(logging.ERROR)
    capture.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(f"prefect.{kind}_runs") for kind in ("flow", "task")]
    for logger in loggers:
        logger.addHandler(capture)
    try:
        result = runner.invoke(app, [arg.format(tmp=tmp_path) for arg in command])
    finally:
        for logger in loggers:
            logger.removeHandler(capture)
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and problem in errors[0]
    assert any(r.name == f"prefect.{raised_in}_runs" for r in records)
    assert records and all(error in r.getMessage() and r.exc_info is None for r in records)  # no traceback


def test_ingest_extract_ls_verify_vacuum_through_the_cli(demo_data, tmp_path: Path, prefect_harness) -> None:
    store = str(tmp_path / "s")
    out = runner.invoke(app, ["ingest", str(demo_data.root), "--store", store])
    assert out.exit_code == 0, out.output
    assert "ingested 12 clips" in " ".join(out.output.split())

    dry = runner.invoke(app, ["extract", "--store", store, "-e", "audio.mfcc", "--dry-run"])
    assert dry.exit_code == 0 and "audio.mfcc" in dry.output
    assert FeatureStore.open(store).feature_set_names() == []  # a dry run writes nothing

    ext = runner.invoke(app, ["extract", "--store", store, "-e", "audio.mfcc", "--no-progress"])
    assert ext.exit_code == 0, ext.output
    assert "extraction summary" in ext.output

    ls = runner.invoke(app, ["store", "ls", store])
    assert ls.exit_code == 0 and "12 clips" in ls.output and "audio.mfcc-" in ls.output and "pending" in ls.output
    st = FeatureStore.open(store)
    (acc,) = account(st).values()
    assert (len(acc.committed), acc.failed, acc.pending) == (12, (), ())
    assert runner.invoke(app, ["store", "verify", store]).exit_code == 0
    vac = runner.invoke(app, ["store", "vacuum", store, "--grace", "0"])
    assert vac.exit_code == 0 and "removed 0 orphan" in vac.output and "cleared 0 leftover" in vac.output


def test_ingest_names_the_first_rejected_rows_and_says_where_the_rest_are(tmp_path: Path, prefect_harness) -> None:
    rows = ["c0,,hello there,0.5,train"] + [f"gone{i},media/gone{i}.mp4,hi,0.5,train" for i in range(22)]
    (tmp_path / "manifest.csv").write_text("clip_id,media,text,label,split\n" + "\n".join(rows) + "\n")
    store = tmp_path / "s"
    out = runner.invoke(app, ["ingest", str(tmp_path / "manifest.csv"), "--store", str(store)], terminal_width=300)
    assert out.exit_code == 0, out.output
    named = [line for line in out.output.splitlines() if line.startswith("rejected:")]
    assert len(named) == 20 and "manifest.csv:3: clip 'gone0': media file 'media/gone0.mp4' does not exist" in named[0]
    assert f"... 2 more rejected; all of them are in {store}/rejects.parquet" in " ".join(out.output.split())


def test_pipeline_dry_run_prints_the_plan_writes_nothing_and_refuses_what_the_run_would(
    demo_data, tmp_path: Path
) -> None:
    store = tmp_path / "s"
    ok = runner.invoke(app, ["pipeline", "--dry-run", "--store", str(store), "--set", f"dataset.path={demo_data.root}"],
                       terminal_width=300)
    assert ok.exit_code == 0, ok.output
    plan = " ".join(ok.output.split())
    assert f"plan: ingest -> extract -> align -> stats from {demo_data.root} (manifest layout) into {store}" in plan
    assert not store.exists()
    unset = ["pipeline", "--dry-run", "--store", str(store)]
    assert "dataset.path is not set" in one_error_line(runner.invoke(app, unset))
    missing = ["pipeline", "--dry-run", "--store", str(store), "--set", f"dataset.path={tmp_path / 'gone'}"]
    assert "dataset path does not exist" in one_error_line(runner.invoke(app, missing))
    subset = runner.invoke(app, ["pipeline", "--dry-run", "--store", str(store), "--stages", "align,extract"])
    assert subset.exit_code == 0 and f"plan: extract -> align into {store}" in " ".join(subset.output.split())


def test_store_verify_exits_nonzero_and_names_the_clip_on_corruption(tmp_path: Path) -> None:
    import numpy as np

    from features.extractors.base import FeatureResult

    st = FeatureStore.open(tmp_path, create=True)
    bad = FeatureResult(values=np.array([[np.inf, 1.0]], np.float32), times=np.zeros((1, 2)))
    st.ensure_feature_set("x-1", {"identity": 1}).commit([("clip-7", "fp", bad, 1.0)])
    result = runner.invoke(app, ["store", "verify", str(tmp_path)])
    assert result.exit_code == 1 and "clip-7" in result.output and "non-finite" in result.output


def test_overrides_replace_what_they_name_and_typed_options_are_never_reparsed(tmp_path: Path) -> None:
    from stages.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("extract:\n  extractors:\n    text.bert: {}\n    audio.mfcc: {n_mfcc: 20}\n")
    cfg = load_config(path, ["extract.extractors={vision.cnn: {}}"])
    assert cfg.extract.extractors == {"vision.cnn": {}}  # a mapping replaces, as `=` says
    cfg = load_config(path, ["extract.extractors[audio.mfcc].n_mfcc=13", "train.seeds=[1, 2]"],
                      {"stats.name": "null: [x]", "align.feature_sets.text": None})
    assert cfg.extract.extractors == {"text.bert": {}, "audio.mfcc": {"n_mfcc": 13}} and cfg.train.seeds == [1, 2]
    assert cfg.stats.name == "null: [x]" and cfg.align.feature_sets == {"text": None}  # typed, not YAML text
    line = one_error_line(runner.invoke(app, ["ingest", "x", "--set", "train.seeds=[1,"]))
    assert "train.seeds=[1," in line and "not YAML" in line


def test_help_shows_the_bracketed_override_example_and_train_batching_override() -> None:
    from stages.config import load_config

    out = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "240"})
    assert out.exit_code == 0
    assert "extract.extractors[vision.cnn].batch_size=8" in out.output  # not eaten as rich markup
    assert load_config(None, ["train.batching=shuffle"]).train.batching == "shuffle"


def test_train_refuses_fewer_than_one_seed_and_an_absent_gpu_already_in_a_dry_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    for seeds in ("0", "-1"):
        result = runner.invoke(app, ["train", "--store", str(tmp_path), "--seeds", seeds, "--dry-run"])
        assert result.exit_code == 2 and "Invalid value for '--seeds'" in result.output, result.output
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = one_error_line(runner.invoke(app, ["train", "--store", str(tmp_path), "--dry-run",
                                               "--set", "train.device=cuda"]))
    assert "train.device: device 'cuda' requested but torch sees no CUDA device" in line


def test_a_damaged_checkpoint_is_one_error_line_naming_it_in_evaluate_and_in_a_predict_dry_run(tmp_path: Path) -> None:
    from tests.helpers.training import one_torch_thread, tiny_config, write_tiny_view
    from training.runs import CHECKPOINT
    from training.train import train_on_view

    write_tiny_view(tmp_path / "store")
    with one_torch_thread():
        train_on_view(tmp_path / "store", "tiny", tiny_config(max_epochs=1), tmp_path / "run" / "seed-0")
    checkpoint = tmp_path / "run" / "seed-0" / CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    problem = f"error: {checkpoint}: unreadable checkpoint (SafetensorError: "
    assert one_error_line(runner.invoke(app, ["evaluate", str(tmp_path / "run")])).startswith(problem)
    predict = ["predict", str(tmp_path / "talk.mp4"), "--run", str(tmp_path / "run"), "--store", str(tmp_path / "p"),
               "--dry-run"]
    assert one_error_line(runner.invoke(app, predict)).startswith(problem)
    assert not (tmp_path / "p").exists()
