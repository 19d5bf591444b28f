"""Ingest on hostile rows: every row ends as a clip or a named reject, values follow one grammar,
and ids that would build a path outside the dataset root are rejected before any file is opened."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from corpora.ingest import ingest
from corpora.synth import generate_dataset, write_clip
from store.errors import ManifestError
from store.fingerprint import clip_fingerprint, hash_obj

GOOD = {"clip_id": "good", "media": "m/good.mp4", "text": "a fine film", "label": 1.0, "split": "train"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset root with one real 3 s clip (H.264 + AAC)."""
    r = tmp_path_factory.mktemp("grammar")
    (r / "m").mkdir()
    write_clip(r / "m" / "good.mp4", seconds=3.0)
    return r


def _jsonl(root: Path, name: str, lines: list[bytes]) -> Path:
    path = root / name
    path.write_bytes(b"\n".join([json.dumps(GOOD).encode(), *lines]) + b"\n")
    return path


def _row(**fields: Any) -> bytes:
    return json.dumps({**GOOD, "clip_id": "bad", **fields}, ensure_ascii=False).encode("utf-8", "surrogatepass")


# Each case once gave a traceback and nothing ingested (issue 12 §1); now: one named reject.
CRASHES = {
    "clip_id_not_utf8": (
        b'{"clip_id": "bad\xff", "media": "", "text": "x", "label": 1, "split": "train"}', "invalid_id"
    ),
    "video_id_not_utf8": (
        b'{"clip_id": "bad", "video_id": "v\xff", "media": "", "text": "x", "label": 1, "split": "train"}', "invalid_id"
    ),
    "media_name_not_utf8": (
        b'{"clip_id": "bad", "media": "m/b\xff.mp4", "text": "x", "label": 1, "split": "train"}', "invalid_path"
    ),
    "clip_id_lone_surrogate_escape": (
        b'{"clip_id": "bad\\ud800", "media": "", "text": "x", "label": 1, "split": "train"}', "invalid_id"
    ),
    "line_is_a_number": (b"5", "invalid_row"),
    "line_is_null": (b"null", "invalid_row"),
    "line_is_a_list": (b"[1, 2]", "invalid_row"),
    "line_is_not_json": (b"{clip_id: bad", "invalid_row"),
    "start_is_a_list": (_row(start=[1]), "invalid_window"),
    "label_T_is_a_list": (_row(label_T=[1]), "invalid_label"),
    "words_is_a_number": (_row(words=7), "invalid_words"),
    "text_is_an_object": (_row(text={"a": 1}), "invalid_text_encoding"),
    "nul_in_media_path": (_row(media="a\u0000.mp4"), "invalid_path"),
    "missing_fields": (b'{"clip_id": "bad"}', "missing_value"),
    "huge_integer_label": (_row(label=10**400), "invalid_label"),
    "deeply_nested_json": (b"[" * 100_000 + b"]" * 100_000, "invalid_row"),
}


@pytest.mark.parametrize("case", sorted(CRASHES))
def test_one_bad_jsonl_row_is_rejected_by_name_and_the_good_row_is_kept(root: Path, case: str) -> None:
    line, reason = CRASHES[case]
    result = ingest(_jsonl(root, f"{case}.jsonl", [line]))
    assert result.clips.column("clip_id").to_pylist() == ["good"]
    [rej] = result.rejects.to_pylist()
    assert rej["reason"] == reason, rej["message"]
    assert rej["source"] == f"{case}.jsonl:2" and rej["message"]


# Python accepts these values; a dataset must not (issue 12 §2).
SILENT: dict[str, tuple[dict[str, Any], str]] = {
    "start_nan_string": (dict(start="nan", end=2.0), "invalid_window"),
    "end_NaN_literal": (dict(end=float("nan")), "invalid_window"),
    "end_infinity": (dict(media="", end="inf"), "invalid_window"),
    "end_1e308": (dict(media="", end=1e308), "invalid_window"),
    "start_true": (dict(start=True, end=2.0), "invalid_window"),
    "negative_start": (dict(start=-1.0, end=2.0), "invalid_window"),
    "label_digit_separator": (dict(label="0.0_1"), "invalid_label"),
    "label_arabic_indic_digit": (dict(label="٣"), "invalid_label"),
    "label_hex": (dict(label="0x1"), "invalid_label"),
    "label_true": (dict(label=True), "invalid_label"),
    "label_null": (dict(label=None), "invalid_label"),
    "clip_id_null": (dict(clip_id=None), "missing_value"),
    "clip_id_float": (dict(clip_id=1.5), "invalid_id"),
    "clip_id_with_newline": (dict(clip_id="a\nb"), "invalid_id"),
    "negative_word_times": (dict(words=[{"word": "a", "start": -5.0, "end": 0.5}]), "invalid_words"),
    "word_times_past_the_clip": (dict(words=[{"word": "a", "start": 1.0, "end": 300.0}]), "invalid_words"),
    "word_times_past_the_window": (
        dict(start=0.0, end=1.0, words=[{"word": "a", "start": 0.5, "end": 2.0}]), "invalid_words"
    ),
    "word_time_nan": (dict(words=[{"word": "a", "start": "nan", "end": 1.0}]), "invalid_words"),
    "word_not_a_string": (dict(words=[{"word": 3, "start": 0.0, "end": 1.0}]), "invalid_words"),
    "split_as_number": (dict(split=1), "invalid_split"),
}


