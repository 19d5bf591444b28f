"""Hostile MMSA feature pickles: each class of input a probe found ending in a traceback, silent data
loss or wrong numbers, and what it ends in now (docs/reliability.md, "Hostile MMSA feature pickles"):
a correct import, a per-sample reject with a named reason, or one error naming the file."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from typer.testing import CliRunner

from flows.cli import app
from interop.safe_pickle import UnsafePickleError, load_untrusted
from stages.config import PipelineConfig
from stages.ingest import IngestSummary, run_ingest
from store import FeatureStore, open_view
from store.errors import ManifestError

N = {"train": 4, "valid": 2, "test": 2}
LA = 5  # audio's L


def _file() -> dict[str, dict[str, Any]]:
    """A small unaligned file shaped like MMSA's: ids ``v<k>$_$<i>``, BERT ids and mask, audio and
    vision with lengths, labels in range."""
    rng = np.random.default_rng(7)
    data: dict[str, dict[str, Any]] = {}
    k = 0
    for split, n in N.items():
        bert = np.zeros((n, 3, 6))
        bert[:, 0, :3] = rng.integers(100, 2000, (n, 3))
        bert[:, 1, :3] = 1
        data[split] = {
            "id": np.array([f"v{k + i}$_${i}" for i in range(n)]), "raw_text": np.array(["some words"] * n),
            "text": rng.normal(size=(n, 6, 4)).astype(np.float32), "text_bert": bert,
            "audio": rng.normal(size=(n, LA, 3)).astype(np.float32) + 2, "audio_lengths": [LA] * n,
            "vision": rng.normal(size=(n, 4, 2)).astype(np.float32) + 2, "vision_lengths": np.full(n, 4),
            "regression_labels": np.linspace(-2, 2, n).astype(np.float32), "annotations": ["Neutral"] * n,
        }
        k += n
    return data


def _write(path: Path, data: object, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


def _ingest(path: Path, url: Path) -> IngestSummary:
    return run_ingest(PipelineConfig.model_validate({"store": str(url), "dataset": {"path": str(path),
                                                                                     "layout": "mmsa-pkl"}}))


def _refused(tmp_path: Path, data: object, match: str, protocol: int = 4) -> str:
    """The one error an ingest of ``data`` ends in; no store is made (at most its writer lock)."""
    path = _write(tmp_path / "hostile.pkl", data, protocol)
    with pytest.raises(ManifestError, match=match) as err:
        _ingest(path, tmp_path / "store")
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    assert not (tmp_path / "store" / "store.json").exists()
    return str(err.value)


def _rejects(url: Path) -> dict[str, tuple[str, str]]:
    """source -> (reason, message) of the store's rejects table."""
    return {r["source"]: (r["reason"], r["message"]) for r in FeatureStore.open(str(url)).rejects().to_pylist()}


