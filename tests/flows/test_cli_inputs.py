"""Hostile but possible command-line and config inputs: each is read as meant or refused with one
``error:`` line (exit 2), never a traceback, a silent misreading or work done first. No flow runs here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.demo import run_demo
from stages.config import load_config
from store.errors import ConfigError
from tests.helpers.cli import one_error_line

runner = CliRunner()



def test_config_values_are_yaml_1_2_so_no_octal_sexagesimal_dates_or_yes_no_booleans(tmp_path: Path) -> None:
    """PyYAML's YAML 1.1 read ``010`` as 8 and ``1:30`` as 90 silently, ``no`` as False and a date as
    a date OmegaConf cannot hold; the file and ``--set`` share one YAML 1.2 reading."""
    path = tmp_path / "c.yaml"
    path.write_text("extract:\n  batch_clips: 010\nalign:\n  view: 2024-05-01\nstats:\n  name: no\n")
    for cfg in (load_config(path), load_config(None, ["extract.batch_clips=010", "align.view=2024-05-01",
                                                      "stats.name=no"])):
        assert (cfg.extract.batch_clips, cfg.align.view, cfg.stats.name) == (10, "2024-05-01", "no")
    assert load_config(None, ["train.seed=0o10", "extract.force=true"]).train.seed == 8  # explicit octal still works
    line = one_error_line(runner.invoke(app, ["ingest", "x", "--dry-run", "--set", "align.window=1:30"]))
    assert "align.window" in line  # not 90 seconds
    path.write_text("align:\n  window: 1:30\n")
    assert "align.window" in one_error_line(runner.invoke(app, ["ingest", "x", "--dry-run", "-c", str(path)]))


@pytest.mark.parametrize("content, problem", [
    (b"store: \xff\xfe\n", "a config file must be UTF-8 text"),
    (b"hello\n", "a config file must be a mapping of settings, not a str"),
    (b"- store: x\n", "a config file must be a mapping of settings, not a list"),
    (b"store: a\nstore: b\n", 'not valid YAML: found duplicate key "store"'),
    (b"store:\n\tx: 1\n", "not valid YAML: found character '\\t' that cannot start any token at line 2, column 1"),
])
def test_a_config_file_that_cannot_be_a_config_is_one_error_line_naming_it(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    line = one_error_line(runner.invoke(app, ["ingest", "x", "--dry-run", "-c", str(path)]))
    assert line.startswith(f"error: {path}: {problem}"), line


def test_an_empty_or_comment_only_config_file_is_the_defaults(tmp_path: Path) -> None:
    for text in ("", "# nothing yet\n", "null\n"):
        (tmp_path / "c.yaml").write_text(text)
        assert load_config(tmp_path / "c.yaml") == load_config(None)


def test_home_in_a_location_is_expanded_in_config_files_overrides_and_store_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``store: ~/x`` in a file, a quoted ``--set`` or ``store ls '~/x'`` (no shell expands them) used
    to become ``<cwd>/~/x``."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("store: ~/emo/store\nruns: ~/emo/runs\ndataset:\n  path: ~/data\n")
    cfg = load_config(tmp_path / "c.yaml", ["predict.store=~/emo/predict"])
    home = tmp_path / "home" / "emo"
    assert (cfg.store, cfg.runs, cfg.predict.store) == (str(home / "store"), str(home / "runs"), str(home / "predict"))
    assert cfg.dataset.path == str(tmp_path / "home" / "data")
    quoted = runner.invoke(app, ["store", "ls", "~/emo/store"])
    assert str(home / "store") in one_error_line(quoted)
    assert os.listdir(tmp_path) == ["c.yaml"]  # nothing written anywhere


def test_demo_refuses_too_few_clips_and_an_unusable_workdir_before_generating_anything(tmp_path: Path) -> None:
    for clips in ("0", "-1", "5"):  # 5: a split can come out empty, which showed only after extraction
        result = runner.invoke(app, ["demo", "--clips", clips, "--workdir", str(tmp_path / "d")])
        assert result.exit_code == 2 and "Invalid value for '--clips'" in result.output, result.output
    with pytest.raises(ConfigError, match="--clips 3: the demo needs at least 6 clips"):
        run_demo(tmp_path / "d", n_clips=3)
    (tmp_path / "afile").write_text("x")
    for workdir in (tmp_path / "afile", tmp_path / "afile" / "demo"):
        line = one_error_line(runner.invoke(app, ["demo", "--clips", "6", "--workdir", str(workdir)]))
        assert line.startswith(f"error: --workdir {workdir}: cannot create the folder"), line
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_train_dry_run_refuses_a_run_name_the_real_run_would_refuse(tmp_path: Path) -> None:
    from tests.helpers.training import write_tiny_view

    store = tmp_path / "store"
    for name in ("../escape", "a/b", ".."):  # checked first, before the store is opened
        line = one_error_line(runner.invoke(app, ["train", "--store", str(store), "--dry-run", "--name", name]))
        assert f"run name {name!r} is not one folder name" in line
    write_tiny_view(store)
    ok = runner.invoke(app, ["train", "--store", str(store), "--view", "tiny", "--text-mode", "frozen", "--dry-run",
                             "--name", "mine", "--set", f"runs={tmp_path / 'runs'}"])
    assert ok.exit_code == 0 and f"into {tmp_path / 'runs' / 'mine'}" in " ".join(ok.output.split()), ok.output
    assert sorted(os.listdir(tmp_path)) == ["store"]  # the dry run wrote nothing


def test_an_s3_store_without_credentials_is_one_error_line_naming_what_to_set(tmp_path: Path) -> None:
    """botocore's NoCredentialsError used to end ``store ls s3://…`` with a traceback and exit 1. A
    child process, so no credentials or cached filesystem of another test leak in; the endpoint is a
    closed loopback port, so nothing leaves the machine."""
    pytest.importorskip("s3fs")
    import subprocess
    import sys

    from tests.helpers.net import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_S3"))}
    env |= {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    done = subprocess.run([sys.executable, "-c", "from flows.cli import app; app()", "store", "ls", "s3://bucket/x"],
                          env=env, capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stdout + done.stderr
    assert lines[0].startswith("error: S3 store: Unable to locate credentials") and "AWS_ACCESS_KEY_ID" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


def test_train_dry_run_refuses_a_missing_or_mismatched_view_as_the_real_run_would(tmp_path: Path) -> None:
    from tests.helpers.training import write_tiny_view

    write_tiny_view(tmp_path / "store")
    base = ["train", "--dry-run", "--store", str(tmp_path / "store"), "--text-mode", "frozen"]
    ok = runner.invoke(app, [*base, "--view", "tiny"])
    assert ok.exit_code == 0 and "plan: train full on view 'tiny'" in ok.output, ok.output
    assert "'nope'" in one_error_line(runner.invoke(app, [*base, "--view", "nope"]))
    line = one_error_line(runner.invoke(app, [*base, "--view", "tiny", "--set", "train.view.dims.vision=7"]))
    assert "vision has dim 5, config expects 7" in line


def test_an_empty_store_or_runs_location_is_refused_not_taken_as_the_working_directory(tmp_path: Path) -> None:
    """``--store "$STORE"`` with the variable unset, or an unset ``{{ $EMOFLOW_STORE }}`` in a deployment,
    used to put the store in the working directory."""
    for args in (["--store", ""], ["--set", "store="], ["--set", "runs="]):
        line = one_error_line(runner.invoke(app, ["ingest", str(tmp_path), "--dry-run", *args]))
        assert "is empty" in line and "EMOFLOW_STORE" in line
    result = runner.invoke(app, ["store", "ls", ""])
    assert result.exit_code == 2 and "is empty" in result.output


def test_a_dask_address_is_checked_before_any_work_and_an_unreachable_scheduler_is_named() -> None:
    """``--dask foo`` used to pass every check and fail inside the flow with distributed's traceback
    ("missing port number"); an address nothing listens on waited 30 s, then did the same."""
    from flows.runners import build_task_runner
    from stages.config import ExecutorConfig
    from store.errors import ConfigError
    from tests.helpers.net import free_port

    for bad in ("foo", "tcp://host", "http://host:8786", "host:port"):
        line = one_error_line(runner.invoke(app, ["extract", "--dry-run", "--dask", bad]))
        assert "executor.dask" in line and "tcp://host:port" in line, line
    closed = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match=rf"executor.dask {closed}: cannot reach the Dask scheduler"):
        build_task_runner(ExecutorConfig(dask=closed))
    assert ExecutorConfig(dask="tls://scheduler.example:8786").dask == "tls://scheduler.example:8786"


@pytest.mark.parametrize("override, field", [
    ("train.batch_size=true", "batch_size"),  # was a batch of 1 clip
    ("train.lr_other=false", "lr_other"),
    ("align.window=true", "window"),
    ("extract.batch_seconds=true", "batch_seconds"),
])
def test_a_yes_no_value_where_a_number_belongs_is_refused_naming_the_field(override: str, field: str) -> None:
    line = one_error_line(runner.invoke(app, ["ingest", "x", "--dry-run", "--set", override]))
    assert field in line and "is a yes/no value, not a number" in line, line


def test_yes_no_fields_and_numbers_still_read_as_before() -> None:
    cfg = load_config(None, ["train.use_slgm=false", "train.batch_size=32", "train.lr_other=0.002",
                             "train.grad_clip=null", "extract.force=true"])
    train = cfg.train
    assert (train.use_slgm, train.batch_size, train.lr_other, train.grad_clip) == (False, 32, 0.002, None)


def test_ingest_dry_run_names_a_missing_dataset_and_the_layout_it_detects(demo_data, tmp_path: Path) -> None:
    """A dry run used to print a plan for a dataset that is not there ("auto" layout); it now answers
    as the ingest would, and names the layout it would read with."""
    store = str(tmp_path / "s")
    line = one_error_line(runner.invoke(app, ["ingest", str(tmp_path / "gone"), "--store", store, "--dry-run"]))
    assert line == f"error: {tmp_path / 'gone'}: dataset path does not exist"
    (tmp_path / "odd.csv").write_text("a,b\n1,2\n")
    assert "cannot tell the layout" in one_error_line(
        runner.invoke(app, ["ingest", str(tmp_path / "odd.csv"), "--store", store, "--dry-run"]))
    ok = runner.invoke(app, ["ingest", str(demo_data.root), "--store", store, "--dry-run"])
    assert ok.exit_code == 0 and "(manifest layout)" in ok.output, ok.output
    assert not (tmp_path / "s").exists()