@pytest.mark.parametrize("case", sorted(SILENT))
def test_values_outside_the_grammar_are_rejected_not_converted(root: Path, case: str) -> None:
    fields, reason = SILENT[case]
    line = json.dumps({**GOOD, "clip_id": "bad", **fields}, ensure_ascii=False).encode()
    result = ingest(_jsonl(root, f"{case}.jsonl", [line]))
    assert result.n_clips == 1 and result.n_rejects == 1
    rej = result.rejects.to_pylist()[0]
    assert rej["reason"] == reason, rej["message"]


def test_accepted_clips_have_finite_ordered_windows_and_word_times_clamped_inside_the_clip(root: Path) -> None:
    words = [{"word": "early", "start": -0.1, "end": 0.4}, {"word": "late", "start": 0.8, "end": 1.1}]
    lines = [
        json.dumps({**GOOD, "clip_id": "window", "start": " 0.5 ", "end": "1.5", "words": words}).encode(),
        json.dumps({**GOOD, "clip_id": "exp", "start": "5e-1", "end": 2, "label": "-2.5E0"}).encode(),
        json.dumps({**GOOD, "clip_id": "text_only", "media": "", "end": 4.0}).encode(),
    ]
    clips = {c["clip_id"]: c for c in ingest(_jsonl(root, "ok.jsonl", lines)).clips.to_pylist()}
    assert set(clips) == {"good", "window", "exp", "text_only"}
    assert (clips["window"]["start"], clips["window"]["end"], clips["window"]["duration"]) == (0.5, 1.5, 1.0)
    assert clips["window"]["words"] == [{"word": "early", "start": 0.0, "end": 0.4},
                                        {"word": "late", "start": 0.8, "end": 1.0}]
    assert clips["exp"]["start"] == 0.5 and clips["exp"]["label"] == -2.5
    assert clips["text_only"]["duration"] == 4.0 and clips["text_only"]["media_uri"] is None


def test_clip_ids_are_trimmed_and_unique_regardless_of_case(root: Path) -> None:
    lines = [json.dumps({**GOOD, "clip_id": cid}).encode() for cid in (" good ", "GOOD", "Good\t", "other ")]
    result = ingest(_jsonl(root, "ids.jsonl", lines))
    assert result.clips.column("clip_id").to_pylist() == ["good", "other"]
    assert result.rejects.column("reason").to_pylist() == ["duplicate_clip_id"] * 3
    assert all("first occurrence 'good' kept" in m for m in result.rejects.column("message").to_pylist())


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    "name, header",
    [
        ("quoted.csv", '"clip_id","media","text","label","split"'),
        ("spaced.csv", ' clip_id, "media", text ,label,split'),
        ("bom.csv", "\ufeffclip_id,media,text,label,split"),
    ],
)
def test_csv_header_spellings_are_read_as_the_manifest_layout(root: Path, name: str, header: str) -> None:
    result = ingest(_csv(root / name, header, ["good,m/good.mp4,a fine film,1,train"]))
    assert result.layout == "manifest" and result.clips.column("clip_id").to_pylist() == ["good"]


def test_upper_case_jsonl_suffix_is_a_manifest(root: Path) -> None:
    result = ingest(_jsonl(root, "MANIFEST.JSONL", []))
    assert result.layout == "manifest" and result.n_clips == 1


def test_csv_rows_with_the_wrong_number_of_fields_are_rejected_alone(root: Path) -> None:
    path = _csv(root / "ragged.csv", "clip_id,media,text,label,split",
                ["good,m/good.mp4,fine,1,train", "extra,m/good.mp4,fine,1,train,surplus", "short,m/good.mp4"])
    result = ingest(path)
    assert result.clips.column("clip_id").to_pylist() == ["good"]
    assert result.rejects.column("reason").to_pylist() == ["invalid_row", "invalid_row"]
    assert result.rejects.column("source").to_pylist() == ["ragged.csv:3", "ragged.csv:4"]


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n"])
def test_an_empty_manifest_is_a_manifest_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    for name in ("manifest.csv", "manifest.jsonl"):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ManifestError, match=rf"{name}: the manifest is empty"):
            ingest(tmp_path / name)


