"""Importing official-style MMSA pickles (built here as MMSA writes them): ids, rejects, the
length rules, BERT padding states, -inf audio, absent modalities, aligned and unaligned files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from interop.mmsa import mmsa_id, split_mmsa_id
from stages.config import PipelineConfig
from stages.ingest import IngestSummary, run_ingest
from store import FeatureStore, open_view
from store.errors import ManifestError

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
            file_values = np.nan_to_num(np.asarray(data[split][key])[i], neginf=0.0)  # type: ignore[call-overload]
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
                        "'audio' has 2 samples, id has 1"),
                       ({"train": {"id": ["a"], "regression_labels": [0.0], "audio": np.zeros((1, 3))}},
                        r"\[N, L, D\]")]:
        path = tmp_path / "x.pkl"
        path.write_bytes(pickle.dumps(obj))
        with pytest.raises(ManifestError, match=match):
            _ingest(path, str(tmp_path / "s"))
    with pytest.raises(ManifestError, match="no such MMSA feature file"):
        _ingest(tmp_path / "absent.pkl", str(tmp_path / "s"))
