"""Training on a view that another process rebuilds meanwhile: the dataset (in the main process and
in a spawned worker, which re-opens the arrays) and the run refuse to go on with the new arrays under
the old clip table and statistics; a view written before build ids still trains."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from torch import nn

from store.errors import StoreError
from store.fs import StoreFS
from store.views import open_view
from tests.helpers.training import one_torch_thread, tiny_config, write_tiny_view
from training.data import ViewDataset
from training.runs import RunDir
from training.train import train_on_view

REBUILT = r"view 'tiny' in .* was rebuilt while this run was reading it \(build [0-9a-f]+ → [0-9a-f]+\); rerun"


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def test_a_dataset_whose_view_was_rebuilt_refuses_its_first_item_in_the_main_process_and_in_a_worker(
    tmp_path: Path,
) -> None:
    write_tiny_view(tmp_path)
    dataset = ViewDataset(open_view(tmp_path, "tiny"), "train", ["text", "audio"], tokens=False)
    worker = pickle.loads(pickle.dumps(dataset))  # what a spawned DataLoader worker gets: it opens the arrays itself
    write_tiny_view(tmp_path, seed=1)  # rebuilt by another process: same fingerprint, other arrays
    for reader in (dataset, worker):
        with pytest.raises(StoreError, match=REBUILT):
            reader[0]


def test_a_run_whose_view_is_rebuilt_mid_training_stops_unfinished(tmp_path: Path) -> None:
    write_tiny_view(tmp_path / "store")

    def rebuild(record: dict[str, float], model: nn.Module, improved: bool) -> None:
        if record["epoch"] == 1:  # the arrays are open and cached: only the epoch check sees the swap
            write_tiny_view(tmp_path / "store", seed=1)

    with pytest.raises(StoreError, match=REBUILT):
        train_on_view(tmp_path / "store", "tiny", tiny_config(max_epochs=3), tmp_path / "run", on_epoch=rebuild)
    run = RunDir(tmp_path / "run")
    assert [r["epoch"] for r in run.epochs()] == [1]  # epoch 2 read the new arrays: not logged
    assert "finished" not in run.info() and not (run.path / "metrics.json").exists()


def test_a_view_written_before_build_ids_still_trains(tmp_path: Path) -> None:
    write_tiny_view(tmp_path / "store")
    fs = StoreFS(tmp_path / "store")
    attrs = fs.read_json("aligned/tiny/view.json", "view")
    del attrs["build_id"]
    fs.write_bytes_atomic("aligned/tiny/view.json", json.dumps(attrs).encode())
    del fs.open_group("aligned/tiny", mode="r+").attrs["build_id"]
    assert open_view(fs, "tiny").build_id is None
    run, _ = train_on_view(tmp_path / "store", "tiny", tiny_config(max_epochs=1), tmp_path / "run")
    assert "finished" in run.info() and run.info()["view_attrs"].get("build_id") is None
