"""Class labels in the clip table (``label_emotion``, ``label_sentiment``) and ``text_original``:
class-only datasets through the manifest (IEMOCAP's way in), SIMS-style unimodal labels, and no
change for what existed before (fingerprints, older stores)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpora.ingest import ingest
from corpora.synth import generate_dataset
from stages.ingest import store_ingest
from store import FeatureStore, schema
from store.errors import ManifestError
from store.fingerprint import clip_fingerprint, hash_obj

NEW_COLUMNS = ("label_emotion", "label_sentiment", "text_original")
OLD_KEYS = ("clip_id", "media_fingerprint", "start", "end", "text", "words", "label", "split")


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_clip_fingerprint_of_a_clip_without_classes_is_what_it_was() -> None:
    clip = {"clip_id": "v_0001", "media_fingerprint": "ab" * 32, "start": 1.5, "end": 4.25, "text": "a fine film",
            "words": [{"word": "a", "start": 0.0, "end": 0.3}], "label": 1.2, "split": "train", "label_T": 0.4}
    golden = "1a290b470fb7eff3f691f6d47d53f6ad"  # store.fingerprint.clip_fingerprint before class labels existed
    assert clip_fingerprint(clip) == golden
    assert clip_fingerprint({**clip, "label_emotion": None, "label_sentiment": None, "text_original": "x"}) == golden
    assert clip_fingerprint({**clip, "label_emotion": "joy"}) != golden  # a class is part of what a clip says
    positive, neutral = ({**clip, "label_sentiment": s} for s in ("positive", "neutral"))
    assert clip_fingerprint(positive) != clip_fingerprint(neutral)


@pytest.mark.parametrize("layout", ["manifest", "mmsa", "mosi"])
def test_existing_layouts_keep_their_fingerprints_and_leave_the_new_columns_null(tmp_path: Path, layout: str) -> None:
    generate_dataset(tmp_path, n_clips=3, seed=5, layout=layout)
    result = ingest(tmp_path)
    assert result.n_clips == 3 and result.n_rejects == 0
    for row in result.clips.to_pylist():
        assert row["clip_fingerprint"] == hash_obj({k: row[k] for k in OLD_KEYS})
        assert all(row[c] is None for c in NEW_COLUMNS)


def test_a_store_written_before_the_new_columns_reads_with_them_null_and_is_not_rewritten(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(data, n_clips=3, seed=5, layout="manifest")
    result = ingest(data)
    store_url = str(tmp_path / "store")
    store = FeatureStore.open(store_url, create=True)
    old_schema = pa.schema([f for f in schema.CLIPS if f.name not in NEW_COLUMNS])
    pq.write_table(result.clips.select(old_schema.names).cast(old_schema), tmp_path / "store" / "clips.parquet")
    clips = store.clips()
    assert clips.schema == schema.CLIPS and clips.num_rows == 3
    assert all(clips.column(c).null_count == 3 for c in NEW_COLUMNS)
    summary = store_ingest(store_url, result)
    assert not summary.changed  # same fingerprints: the older file is kept, and still reads
    assert pq.read_schema(tmp_path / "store" / "clips.parquet").names == old_schema.names


def test_iemocap_style_manifest_with_class_labels_only(tmp_path: Path) -> None:
    """IEMOCAP's way in (docs/datasets.md): a manifest with ``label_emotion`` and no score."""
    header = ["clip_id", "video_id", "media", "start", "end", "text", "label_emotion", "split"]
    _csv(tmp_path / "manifest.csv", header, [
        ["Ses01F_impro01_F000", "Ses01F_impro01", "", "", "", "Excuse me.", "neu", "train"],
        ["Ses01F_impro01_F001", "Ses01F_impro01", "", "", "", "Do you have your forms?", "Ang", "train"],
        ["Ses05M_script01_M002", "Ses05M_script01", "", "1.0", "3.5", "I know.", "hap", "test"],
        ["Ses01F_impro01_F002", "Ses01F_impro01", "", "", "", "Yeah.", "", "train"],  # no score, no class
        ["Ses01F_impro01_F003", "Ses01F_impro01", "", "", "", "Ok.", "x?", "train"],  # not a class name
    ])
    result = ingest(tmp_path)
    assert result.layout == "manifest"
    rows = {r["clip_id"]: r for r in result.clips.to_pylist()}
    assert {k: (r["label_emotion"], r["label"], r["split"]) for k, r in rows.items()} == {
        "Ses01F_impro01_F000": ("neu", None, "train"),
        "Ses01F_impro01_F001": ("ang", None, "train"),
        "Ses05M_script01_M002": ("hap", None, "test"),
    }
    assert rows["Ses05M_script01_M002"]["duration"] == pytest.approx(2.5)
    assert [(r["clip_id"], r["reason"]) for r in result.rejects.to_pylist()] == [
        ("Ses01F_impro01_F002", "invalid_label"), ("Ses01F_impro01_F003", "invalid_label")]
    assert "label is missing" in result.rejects.column("message")[0].as_py()


