"""MELD layout: the official CSVs (shared train/dev) become clips with emotion and sentiment classes,
mojibake repaired and recorded, media found when present, every bad row a named reject."""

from __future__ import annotations

import collections
import csv
import io
from pathlib import Path

import ftfy.bad_codecs  # noqa: F401 - registers "sloppy-windows-1252", to make MELD's mojibake again
import pytest

from corpora.fields import FieldError, parse_class, parse_timestamp, repair_text
from corpora.ingest import IngestResult, ingest
from corpora.layouts.detect import detect_layout
from corpora.layouts.meld import MELD_EMOTIONS, MELD_SENTIMENTS
from corpora.synth import write_clip
from stages.config import PipelineConfig
from stages.ingest import run_ingest, store_ingest
from store import FeatureStore
from store.errors import ManifestError

HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
          "Season", "Episode", "StartTime", "EndTime"]
MOJIBAKE = ("â€", "Ã", "Â")  # UTF-8 read as Windows-1252: what an unrepaired ’ … — é look like


def _row(n: int, text: str = "Hi.", emotion: str = "joy", sentiment: str = "positive", d: object = 0,
         u: object = None, start: str = "00:14:38,127", end: str = "00:14:40,000") -> list[object]:
    return [n, text, "Ross", emotion, sentiment, d, n - 1 if u is None else u, 4, 7, start, end]


def _meld_csv(path: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text("utf-8-sig"), newline="")))


# -- the shared MELD files ------------------------------------------------------------------
@pytest.fixture(scope="module")
def meld(shared_data: Path) -> Path:
    return shared_data / "meld"


@pytest.fixture(scope="module")
def meld_result(meld: Path) -> IngestResult:
    """The shared train and dev CSVs ingested once (the folder, auto-detected)."""
    return ingest(meld)


@pytest.mark.shared_data
def test_shared_meld_train_and_dev_ingest_every_row_with_ids_splits_and_classes(
    meld: Path, meld_result: IngestResult
) -> None:
    train, dev = _csv_rows(meld / "train_sent_emo.csv"), _csv_rows(meld / "dev_sent_emo.csv")
    assert detect_layout(meld) == detect_layout(meld / "train_sent_emo.csv") == "meld"
    result = meld_result
    assert result.layout == "meld"
    assert result.n_clips + result.n_rejects == len(train) + len(dev) == 9989 + 1109
    assert result.n_rejects == 0, result.rejects.to_pylist()[:5]
    clips = result.clips.to_pylist()
    assert collections.Counter(c["split"] for c in clips) == {"train": 9989, "valid": 1109}
    by_id = {c["clip_id"]: c for c in clips}
    assert len(by_id) == len(clips)  # dialogue numbers restart per part: the part prefix keeps ids unique
    for part, split, rows in (("train", "train", train), ("dev", "valid", dev)):
        for r in rows:
            clip = by_id[f"{part}_dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}"]
            assert clip["video_id"] == f"{part}_dia{r['Dialogue_ID']}" and clip["split"] == split
            assert (clip["label_emotion"], clip["label_sentiment"]) == (r["Emotion"], r["Sentiment"])
        expected = collections.Counter(r["Emotion"] for r in rows)
        assert collections.Counter(c["label_emotion"] for c in clips if c["split"] == split) == expected
    assert {c["label_emotion"] for c in clips} == MELD_EMOTIONS
    assert {c["label_sentiment"] for c in clips} == MELD_SENTIMENTS
    assert all(c["label"] is None for c in clips)  # MELD has no score and none is invented
    assert all(c["media_uri"] is None and not c["has_video"] for c in clips)  # no video shipped here
    first = by_id["train_dia0_utt0"]
    assert first["text"].startswith("also I was the point person on my company’s transition")
    assert (first["start"], first["end"]) == pytest.approx((976.059, 981.731))  # 00:16:16,059 - 00:16:21,731
    assert first["duration"] == pytest.approx(5.672)