def test_a_csv_header_of_neither_layout_is_a_manifest_error_naming_both(tmp_path: Path) -> None:
    path = _csv(tmp_path / "odd.csv", "a,b,c", ["1,2,3"])
    with pytest.raises(ManifestError, match=r"odd\.csv: cannot tell the layout"):
        ingest(path)


def test_utf16_manifest_is_decoded(root: Path) -> None:
    path = root / "utf16.csv"
    path.write_bytes("clip_id,media,text,label,split\ngood,m/good.mp4,café,1,train\n".encode("utf-16"))
    [clip] = ingest(path).clips.to_pylist()
    assert clip["text"] == "café"


def test_mosi_video_id_escaping_the_root_is_rejected_before_any_file_is_opened(tmp_path: Path) -> None:
    root = tmp_path / "mosi"
    generate_dataset(root, n_clips=4, seed=2, layout="mosi")
    # an unparseable words file waits where the escaping id points: opening it would reject as invalid_words
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "leak.json").write_bytes(b"\xff{not json")
    (outside / "leak.annotprocessed").write_bytes(b"1_DELIM_secret text\n")
    (root / "Video" / "Full" / "broken.mp4").write_bytes(b"")
    with (root / "segments.csv").open("a", newline="") as f:
        w = csv.writer(f)
        w.writerow(["../../../outside/leak", "1", 0.0, 1.0, 0.5])
        w.writerow(["a/b", "1", 0.0, 1.0, 0.5])
        w.writerow(["..", "1", 0.0, 1.0, 0.5])
    result = ingest(root)
    assert result.n_clips == 4
    rejects = result.rejects.to_pylist()
    assert [r["reason"] for r in rejects] == ["path_escapes_root"] * 3
    assert "../../../outside/leak" in rejects[0]["message"]


def test_mosi_unparseable_word_timings_reject_that_videos_rows_only(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path, n_clips=6, seed=4, layout="mosi")
    victim = data.video_ids[0]
    (tmp_path / "Transcript" / "Words" / f"{victim}.json").write_bytes(b"{broken")
    result = ingest(tmp_path)
    n_victim = sum(c.video_id == victim for c in data.clips)
    assert result.n_rejects == n_victim and result.n_clips == len(data.clips) - n_victim
    assert set(result.rejects.column("reason").to_pylist()) == {"invalid_words"}
    assert all(f"{victim}.json is not valid JSON" in m for m in result.rejects.column("message").to_pylist())


def test_mmsa_clip_id_with_glob_characters_never_matches_another_file(tmp_path: Path) -> None:
    raw = tmp_path / "Raw" / "vid"
    raw.mkdir(parents=True)
    write_clip(raw / "0001.mp4", seconds=1.0)
    _csv(tmp_path / "label.csv", "video_id,clip_id,text,label,mode",
         ["vid,0001,fine,1,train", "vid,*,glob,1,train", "vid,[0]*,glob,1,train", "..,0001,up,1,train"])
    result = ingest(tmp_path)
    assert result.clips.column("clip_id").to_pylist() == ["vid_0001"]
    assert result.rejects.column("reason").to_pylist() == ["missing_file", "missing_file", "path_escapes_root"]


def test_fingerprints_refuse_non_finite_numbers_instead_of_hashing_them_as_null() -> None:
    whole_file = {"clip_id": "c", "media_fingerprint": "m", "start": None, "end": None}
    with pytest.raises(ValueError, match="non-finite"):
        clip_fingerprint({**whole_file, "start": float("nan")})
    with pytest.raises(ValueError, match="non-finite"):
        hash_obj({"end": float("inf")})
    assert clip_fingerprint(whole_file) == clip_fingerprint(dict(whole_file))


@pytest.mark.parametrize("header", ["clip_id,media,text,label,split,label", 'clip_id,media,text,label,split, "label" '])
def test_a_csv_header_naming_a_column_twice_is_a_manifest_error_naming_it(tmp_path: Path, header: str) -> None:
    path = _csv(tmp_path / "manifest.csv", header, ["a,,hi there,1.5,train,", "b,,yo,-1,train,2"])
    for layout in ("auto", "manifest"):  # found by layout detection and by the reader alike
        with pytest.raises(ManifestError, match=rf"^{path}: duplicate column 'label'$"):
            ingest(path, layout)
    mmsa = _csv(tmp_path / "label.csv", "video_id,clip_id,text,label,mode,text", ["v,1,hi,1,train,other"])
    with pytest.raises(ManifestError, match=r"label\.csv: duplicate column 'text'$"):
        ingest(mmsa, "mmsa")