def _glob(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def _int(n: int) -> bytes:
    return f"I{n}\n".encode()


class _Call:
    """Pickles as ``func(*args)``: a call no array pickle makes, as a hostile file would hold it."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, whatever module it lives in

# Each once loaded: a 20-byte file claiming gigabytes (zero-filled), or uninitialised memory committed
# as features. Array pickles only ever call these with data from the file.
SIZE_CALLS: dict[str, tuple[bytes, str]] = {
    "bytes_of_a_size": (_glob("builtins", "bytes") + b"(" + _int(10**10) + b"tR.", r"refused bytes\(10000000000\)"),
    "bytearray_of_a_size": (_glob("builtins", "bytearray") + b"(" + _int(10**10) + b"tR.", r"refused bytearray\("),
    "numpy_void_of_a_size": (_glob("numpy", "void") + b"(" + _int(10**10) + b"tR.", r"refused void\("),
    "ndarray_called": (_glob("numpy", "ndarray") + b"((" + _int(10**5) + b"tVf4\ntR.",
                       "refused a call of numpy.ndarray"),
    "scalar_without_its_value": (_glob("numpy._core.multiarray", "scalar") + b"(" + _glob("numpy", "dtype")
                                 + b"(VV2000000000\ntRtR.", "refused a numpy scalar without its value"),
}


@pytest.mark.parametrize("case", sorted(SIZE_CALLS))
def test_a_call_that_allocates_from_a_size_the_file_names_is_refused_naming_the_file(
    tmp_path: Path, case: str
) -> None:
    blob, match = SIZE_CALLS[case]
    path = tmp_path / f"{case}.pkl"
    path.write_bytes(b"\x80\x02" + blob)
    with pytest.raises(UnsafePickleError, match=match) as err:
        load_untrusted(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize("audio", [
    _Call(np.ndarray, (N["train"], LA, 3), np.dtype("f4")),  # ndarray(shape, dtype): uninitialised memory
    _Call(RECONSTRUCT, np.ndarray, (N["train"], LA, 3), b"f"),  # _reconstruct at full size, no state to fill it
    _Call(RECONSTRUCT, np.ndarray, (N["train"],), np.dtype(("f4", (LA, 3)))),  # the same through a subarray dtype
], ids=["ndarray_call", "reconstruct_full_shape", "reconstruct_subarray_dtype"])
def test_uninitialised_memory_never_becomes_features(tmp_path: Path, audio: _Call) -> None:
    """Before, these imported: 4 clips' audio committed from whatever the process's memory held."""
    data = _file()
    data["train"]["audio"] = audio
    _refused(tmp_path, data, "refused (a call of numpy.ndarray|numpy _reconstruct)", protocol=2)


scalar_dtypes = hnp.scalar_dtypes().filter(lambda d: d.kind not in "mM")  # datetimes: NaT compares unequal


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=st.one_of(hnp.arrays(scalar_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)),
                       hnp.arrays(np.dtype([("a", "<f4"), ("b", "<i2", (2,))]), st.integers(0, 3)),
                       hnp.arrays(np.dtype(object), st.integers(0, 3), elements=st.text(max_size=3))),
       protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_every_array_pickle_still_loads_exactly_under_the_restrictions(
    tmp_path: Path, array: np.ndarray, protocol: int
) -> None:
    """The refusals above are forms numpy never writes: any dtype (structured, object, bytes, text),
    any shape (0-d, empty), numpy scalars, every protocol 0-5 load as pickle.loads loads them."""
    obj = {"a": array, "s": array.flat[0] if array.size else np.float64(1.5), "t": (array.dtype,)}
    path = _write(tmp_path / "a.pkl", obj, protocol)
    got, want = load_untrusted(path), pickle.loads(path.read_bytes())
    a, b = got["a"], want["a"]
    assert a.dtype == b.dtype and a.shape == b.shape == array.shape
    assert a.tolist() == b.tolist() if array.dtype == object else a.tobytes() == b.tobytes()
    assert type(got["s"]) is type(want["s"]) and repr(got["s"]) == repr(want["s"]) and got["t"] == want["t"]


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]  # the pure-Python pickler: its dispatch
    """Writes str and bytes as Python 2's str (``BINSTRING``), as cPickle under Python 2 did: array
    bytes, dtype codes, dict keys and UTF-8 text alike."""

    def save_str(self, obj: str | bytes) -> None:
        raw = obj.encode() if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)

    dispatch = {**pickle._Pickler.dispatch, str: save_str, bytes: save_str}  # type: ignore[attr-defined]


def test_a_python_2_pickle_imports_with_its_text_as_utf8(tmp_path: Path) -> None:
    """Before: 'not a readable pickle (UnicodeDecodeError …)' for every Python 2 file (numpy's array
    bytes are a py2 str); latin1 would have read 'café' as 'cafÃ©'."""
    data = _file()
    for part in data.values():
        part["id"], part["raw_text"] = list(part["id"]), ["café ☺"] * len(part["id"])  # py2 str items
    buf = io.BytesIO()
    _Py2Pickler(buf, 2).dump(data)
    path = tmp_path / "py2.pkl"
    path.write_bytes(buf.getvalue().replace(b"numpy._core", b"numpy.core"))
    s = _ingest(path, tmp_path / "store")
    assert (s.clips, s.rejects) == (8, 0)
    clips = FeatureStore.open(str(tmp_path / "store")).clips().to_pylist()
    assert clips[0]["clip_id"] == "v0_0" and clips[0]["text"] == "café ☺"
    view = open_view(str(tmp_path / "store"), "default")
    np.testing.assert_array_equal(np.asarray(view.array("audio/values"))[0], data["train"]["audio"][0])


def test_samples_under_another_split_name_are_an_error_not_dropped(tmp_path: Path) -> None:
    """Before, a file with train/dev/test imported train and test and left dev's samples out unsaid."""
    data = _file()
    data["dev"] = data.pop("valid")
    _refused(tmp_path, data, r"'dev' holds samples, but MMSA's splits are train, valid and test")


def test_other_top_level_keys_are_ignored_and_named_in_the_notes(tmp_path: Path) -> None:
    data: dict[str, Any] = {**_file(), "meta": {"dataset": "mosi"}, "version": 2}
    s = _ingest(_write(tmp_path / "f.pkl", data), tmp_path / "store")
    assert s.clips == 8 and "ignored top-level key(s) of f.pkl: ['meta', 'version']" in s.notes


@pytest.mark.parametrize(("data", "held"), [([1], "it holds a list"), ({"foo": 1}, r"its top-level keys are \['foo'\]"),
                                            ({}, "it is an empty dict"), (np.zeros(2), "it holds a ndarray")])
def test_a_file_without_splits_says_what_it_holds(tmp_path: Path, data: object, held: str) -> None:
    _refused(tmp_path, data, rf"not an MMSA feature file \(a dict with train/valid/test; {held}\)")


def test_a_folder_or_fifo_given_as_the_file_is_named_as_such(tmp_path: Path) -> None:
    """Before, both were 'no such MMSA feature file', though the path exists."""
    (tmp_path / "dir.pkl").mkdir()
    os.mkfifo(tmp_path / "fifo.pkl")
    for name, problem in [("dir.pkl", "a folder"), ("fifo.pkl", "not a regular file")]:
        with pytest.raises(ManifestError, match=f"^{tmp_path / name}: {problem}, not an MMSA feature file$"):
            _ingest(tmp_path / name, tmp_path / "store")


def _deep_id_file() -> bytes:
    """A file whose first sample id is a list nested 100,000 deep (pickle.dumps itself would recurse)."""
    def text(s: str) -> bytes:
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    labels = b"](" + b"".join(b"G" + struct.pack(">d", v) for v in (0.5, 0.5)) + b"e"
    deep = b"(" * 100_000 + b"l" * 100_000
    return (b"\x80\x02}(" + text("train") + b"}(" + text("id") + b"(" + deep + text("v$_$1") + b"l"
            + text("regression_labels") + labels + b"uu.")


def test_sample_ids_that_are_containers_are_named_rejects_not_tracebacks(tmp_path: Path) -> None:
    """Before: a RecursionError (deep list) or TypeError (array, dict, complex) traceback while the
    rejects table tried to show the id as JSON."""
    deep = tmp_path / "deep.pkl"
    deep.write_bytes(_deep_id_file())
    s = _ingest(deep, tmp_path / "deep")
    assert (s.clips, s.reject_reasons) == (1, {"invalid_id": 1})
    assert _rejects(tmp_path / "deep") == {
        "deep.pkl:train[0]": ("invalid_id", "deep.pkl:train[0]: the sample id is a list, not a string")}
    data = _file()
    data["train"]["id"] = np.array([np.zeros(3), "a$_$1", {"x": 1}, 2 + 3j], dtype=object)
    s = _ingest(_write(tmp_path / "objects.pkl", data), tmp_path / "store")
    assert s.clips == 5 and s.reject_reasons == {"invalid_id": 3}
    assert [m for _, m in _rejects(tmp_path / "store").values()] == [
        f"objects.pkl:train[{i}]: the sample id is a {kind}, not a string"
        for i, kind in [(0, "ndarray"), (2, "dict"), (3, "complex")]]


def test_bytes_transcripts_are_read_as_utf8_and_undecodable_ones_rejected(tmp_path: Path) -> None:
    """Before, every bytes transcript (a numpy S array, a Python 2 str) was a reject: 'not a string'."""
    data = _file()
    data["train"]["raw_text"] = np.array(["café".encode(), b"ok", b"\xff\xfe", b""], dtype=object)
    s = _ingest(_write(tmp_path / "f.pkl", data), tmp_path / "store")
    assert s.clips == 7 and s.reject_reasons == {"invalid_text_encoding": 1}
    texts = [c["text"] for c in FeatureStore.open(str(tmp_path / "store")).clips().to_pylist()[:3]]
    assert texts == ["café", "ok", ""]
    assert _rejects(tmp_path / "store")["f.pkl:train[2]"] == ("invalid_text_encoding",
                                                              "clip 'v2_2': transcript is not valid UTF-8")


lengths = st.one_of(st.integers(-3, LA + 3), st.floats(-2, LA + 2), st.sampled_from([1e30, 2.0**63, -0.0]))


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(given_lengths=st.lists(lengths, min_size=N["train"], max_size=N["train"]))
def test_each_sample_is_a_clip_with_its_stored_steps_or_a_reject_naming_its_length(
    tmp_path_factory: pytest.TempPathFactory, given_lengths: list[float]
) -> None:
    """Before, a negative length became 0 (the audio absent), 2.7 became 2, 99 became L, all silently.
    Now a length that is no whole number ≥ 0 rejects its sample by name; a longer one than L reads
    the L steps the file holds, counted in a note."""
    tmp = tmp_path_factory.mktemp("lengths")
    data = _file()
    data["train"]["audio_lengths"] = np.array(given_lengths, np.float64)
    s = _ingest(_write(tmp / "f.pkl", data), tmp / "store")
    whole = [n >= 0 and n == int(n) for n in given_lengths]
    assert s.clips == 4 + sum(whole) and s.rejects == 4 - sum(whole)
    for i, n in enumerate(given_lengths):
        if not whole[i]:
            assert _rejects(tmp / "store")[f"f.pkl:train[{i}]"] == (
                "invalid_row", f"clip 'v{i}_{i}': audio_lengths {n:g} is not a number of steps")
    longer = sum(w and n > LA for w, n in zip(whole, given_lengths))
    assert (f"audio: audio_lengths gives {longer} clip(s) more steps than the file's L={LA}: read as L (every step "
            "the file holds)" in s.notes) is (longer > 0)
    if s.clips:
        view = open_view(str(tmp / "store"), "default")
        got = dict(zip(view.clips.column("clip_id").to_pylist(), np.asarray(view.array("audio/lengths"))))
        for i, n in enumerate(given_lengths):
            if whole[i]:
                assert got[f"v{i}_{i}"] == min(int(n), LA)


def test_feature_values_beyond_float32_reject_their_sample_instead_of_becoming_zero(tmp_path: Path) -> None:
    """Before, a float64 file's 1e300 became inf in float32, then 0 (counted as 'non-finite'):
    the sample imported with a zero where the file had its largest value."""
    data = _file()
    audio = data["train"]["audio"].astype(np.float64)
    audio[1, 0, 0] = 1e300
    audio[2, 0, 0] = -np.inf  # non-finite in the file: zeroed as MMSA's loader does, and said so
    data["train"]["audio"] = audio
    s = _ingest(_write(tmp_path / "f.pkl", data), tmp_path / "store")
    assert s.clips == 7 and _rejects(tmp_path / "store") == {"f.pkl:train[1]": (
        "invalid_row", "clip 'v1_1': 'audio' holds 1e+300, beyond float32's range (±3.4e38), the type feature "
                       "sets store")}
    assert any(n.startswith("audio: 1 NaN or infinite value(s) in 1 clip(s) set to 0") for n in s.notes)
    view = open_view(str(tmp_path / "store"), "default")
    values = np.asarray(view.array("audio/values"))
    assert np.isfinite(values).all()
    np.testing.assert_array_equal(values[0], audio[0].astype(np.float32))


@pytest.mark.parametrize(("row", "col", "value", "problem"), [
    (0, 1, 3e10, "text_bert holds the token id 3e+10, not one in [0, 2^31)"),
    (0, 0, 12.5, "text_bert holds the token id 12.5, not one in [0, 2^31)"),
    (0, 2, -5, "text_bert holds the token id -5, not one in [0, 2^31)"),
    (1, 0, 7, "text_bert's attention mask holds 7, not 0 or 1"),
])
def test_token_ids_and_masks_int32_cannot_hold_reject_their_sample(
    tmp_path: Path, row: int, col: int, value: float, problem: str
) -> None:
    """Before, 3e10 wrapped around in int32, 12.5 became 12, -5 stayed, a mask of 7 counted as 1."""
    data = _file()
    data["valid"]["text_bert"][1, row, col] = value
    s = _ingest(_write(tmp_path / "f.pkl", data), tmp_path / "store")
    assert s.clips == 7
    assert _rejects(tmp_path / "store") == {"f.pkl:valid[1]": ("invalid_row", f"clip 'v5_1': {problem}")}


def test_a_modality_some_splits_lack_is_named_in_the_notes(tmp_path: Path) -> None:
    """Before, vision in train only was left out without a word."""
    data = _file()
    del data["valid"]["vision"], data["test"]["vision"]
    s = _ingest(_write(tmp_path / "f.pkl", data), tmp_path / "store")
    assert "vision: not imported: 'vision' is in train but not in valid, test" in s.notes
    assert sorted(open_view(str(tmp_path / "store"), "default").modalities) == ["audio", "text"]


def test_a_nan_unimodal_label_is_no_label_not_a_reject(tmp_path: Path) -> None:
    """emoflow's export writes NaN where a clip has no label_T/A/V; importing it rejected those clips."""
    data = _file()
    for part in data.values():
        part["regression_labels_T"] = np.full(len(part["id"]), np.nan, np.float32)
        part["regression_labels_A"] = np.array([None] + [0.5] * (len(part["id"]) - 1), object)
    s = _ingest(_write(tmp_path / "f.pkl", data), tmp_path / "store")
    assert (s.clips, s.rejects) == (8, 0)
    clips = FeatureStore.open(str(tmp_path / "store")).clips().to_pylist()
    assert [c["label_T"] for c in clips] == [None] * 8 and [c["label_A"] for c in clips[:2]] == [None, 0.5]


def test_a_split_of_zero_samples_imports_the_others(tmp_path: Path) -> None:
    """Before, the per-sample checks failed on a split of 0 samples (a reshape of nothing)."""
    data = _file()
    data["valid"] = {k: v[:0] for k, v in data["valid"].items()}
    s = _ingest(_write(tmp_path / "f.pkl", data), tmp_path / "store")
    assert (s.clips, s.rejects) == (6, 0)


def test_a_hostile_file_through_the_cli_is_one_error_line(tmp_path: Path, prefect_harness: object) -> None:
    path = tmp_path / "bomb.pkl"
    path.write_bytes(b"\x80\x02" + SIZE_CALLS["bytes_of_a_size"][0])
    result = CliRunner().invoke(app, ["ingest", str(path), "--store", str(tmp_path / "s"), "--layout", "mmsa-pkl"])
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}: refused bytes(10000000000)")