@pytest.mark.shared_data
def test_shared_meld_text_has_no_mojibake_and_every_repair_is_recorded(meld: Path, meld_result: IngestResult) -> None:
    """This snapshot of MELD is valid UTF-8 (’ as e2 80 99): read as UTF-8 it shows no ``â€™``, so
    nothing needs repair; every clip either kept its text or records the text as shipped."""
    clips = meld_result.clips.to_pylist()
    assert not [c["clip_id"] for c in clips if any(m in c["text"] for m in MOJIBAKE)]
    assert sum("’" in c["text"] for c in clips) > 2500  # the apostrophes are there, as real ’
    for c in clips:
        original = c["text_original"]
        assert original is None or (original != c["text"] and repair_text(original) == c["text"])
    shipped = [r["Utterance"] for f in ("train_sent_emo.csv", "dev_sent_emo.csv") for r in _csv_rows(meld / f)]
    assert sum(c["text_original"] is not None for c in clips) == sum(repair_text(t) != t for t in shipped) == 0


@pytest.mark.shared_data
def test_shared_meld_dev_as_windows_1252_mojibake_is_repaired_and_recorded(meld: Path, tmp_path: Path) -> None:
    """MELD's dev CSV as copies that went through Windows-1252 carry it (``heâ€™s``): ingest gives
    the same clips (text and fingerprints) and keeps the text as shipped in ``text_original``."""
    clean = ingest(meld / "dev_sent_emo.csv")
    broken = (meld / "dev_sent_emo.csv").read_bytes().decode("utf-8").encode("utf-8").decode("sloppy-windows-1252")
    assert "â€™" in broken
    (tmp_path / "dev_sent_emo.csv").write_text(broken, encoding="utf-8", newline="")
    assert detect_layout(tmp_path / "dev_sent_emo.csv") == "meld"
    repaired = ingest(tmp_path / "dev_sent_emo.csv")
    assert repaired.n_rejects == 0 and repaired.n_clips == clean.n_clips == 1109
    for fixed, ref in zip(repaired.clips.to_pylist(), clean.clips.to_pylist(), strict=True):
        assert fixed["text"] == ref["text"] and fixed["clip_fingerprint"] == ref["clip_fingerprint"]
        shipped = None if ref["text"].isascii() else ref["text"].encode().decode("sloppy-windows-1252")
        assert fixed["text_original"] == shipped
    n_repaired = sum(c["text_original"] is not None for c in repaired.clips.to_pylist())
    assert n_repaired == sum(not c["text"].isascii() for c in clean.clips.to_pylist()) == 308


@pytest.mark.shared_data
def test_shared_meld_store_keeps_the_class_labels(meld: Path, tmp_path: Path) -> None:
    summary = store_ingest(str(tmp_path / "store"), ingest(meld / "dev_sent_emo.csv"))
    assert (summary.clips, summary.rejects, summary.layout) == (1109, 0, "meld")
    clips = FeatureStore.open(tmp_path / "store").clips()
    assert clips.column("label_emotion").null_count == 0 and clips.column("label").null_count == 1109


# -- crafted MELD files ---------------------------------------------------------------------
def test_meld_layout_through_the_ingest_stage_config(tmp_path: Path) -> None:
    _meld_csv(tmp_path / "data" / "dev_sent_emo.csv", [_row(1, u=0), _row(2, u=1)])
    config = PipelineConfig(store=str(tmp_path / "store"), dataset={"path": str(tmp_path / "data"), "layout": "meld"})
    summary = run_ingest(config)
    assert (summary.clips, summary.rejects, summary.layout) == (2, 0, "meld")


def test_crafted_meld_with_clips_in_the_meld_raw_folder_gets_media(tmp_path: Path) -> None:
    csv_path = _meld_csv(tmp_path / "train_sent_emo.csv", [_row(1, d=3, u=0), _row(2, d=3, u=1), _row(3, d=3, u=2)])
    (tmp_path / "train_splits").mkdir()
    write_clip(tmp_path / "train_splits" / "dia3_utt0.mp4", seconds=1.0)
    write_clip(tmp_path / "train_splits" / "dia3_utt1.mp4", seconds=1.5, video=False)
    result = ingest(csv_path)  # auto: detected from the header
    assert result.layout == "meld"
    clips = {c["clip_id"]: c for c in result.clips.to_pylist()}
    assert set(clips) == {"train_dia3_utt0", "train_dia3_utt1"}
    a, b = clips["train_dia3_utt0"], clips["train_dia3_utt1"]
    assert a["media_uri"] == str((tmp_path / "train_splits" / "dia3_utt0.mp4").resolve())
    assert a["has_video"] and a["has_audio"] and not b["has_video"] and b["has_audio"]
    assert a["start"] is None and a["end"] is None  # the cut clip is the whole file, not the episode span
    assert a["duration"] == pytest.approx(1.0, abs=0.1) and b["duration"] == pytest.approx(1.5, abs=0.1)
    assert a["media_fingerprint"] and a["video_id"] == "train_dia3"
    [reject] = result.rejects.to_pylist()  # the folder exists but lacks this clip: a named reject
    assert (reject["clip_id"], reject["reason"]) == ("train_dia3_utt2", "missing_file")