def test_manifest_with_score_and_classes_and_jsonl(tmp_path: Path) -> None:
    lines = [
        {"clip_id": "a", "media": None, "text": "good", "label": 2.0, "label_sentiment": "positive", "split": "train"},
        {"clip_id": "b", "media": None, "text": "bad", "label_sentiment": "negative", "label_emotion": "anger",
         "split": "valid"},
        {"clip_id": "c", "media": None, "text": "meh", "split": "valid"},  # no label field at all
        {"clip_id": "d", "media": None, "text": "odd", "label_emotion": 3, "split": "valid"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    result = ingest(path)
    rows = {r["clip_id"]: r for r in result.clips.to_pylist()}
    assert (rows["a"]["label"], rows["a"]["label_sentiment"], rows["a"]["label_emotion"]) == (2.0, "positive", None)
    assert (rows["b"]["label"], rows["b"]["label_sentiment"], rows["b"]["label_emotion"]) == (None, "negative", "anger")
    assert [(r["clip_id"], r["reason"]) for r in result.rejects.to_pylist()] == [
        ("c", "missing_value"), ("d", "invalid_label")]


def test_manifest_csv_without_a_score_or_class_column_is_refused_whole(tmp_path: Path) -> None:
    path = _csv(tmp_path / "manifest.csv", ["clip_id", "media", "text", "split"], [["a", "", "hi", "train"]])
    with pytest.raises(ManifestError, match=r"missing columns \['label'\]"):  # as before class labels
        ingest(path)


def test_sims_style_label_csv_brings_chinese_text_and_unimodal_labels_to_the_clip_table(tmp_path: Path) -> None:
    """CH-SIMS / SIMS v2 ``label.csv`` (MMSA layout, text only without Raw/): the unimodal labels
    label_T/A/V reach the clip table and the store; ``annotation`` stays what it was (unread)."""
    header = ["video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode"]
    _csv(tmp_path / "label.csv", header, [
        ["video_0001", "0001", "我不想跟你说话了。", "-0.8", "-0.6", "-1.0", "-0.8", "Negative", "train"],
        ["video_0001", "0002", "太好了，谢谢你！", "0.6", "0.8", "0.4", "0.2", "Positive", "valid"],
        ["video_0002", "0001", "嗯。", "0.0", "0.0", "-0.2", "0.2", "Neutral", "test"],
        ["video_0002", "0002", "还行吧", "0.2", "1.5", "0.0", "0.0", "Positive", "test"],  # outside SIMS' [-1, 1]: kept
        ["video_0002", "0003", "坏", "-0.4", "-4", "0.0", "0.0", "Negative", "test"],  # outside [-3, 3]: rejected
    ])
    result = ingest(tmp_path)
    assert result.layout == "mmsa"
    rows = {r["clip_id"]: r for r in result.clips.to_pylist()}
    assert set(rows) == {"video_0001_0001", "video_0001_0002", "video_0002_0001", "video_0002_0002"}
    first = rows["video_0001_0001"]
    assert first["text"] == "我不想跟你说话了。" and first["video_id"] == "video_0001" and first["media_uri"] is None
    assert (first["label"], first["label_T"], first["label_A"], first["label_V"]) == (-0.8, -0.6, -1.0, -0.8)
    assert [rows[k]["split"] for k in sorted(rows)] == ["train", "valid", "test", "test"]
    assert all(r["label_emotion"] is None and r["label_sentiment"] is None for r in rows.values())
    [reject] = result.rejects.to_pylist()
    assert (reject["clip_id"], reject["reason"]) == ("video_0002_0003", "invalid_label")
    assert "label_T -4 is outside [-3, 3]" in reject["message"]
    store_ingest(str(tmp_path / "store"), result)
    stored = FeatureStore.open(tmp_path / "store").clips().to_pylist()
    assert [(r["clip_id"], r["label_T"], r["label_A"], r["label_V"]) for r in stored] == [
        (r["clip_id"], r["label_T"], r["label_A"], r["label_V"]) for r in result.clips.to_pylist()]
