"""``export mmsa --out``: every unusable output path is one error naming it (``ConfigError`` when the
path is checked before any work, ``StoreError`` when writing fails; the CLI's ``error:`` line, exit 2),
never a traceback, and never replaces what is there."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from interop import export_mmsa
from stages.config import PipelineConfig
from stages.ingest import run_ingest
from store.errors import ConfigError, StoreError


def _split(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"id": np.array([f"v{i % 2}$_${seed}{i}" for i in range(n)], dtype=object),
            "raw_text": np.array([f"text {i}" for i in range(n)], dtype=object),
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
            **{m: rng.normal(size=(n, 3, 2)).astype(np.float32) for m in ("text", "audio", "vision")}}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small store with view ``default``, imported from a made-up MMSA pickle (no media, no extraction)."""
    root = tmp_path_factory.mktemp("export-out")
    pkl = root / "in.pkl"
    pkl.write_bytes(pickle.dumps({"train": _split(4, 1), "valid": _split(2, 2), "test": _split(2, 3)}))
    url = str(root / "store")
    run_ingest(PipelineConfig.model_validate({"store": url, "dataset": {"path": str(pkl), "layout": "mmsa-pkl"}}))
    return url


def test_an_existing_folder_as_out_is_a_named_error(store: str, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    for out in (tmp_path / "dir", ""):
        with pytest.raises(ConfigError, match="is a folder"):
            export_mmsa(store, "default", out)
    assert (tmp_path / "dir").is_dir()


def test_a_special_file_as_out_is_refused_not_replaced(store: str, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pkl"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        export_mmsa(store, "default", fifo)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # the rename would have put a regular file in its place


def test_an_os_error_while_writing_is_a_named_error_and_keeps_an_existing_file(store: str, tmp_path: Path) -> None:
    """A 250-character name passes the checks, but the temporary name beside it is too long to create."""
    out = tmp_path / ("x" * 246 + ".pkl")
    out.write_bytes(b"before")
    with pytest.raises(StoreError, match="cannot write the pickle there"):
        export_mmsa(store, "default", out)
    assert out.read_bytes() == b"before"
    with pytest.raises(ConfigError, match="not a usable file name"):
        export_mmsa(store, "default", tmp_path / ("y" * 300 + ".pkl"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_a_named_error(store: str, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="cannot write in the folder"):
            export_mmsa(store, "default", ro / "f.pkl")
    finally:
        ro.chmod(0o755)


def test_cli_export_to_a_folder_is_one_error_line_and_exit_2(store: str, tmp_path: Path) -> None:
    from flows.cli import app

    result = CliRunner().invoke(app, ["export", "mmsa", "--store", store, "--view", "default", "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.output.startswith("error:") and "is a folder" in result.output
    assert "Traceback" not in result.output


def test_a_new_folder_below_an_existing_one_is_created_as_predict_does(store: str, tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "features.pkl"
    summary = export_mmsa(store, "default", out)
    assert summary.path == str(out) and pickle.loads(out.read_bytes())["train"]["id"].shape == (4,)