def test_meld_clips_next_to_a_lone_csv_are_found_but_not_next_to_several(tmp_path: Path) -> None:
    lone = tmp_path / "lone"
    _meld_csv(lone / "dev_sent_emo.csv", [_row(1, u=0)])
    write_clip(lone / "dia0_utt0.mp4", seconds=1.0)
    [clip] = ingest(lone / "dev_sent_emo.csv").clips.to_pylist()
    assert clip["clip_id"] == "dev_dia0_utt0" and clip["split"] == "valid" and clip["has_video"]
    shared = tmp_path / "shared"  # train's and dev's dia0_utt0.mp4 cannot both lie here: text only
    _meld_csv(shared / "train_sent_emo.csv", [_row(1, u=0)])
    _meld_csv(shared / "dev_sent_emo.csv", [_row(1, u=0)])
    write_clip(shared / "dia0_utt0.mp4", seconds=1.0)
    result = ingest(shared)
    assert result.layout == "meld" and result.n_rejects == 0
    assert [(c["clip_id"], c["split"], c["media_uri"]) for c in result.clips.to_pylist()] == [
        ("train_dia0_utt0", "train", None), ("dev_dia0_utt0", "valid", None)]


def test_meld_bad_rows_are_named_rejects(tmp_path: Path) -> None:
    rows = [
        _row(1, text="heâ€™s fine", u=0),  # good, mojibake repaired
        _row(2, text="he\x92s fine", u=1),  # good, stray C1 control (cp1252 ’) repaired
        _row(3, emotion="happiness", u=2),  # not one of MELD's 7 emotions
        _row(4, sentiment="mixed", u=3),
        _row(5, emotion="", u=4),
        _row(6, start="00:14:38.127x", u=5),  # times that are not H:MM:SS,mmm
        _row(7, start="00:61:00,000", u=6),
        _row(8, end="", u=7),
        _row(9, start="00:14:41,000", u=8),  # starts after it ends
        _row(10, d="x", u=9),
        _row(11, u=0),  # dia0_utt0 again
        _row(12, emotion="Neutral", sentiment=" NEUTRAL ", u=10),  # good: class names compare in lower case
    ]
    path = _meld_csv(tmp_path / "train_sent_emo.csv", rows)
    with path.open("a", newline="") as f:
        f.write("13,short row,Ross\r\n")
    result = ingest(path)
    assert result.n_clips + result.n_rejects == len(rows) + 1
    clips = {c["clip_id"]: c for c in result.clips.to_pylist()}
    assert set(clips) == {"train_dia0_utt0", "train_dia0_utt1", "train_dia0_utt10"}
    for cid, shipped in (("train_dia0_utt0", "heâ€™s fine"), ("train_dia0_utt1", "he\x92s fine")):
        assert clips[cid]["text"] == "he’s fine" and clips[cid]["text_original"] == shipped
    assert clips["train_dia0_utt10"]["text_original"] is None
    lower = clips["train_dia0_utt10"]
    assert (lower["label_emotion"], lower["label_sentiment"]) == ("neutral", "neutral")
    assert clips["train_dia0_utt0"]["start"] == pytest.approx(878.127)
    reasons = [(r["clip_id"], r["reason"]) for r in result.rejects.to_pylist()]
    assert reasons == [
        ("train_dia0_utt2", "invalid_label"),
        ("train_dia0_utt3", "invalid_label"),
        ("train_dia0_utt4", "invalid_label"),
        ("train_dia0_utt5", "invalid_window"),
        ("train_dia0_utt6", "invalid_window"),
        ("train_dia0_utt7", "invalid_window"),
        ("train_dia0_utt8", "invalid_window"),
        ("train_diax_utt9", "invalid_id"),
        ("train_dia0_utt0", "duplicate_clip_id"),
        ("", "invalid_row"),
    ]
    messages = {r["clip_id"]: r["message"] for r in result.rejects.to_pylist()}
    emotions = "anger, disgust, fear, joy, neutral, sadness, surprise"
    assert f"'happiness' is not one of {emotions}" in messages["train_dia0_utt2"]
    assert "00:14:38.127x" in messages["train_dia0_utt5"]


