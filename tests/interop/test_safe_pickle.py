"""The restricted unpickler: feature pickles load, anything that would run code is refused by name
before it runs (a malicious pickle's command never executes)."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from interop.safe_pickle import RestrictedUnpickler, UnsafePickleError, allowed_global, load_untrusted
from stages.config import PipelineConfig
from stages.ingest import run_ingest
from store import FeatureStore
from store.errors import ManifestError


class _Evil:
    """Unpickling this runs ``touch <marker>`` through os.system (the classic pickle attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _write(path: Path, obj: object, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _feature_file() -> dict[str, object]:
    return {"train": {"id": np.array(["a$_$1"], dtype=object), "raw_text": ["hi"],
                      "audio": np.zeros((1, 3, 2), np.float32), "audio_lengths": np.array([2]),
                      "regression_labels": np.array([0.5], np.float32), "scale": np.float64(2.5),
                      "names": np.array(["x", "yy"]), "meta": {"t": (1, 2.0, None, True, b"raw", {3})}}}


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_feature_pickle_loads_exactly_under_every_protocol(tmp_path: Path, protocol: int) -> None:
    data = _feature_file()
    got = load_untrusted(_write(tmp_path / "f.pkl", data, protocol))
    part, want = got["train"], data["train"]
    assert isinstance(want, dict)
    for key in ("id", "audio", "audio_lengths", "regression_labels", "names"):
        np.testing.assert_array_equal(part[key], want[key])
        assert part[key].dtype == want[key].dtype
    assert part["raw_text"] == ["hi"] and part["scale"] == 2.5 and isinstance(part["scale"], np.float64)
    assert part["meta"] == want["meta"]


def test_numpy_1_module_names_load_too(tmp_path: Path) -> None:
    """Pickles written by numpy 1.x (MMSA's official files) name numpy.core.multiarray."""
    blob = pickle.dumps(np.arange(6, dtype=np.float32).reshape(2, 3), protocol=2)
    old = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != blob
    np.testing.assert_array_equal(load_untrusted(_write_bytes(tmp_path / "old.pkl", old)), np.arange(6).reshape(2, 3))


def _write_bytes(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path


def test_a_malicious_pickle_is_refused_by_name_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _write(tmp_path / "aligned_50.pkl", {"train": {"id": _Evil(marker)}})
    with pytest.raises(UnsafePickleError, match=r"refused to load the global (posix|nt)\.system") as err:
        load_untrusted(evil)
    assert str(evil) in str(err.value)
    assert not marker.exists()
    # the same file through `emoflow ingest --layout mmsa-pkl`: a user error, no store contents, no command run
    store = tmp_path / "store"
    cfg = PipelineConfig.model_validate({"store": str(store), "dataset": {"path": str(evil), "layout": "mmsa-pkl"}})
    with pytest.raises(ManifestError, match="system"):
        run_ingest(cfg)
    assert not marker.exists()
    assert not store.exists() or FeatureStore.open(store).clips().num_rows == 0


@pytest.mark.parametrize(("module", "name"), [
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("subprocess", "Popen"), ("os", "system"), ("posix", "system"), ("numpy", "load"), ("numpy", "testing"),
    ("numpy.core.multiarray", "frombuffer"), ("copyreg", "_reconstructor"), ("numpy", "ndarray.__new__"),
    ("pickle", "loads"), ("numpy.lib.npyio", "load"),
])
def test_every_global_outside_the_allow_list_is_refused(module: str, name: str) -> None:
    assert allowed_global(module, name) is None
    blob = f"c{module}\n{name}\n.".encode()  # protocol-0 GLOBAL opcode: just the reference
    with pytest.raises(UnsafePickleError, match=f"refused to load the global {module}.{name}"):
        RestrictedUnpickler(io.BytesIO(blob), "x.pkl").load()


def test_codecs_encode_only_as_latin1_bytes(tmp_path: Path) -> None:
    blob = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(UnsafePickleError, match="rot13"):
        load_untrusted(_write_bytes(tmp_path / "r.pkl", blob))
    assert load_untrusted(_write_bytes(tmp_path / "l.pkl", b"c_codecs\nencode\n(Vabc\nVlatin1\ntR.")) == b"abc"


def test_garbage_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UnsafePickleError, match="not a readable pickle"):
        load_untrusted(_write_bytes(tmp_path / "g.pkl", b"\x80\x04garbage"))
    with pytest.raises(UnsafePickleError, match="persistent id"):
        load_untrusted(_write_bytes(tmp_path / "p.pkl", b"\x80\x02X\x01\x00\x00\x00aQ."))
    with pytest.raises(ManifestError, match="cannot read"):
        load_untrusted(tmp_path / "absent.pkl")
