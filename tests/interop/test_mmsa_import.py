"""Importing official-style MMSA pickles (built here as MMSA writes them): ids, rejects, the
length rules, BERT padding states, -inf audio, absent modalities, aligned and unaligned files."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from interop.mmsa import mmsa_id, split_mmsa_id
from stages.config import PipelineConfig
from stages.ingest import IngestSummary, run_ingest
from store import FeatureStore, open_view
from store.errors import ManifestError, StoreError

IDS = {"train": ["vidA$_$1", "vidA$_$2", "vidB$_$1"], "valid": ["vidC$_$1", "vidA$_$1"],
       "test": ["vidD$_$1", "vidE$_$7"]}
LABELS = {"train": [-2.4, 0.0, 1.8], "valid": [0.6, 1.0], "test": [3.5, -0.2]}  # 3.5: outside [-3, 3]
TOKENS = {"train": [4, 6, 3], "valid": [5, 2], "test": [4, 4]}
AUDIO = {"train": [5, 2, 4], "valid": [3, 1], "test": [5, 5]}
VISION = {"train": [4, 0, 2], "valid": [1, 4], "test": [3, 3]}  # 0: no face found in that clip


def _official(aligned: bool) -> dict[str, dict[str, object]]:
    """A small file shaped like MMSA's: BERT states at padding positions are not zero, audio has
    -inf (COVAREP), SIMS-style unimodal labels; unaligned files carry audio/vision lengths."""
    rng = np.random.default_rng(0)
    data: dict[str, dict[str, object]] = {}
    L, La, Lv = (6, 6, 6) if aligned else (6, 5, 4)  # noqa: N806
    for split, ids in IDS.items():
        n = len(ids)
        bert = np.zeros((n, 3, L), np.float64)
        text = rng.normal(size=(n, L, 4)).astype(np.float32)  # padding states included, like BERT's
        audio = np.zeros((n, La, 2), np.float32)
        vision = np.zeros((n, Lv, 3), np.float32)
        for i in range(n):
            bert[i, 0, : TOKENS[split][i]] = rng.integers(1000, 2000, TOKENS[split][i])
            bert[i, 1, : TOKENS[split][i]] = 1
            audio[i, : AUDIO[split][i]] = rng.normal(size=(AUDIO[split][i], 2)) + 5
            vision[i, : VISION[split][i]] = rng.normal(size=(VISION[split][i], 3)) + 5
        audio[0, 0, 1] = -np.inf
        part: dict[str, object] = {
            "id": np.array(ids), "raw_text": np.array([f"text of {i}" for i in ids]), "text": text, "text_bert": bert,
            "audio": audio, "vision": vision, "regression_labels": np.array(LABELS[split], np.float32),
            "regression_labels_T": np.array(LABELS[split], np.float32) * 0, "annotations": ["Neutral"] * n,
            "classification_labels": np.zeros(n, np.float32),
        }
        if not aligned:
            part |= {"audio_lengths": AUDIO[split], "vision_lengths": np.array(VISION[split])}
        data[split] = part
    return data


def _ingest(path: Path, url: str) -> IngestSummary:
    cfg = {"store": url, "dataset": {"path": str(path), "layout": "mmsa-pkl"}}
    return run_ingest(PipelineConfig.model_validate(cfg))


def test_ids_map_both_ways() -> None:
    assert split_mmsa_id("03bSnISJMiM$_$11") == ("03bSnISJMiM", "03bSnISJMiM_11")
    assert split_mmsa_id("v1$_$v1_3") == ("v1", "v1_3") and split_mmsa_id("solo") == ("solo", "solo")
    assert mmsa_id("03bSnISJMiM_11", "03bSnISJMiM") == "03bSnISJMiM$_$11"
    for clip_id, video in [("v1_3", "v1"), ("clip9", "clip9"), ("a_b_c", "a_b")]:
        assert split_mmsa_id(mmsa_id(clip_id, video)) == (video, clip_id)


@pytest.mark.parametrize("aligned", [False, True], ids=["unaligned_50", "aligned_50"])
def test_an_official_style_file_becomes_clips_feature_sets_and_a_view(tmp_path: Path, aligned: bool) -> None:
    data = _official(aligned)
    path = tmp_path / ("aligned_50.pkl" if aligned else "unaligned_50.pkl")
    path.write_bytes(pickle.dumps(data, protocol=2).replace(b"numpy._core", b"numpy.core"))  # numpy-1 names
    url = str(tmp_path / "store")
    s = _ingest(path, url)
    assert (s.clips, s.rejects) == (5, 2) and s.reject_reasons == {"duplicate_clip_id": 1, "invalid_label": 1}
    st = FeatureStore.open(url)
    clips = {c["clip_id"]: c for c in st.clips().to_pylist()}
    assert list(clips) == ["vidA_1", "vidA_2", "vidB_1", "vidC_1", "vidE_7"]
    assert clips["vidA_1"]["label"] == -2.4 and clips["vidA_1"]["label_T"] == 0.0  # float32 back to decimals
    assert clips["vidE_7"]["video_id"] == "vidE" and clips["vidC_1"]["split"] == "valid"
    assert clips["vidA_1"]["text"] == "text of vidA$_$1" and clips["vidA_1"]["media_uri"] is None
    assert ("aligned file: every modality has L=6" in s.notes) is aligned
    rejects = st.rejects().to_pylist()
    assert {r["source"] for r in rejects} == {f"{path.name}:valid[1]", f"{path.name}:test[0]"}

    view = open_view(url, "default")
    order = view.clips.column("clip_id").to_pylist()
    assert order == list(clips)
    sample = {"vidA_1": ("train", 0), "vidA_2": ("train", 1), "vidB_1": ("train", 2), "vidC_1": ("valid", 0),
              "vidE_7": ("test", 1)}
    for m, key in (("text", "text"), ("audio", "audio"), ("vision", "vision")):
        values, lengths = np.asarray(view.array(f"{m}/values")), np.asarray(view.array(f"{m}/lengths"))
        present = np.asarray(view.array(f"{m}/present"))
        for r, cid in enumerate(order):
            split, i = sample[cid]
            file_values = np.nan_to_num(np.asarray(data[split][key])[i], neginf=0.0)
            n = {"text": TOKENS, "audio": AUDIO, "vision": VISION}[m][split][i]
            assert lengths[r] == n and present[r] == (n > 0), (m, cid)
            np.testing.assert_array_equal(values[r, :n], file_values[:n])
            assert not values[r, n:].any()  # padding (and BERT's padding states) stay out
    ids = np.asarray(view.array("text_tokens/input_ids"))
    bert = np.asarray(data["train"]["text_bert"])
    np.testing.assert_array_equal(ids[0, :4], bert[0, 0, :4])
    fsets = {st.feature_set(n).attrs["modality"]: st.feature_set(n) for n in st.feature_set_names()}
    assert fsets["audio"].rows()["vidA_1"].meta == {"nonfinite_zeroed": 1}
    assert fsets["vision"].rows()["vidA_2"].absent is not None
    identity = fsets["text"].attrs["identity"]
    assert identity["imported_from"]["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    rule = "last non-zero step" if aligned else "audio_lengths"
    assert fsets["audio"].attrs["config"]["lengths"] == rule
    assert fsets["text"].attrs["config"]["lengths"] == "text_bert attention mask"


def test_a_file_that_is_no_mmsa_feature_dict_is_a_clear_error(tmp_path: Path) -> None:
    for obj, match in [([1, 2], "not an MMSA feature file"), ({"train": {"raw_text": []}}, r"lacks \['id'"),
                       ({"train": {"id": ["a"], "regression_labels": [0.0], "audio": np.zeros((2, 3, 1))}},
                        "'audio' has 2 samples, 'id' has 1"),
                       ({"train": {"id": ["a"], "regression_labels": [0.0], "audio": np.zeros((1, 3))}},
                        r"\[N, L, D\]")]:
        path = tmp_path / "x.pkl"
        path.write_bytes(pickle.dumps(obj))
        with pytest.raises(ManifestError, match=match):
            _ingest(path, str(tmp_path / "s"))
    with pytest.raises(ManifestError, match="no such MMSA feature file"):
        _ingest(tmp_path / "absent.pkl", str(tmp_path / "s"))



# Each once gave a traceback (and the string case a half-written store); now one ManifestError, store untouched.
MALFORMED: dict[str, tuple[str, str, object, str]] = {  # case -> split, key, value, the problem named
    "strings_as_features": ("train", "audio", np.full((3, 5, 2), "x"), r"dtype <U1"),
    "ragged_feature_list": ("train", "text", [np.zeros((k, 4), np.float32) for k in (2, 3, 4)],
                            "its items are not numbers"),
    "no_steps": ("train", "text", np.zeros((3, 0, 4), np.float32), r"shape \(3, 0, 4\): L = 0"),
    "no_dims": ("valid", "vision", np.zeros((2, 4, 0), np.float32), r"shape \(2, 4, 0\): D = 0"),
    "scalar_labels": ("train", "regression_labels", 5, r"shape \(\)"),
    "column_of_labels": ("test", "regression_labels", np.zeros((2, 1)), r"shape \(2, 1\)"),
    "complex_features": ("train", "audio", np.zeros((3, 5, 2), complex), "dtype complex128"),
    "bool_features": ("train", "vision", np.zeros((3, 4, 3), bool), "dtype bool"),
    "none_among_numbers": ("train", "audio", np.array([[[None, 1.0]] * 5] * 3, object), "dtype object"),
    "nan_length": ("train", "audio_lengths", [5, float("nan"), 4], "NaN or infinite values"),
    "text_bert_of_2_rows": ("test", "text_bert", np.ones((2, 2, 6)), r"shape \(2, 2, 6\)"),
    "scalar_id": ("valid", "id", "vidC$_$1", r"shape \(\)"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_key_is_one_error_naming_file_split_and_key_before_anything_is_written(
    tmp_path: Path, case: str
) -> None:
    split, key, value, problem = MALFORMED[case]
    data = _official(aligned=False)
    data[split][key] = value
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(data))
    pattern = rf"^{re.escape(str(path))}: split '{split}': '{key}' is not an? [^(]*\({problem}.*\)$"
    with pytest.raises(ManifestError, match=pattern):
        _ingest(path, str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()  # checked before the store was even created


def test_feature_dims_that_differ_across_splits_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = _official(aligned=False)
    data["valid"]["audio"] = np.zeros((2, 5, 3), np.float32)  # train and test have D = 2
    path = tmp_path / "dims.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(ManifestError, match=r"'audio' has different dims across splits: \[2, 3\]"):
        _ingest(path, str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()  # once found after the clip table was written


KEYS = ["id", "raw_text", "text", "text_bert", "audio", "vision", "audio_lengths", "vision_lengths",
        "regression_labels", "regression_labels_T"]
SHAPE_OF = {(split, key): np.asarray(part[key]).shape
            for split, part in _official(aligned=False).items() for key in KEYS}
objects = st.one_of(st.floats(), st.integers(-9, 9), st.none(), st.booleans(), st.text(max_size=1))
numbers: st.SearchStrategy[np.dtype[Any]] = st.sampled_from([np.dtype(t) for t in ("f4", "f8", "i8")])
others: st.SearchStrategy[np.dtype[Any]] = st.sampled_from([np.dtype(t) for t in ("?", "c8", "U2")])


@st.composite
def replaced(draw: st.DrawFn) -> tuple[str, str, object]:
    """A split, a key, and a value for it: numbers of the key's own shape (of any value: NaN, huge),
    arrays of any dtype of that shape or another, Python objects, nested lists (may be ragged), scalars."""
    split, key = draw(st.sampled_from(list(IDS))), draw(st.sampled_from(KEYS))
    own = SHAPE_OF[split, key]
    shape = st.one_of(st.just(own), st.just((own[0] + 1, *own[1:])), st.just((*own[:-1], 0)),
                      hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    value = draw(st.one_of(hnp.arrays(numbers, own), hnp.arrays(numbers | others, shape),
                           hnp.arrays(np.dtype(object), shape, elements=objects),
                           st.lists(st.lists(st.floats(), max_size=3), max_size=4), objects))
    return split, key, value


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=replaced())
def test_any_value_under_any_key_imports_every_sample_or_is_one_named_error_that_writes_nothing(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, str, object]
) -> None:
    split, key, value = case
    data = _official(aligned=False)
    data[split][key] = value
    tmp = tmp_path_factory.mktemp("any")
    path = tmp / "any.pkl"
    path.write_bytes(pickle.dumps(data))
    try:
        s = _ingest(path, str(tmp / "store"))
    except ManifestError as exc:
        assert str(exc).startswith(f"{path}: ") and f"'{key}'" in str(exc) and "\n" not in str(exc)
        assert not (tmp / "store").exists()
        return
    assert s.clips + s.rejects == sum(map(len, IDS.values()))  # every sample a clip or a named reject


def test_a_missing_label_rejects_its_sample_and_imports_the_others(tmp_path: Path) -> None:
    data = _official(aligned=False)
    path = tmp_path / "base.pkl"
    path.write_bytes(pickle.dumps(data))
    base = _ingest(path, str(tmp_path / "base"))
    labels = list(np.asarray(data["train"]["regression_labels"], np.float64))
    labels[2] = None  # vidB_1, a valid sample of the fixture
    data["train"]["regression_labels"] = np.array(labels, object)
    path = tmp_path / "none.pkl"
    path.write_bytes(pickle.dumps(data))
    summary = _ingest(path, str(tmp_path / "store"))
    assert summary.clips == base.clips - 1
    assert summary.reject_reasons == {**base.reject_reasons, "invalid_label": base.reject_reasons["invalid_label"] + 1}


def test_a_file_whose_every_sample_is_rejected_commits_no_sets_and_builds_no_view(tmp_path: Path) -> None:
    """Before, it committed empty feature sets and failed building the view with "the clip table is
    empty; run `emoflow ingest` first", which is what the user had just done."""
    data = _official(aligned=False)
    for part in data.values():
        part["regression_labels"] = np.array([None] * len(part["regression_labels"]), object)
    path = tmp_path / "unlabelled.pkl"
    path.write_bytes(pickle.dumps(data))
    summary = _ingest(path, str(tmp_path / "store"))
    assert summary.clips == 0 and summary.rejects == sum(map(len, IDS.values()))
    store = FeatureStore.open(str(tmp_path / "store"))
    assert store.feature_set_names() == [] and store.view_names() == []


def test_a_video_id_holding_the_mmsa_separator_cannot_be_exported_and_a_clip_part_may_hold_it() -> None:
    """A reader splits an id at its first ``$_$``: such a video id would come back as another clip."""
    with pytest.raises(StoreError, match=r"clip 'a\$_\$b_1': its video id 'a\$_\$b' contains"):
        mmsa_id("a$_$b_1", "a$_$b")
    assert split_mmsa_id(mmsa_id("v_x$_$y", "v")) == ("v", "v_x$_$y")