def test_meld_split_from_a_column_else_the_file_name_else_an_error(tmp_path: Path) -> None:
    header = [*HEADER, "split"]
    path = _meld_csv(tmp_path / "friends.csv", [[*_row(1, u=0), "test"], [*_row(2, u=1), "dev"], [*_row(3, u=2), "x"]],
                     header)
    result = ingest(path, layout="meld")
    assert [(c["clip_id"], c["split"]) for c in result.clips.to_pylist()] == [
        ("test_dia0_utt0", "test"), ("dev_dia0_utt1", "valid")]
    assert result.rejects.column("reason").to_pylist() == ["invalid_split"]
    nameless = _meld_csv(tmp_path / "friends2.csv", [_row(1)])
    with pytest.raises(ManifestError, match="cannot tell the MELD split"):
        ingest(nameless, layout="meld")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no MELD CSV"):
        ingest(tmp_path / "empty", layout="meld")


def test_meld_header_is_detected_with_spaces_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "test_sent_emo.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ", ".join(HEADER).encode() + b"\r\n"
                     + b'1,"Oh, no.",Monica,fear,negative,0,0,4,7,"0:20:57,256","0:21:00,049"\r\n')
    assert detect_layout(path) == "meld"
    [clip] = ingest(path).clips.to_pylist()
    got = (clip["clip_id"], clip["split"], clip["label_emotion"], clip["text"])
    assert got == ("test_dia0_utt0", "test", "fear", "Oh, no.")
    assert clip["duration"] == pytest.approx(2.793)


# -- the grammar pieces ---------------------------------------------------------------------
@pytest.mark.parametrize(("value", "seconds"), [
    ("00:14:38,127", 878.127), ("0:36:59,425", 2219.425), ("1:00:00.5", 3600.5), (" 00:00:01 ", 1.0), ("", None),
])
def test_parse_timestamp_reads_srt_times(value: str, seconds: float | None) -> None:
    assert parse_timestamp(value, "t", "r") == (None if seconds is None else pytest.approx(seconds))


@pytest.mark.parametrize("value", ["00:14:38,1270", "00:60:00,000", "14:38", "١:00:00,000", "-0:00:01,000", 5, "nan",
                                   "25:00:00,000"])
def test_parse_timestamp_rejects_everything_else(value: object) -> None:
    with pytest.raises(FieldError) as err:
        parse_timestamp(value, "StartTime", "invalid_window")
    assert err.value.reason == "invalid_window"


def test_parse_class_names() -> None:
    assert parse_class(" Joy ", "e", "r") == "joy" and parse_class(None, "e", "r") is None
    assert parse_class("neu", "e", "r", {"neu", "ang"}) == "neu"
    for bad in ("joy!", "2joy", "", "x" * 33, 3, "jóy"):
        if bad == "":
            assert parse_class(bad, "e", "r") is None
            continue
        with pytest.raises(FieldError):
            parse_class(bad, "e", "r")
    with pytest.raises(FieldError, match="not one of ang, neu"):
        parse_class("joy", "e", "r", {"neu", "ang"})


def test_repair_text_fixes_mojibake_only() -> None:
    assert repair_text("Itâ€™s â€œfineâ€\x9d â€¦ naÃ¯ve") == "It’s “fine” … naïve"
    for kept in ("It’s “fine” … naïve", "don't &amp; ﬁ ｆｕｌｌ", "Café", "你好，世界", "bad \udcff byte"):
        assert repair_text(kept) == kept  # curly quotes, entities, ligatures, widths, CJK, undecodable bytes