def test_unnamed_csv_columns_may_repeat_while_named_ones_may_not(root: Path) -> None:
    ok = ingest(_csv(root / "trailing.csv", "clip_id,media,text,label,split,,", ["good,m/good.mp4,fine,1,train,,"]))
    assert ok.clips.column("clip_id").to_pylist() == ["good"]
    with pytest.raises(ManifestError, match=r"duplicate columns 'split', 'text'$"):
        ingest(_csv(root / "twice.csv", "clip_id,media,text,label,split,,text,split", []))


def test_a_jsonl_row_naming_a_key_twice_is_rejected_by_name_not_read_as_its_last_value(root: Path) -> None:
    twice = b'{"clip_id": "bad", "media": "", "text": "x", "label": 9, "split": "train", "label": 1.0}'
    nested = (b'{"clip_id": "bad2", "media": "", "text": "a b", "label": 1, "split": "train",'
              b' "words": [{"word": "a", "start": 0.0, "end": 0.4, "start": 0.2}]}')
    result = ingest(_jsonl(root, "twice.jsonl", [twice, nested]))
    assert result.clips.column("clip_id").to_pylist() == ["good"]
    rejects = result.rejects.to_pylist()
    assert [(r["reason"], r["message"]) for r in rejects] == [
        ("invalid_row", "twice.jsonl:2: duplicate key 'label'"),
        ("invalid_row", "twice.jsonl:3: duplicate key 'start'"),
    ]


def test_word_timings_given_as_json_text_naming_a_key_twice_reject_their_row(root: Path) -> None:
    words = json.dumps('[{"word": "a", "start": 9.0, "end": 0.4, "start": 0.0}]')  # the JSON text in a string
    row = b'{"clip_id": "w", "media": "", "text": "a", "label": 1, "split": "train", "words": ' + words.encode() + b"}"
    rejects = ingest(_jsonl(root, "words.jsonl", [row])).rejects.to_pylist()
    assert [(r["clip_id"], r["reason"]) for r in rejects] == [("w", "invalid_words")]
    assert "word timings: duplicate key 'start'" in rejects[0]["message"]


def test_a_mosi_words_file_naming_a_segment_twice_rejects_that_videos_rows(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path, n_clips=6, seed=4, layout="mosi")
    victim = data.video_ids[0]
    words_file = tmp_path / "Transcript" / "Words" / f"{victim}.json"
    segment = next(iter(json.loads(words_file.read_text())))
    words_file.write_text(words_file.read_text().rstrip()[:-1] + f', "{segment}": []}}')  # last would win: no words
    result = ingest(tmp_path)
    n_victim = sum(c.video_id == victim for c in data.clips)
    assert result.n_rejects == n_victim and result.n_clips == len(data.clips) - n_victim
    assert set(result.rejects.column("message").to_pylist()) == {
        f"clip {c.clip_id!r}: Transcript/Words/{victim}.json: duplicate key {segment!r}"
        for c in data.clips if c.video_id == victim}


def test_mmsa_media_is_the_clips_media_file_never_a_sibling_of_another_kind(tmp_path: Path) -> None:
    raw = tmp_path / "Raw" / "v1"
    raw.mkdir(parents=True)
    write_clip(raw / "0001.mp4", seconds=1.0)
    (raw / "0001.csv").write_text("frame,AU01\n1,0.2\n")  # an OpenFace output, sorted before the clip
    (raw / "0001.m4a").write_bytes(b"not decoded: extracted audio loses to its video")
    (raw / "0002.txt").write_text("no media for 0002")
    _csv(tmp_path / "label.csv", "video_id,clip_id,text,label,mode", ["v1,0001,hello,1,train", "v1,0002,x,1,train"])
    result = ingest(tmp_path)
    assert result.clips.column("media_uri").to_pylist() == [str(raw / "0001.mp4")]
    [rej] = result.rejects.to_pylist()
    assert rej["reason"] == "missing_file" and "Raw/v1/0002.mp4" in rej["message"]


def test_mosi_media_is_the_videos_media_file_never_a_sibling_of_another_kind(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path, n_clips=3, seed=1, layout="mosi")
    full = tmp_path / "Video" / "Full"
    for vid in data.video_ids:  # other files of the video, sorted before its .mp4
        (full / f"{vid}.csv").write_text("frame,AU01\n1,0.2\n")
        (full / f"{vid}.json").write_text("{}")
    result = ingest(tmp_path)
    assert result.n_rejects == 0
    assert result.clips.column("media_uri").to_pylist() == [str(full / f"{c.video_id}.mp4") for c in data.clips]
