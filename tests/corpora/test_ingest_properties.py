"""Property-based ingest: manifests with arbitrary values, types, bytes, encodings and line endings.

Whatever the rows hold, ingest returns (only a whole-file problem may raise ``ManifestError``),
every row lands in exactly one of clips/rejects, no reject is an unexpected error of ours, both
tables can be stored, and every accepted clip has finite ordered windows and word times inside it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpora.ingest import UNEXPECTED_ERROR, WINDOW_TOLERANCE_S, ingest
from corpora.synth import write_clip
from features.media.probe import probe_media
from store import FeatureStore
from store.errors import ManifestError

SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COLUMNS = ["clip_id", "video_id", "media", "start", "end", "text", "words", "label", "label_T", "split"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tmp_path_factory.mktemp("prop")
    (r / "m").mkdir()
    write_clip(r / "m" / "good.mp4", seconds=2.0)
    (r / "m" / "empty.mp4").write_bytes(b"")
    (r / "m" / "junk.mp4").write_bytes(b"\x00junk" * 100)
    return r


# -- values ---------------------------------------------------------------------------------
raw_bytes = st.binary(max_size=6).map(lambda b: b.decode("utf-8", "surrogateescape"))
texts = st.builds(lambda a, b: a + b, st.text(max_size=12), st.one_of(st.just(""), raw_bytes))
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(min_value=-4, max_value=6),
)
number_strings = st.one_of(
    numbers.map(str),
    st.sampled_from(["", " 1.5 ", "nan", "-inf", "1e308", "0.0_1", "٣", "0x10", "+.5", "1.", "true", "½"]),
)
json_any = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=6,
)
def mostly(good: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Plausible values nine times in ten, so accepted clips are common enough to check."""
    return st.integers(0, 9).flatmap(lambda k: good if k else hostile)


word = st.fixed_dictionaries({
    "word": mostly(st.sampled_from(["fine", "dull", "ok"]), st.one_of(texts, json_any)),
    "start": mostly(st.floats(0, 0.9), st.one_of(numbers, number_strings)),
    "end": mostly(st.floats(0.9, 1.0), st.one_of(numbers, number_strings)),
})
FIELD = {
    "clip_id": mostly(st.sampled_from(["a", "A", " a ", "b", "c", "clip_1", "Ünï"]), st.one_of(texts, json_any)),
    "video_id": mostly(st.sampled_from([None, "", "v", "../v"]), st.one_of(texts, json_any)),
    "media": mostly(
        st.sampled_from(["", "m/good.mp4", "./m/good.mp4", "m//good.mp4"]),
        st.one_of(texts, json_any, st.sampled_from(["m/missing.mp4", "m/empty.mp4", "m/junk.mp4", "m", "../m/good.mp4",
                                                   "/etc/passwd", "m/good.mp4\x00", "m/*.mp4"])),
    ),
    "start": mostly(st.sampled_from([None, "", 0.0, 0.5, "0.25"]), st.one_of(numbers, number_strings, json_any)),
    "end": mostly(st.sampled_from([None, "", 1.0, "1.5", 2.0, 2.02]), st.one_of(numbers, number_strings, json_any)),
    "text": mostly(st.text(max_size=20), st.one_of(texts, json_any)),
    "words": mostly(
        st.one_of(st.none(), st.lists(word, max_size=3), st.lists(word, max_size=3).map(json.dumps)), json_any
    ),
    "label": mostly(st.floats(min_value=-3, max_value=3), st.one_of(numbers, number_strings, json_any)),
    "label_T": mostly(st.one_of(st.none(), st.floats(-1, 1)), st.one_of(numbers, number_strings, json_any)),
    "split": mostly(
        st.sampled_from(["train", "valid", "dev", "TEST "]), st.one_of(texts, json_any, st.just("holdout"))
    ),
}
rows = st.lists(st.fixed_dictionaries({k: FIELD[k] for k in COLUMNS}), min_size=1, max_size=8)


def _as_csv_cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


# -- manifests ------------------------------------------------------------------------------
@st.composite
def csv_manifests(draw: st.DrawFn) -> tuple[bytes, int]:
    """CSV bytes and the number of data rows in it."""
    header = draw(st.permutations(COLUMNS))
    data = draw(rows)
    # the writer quotes only its own line terminator's characters, so quote all unless it is CRLF
    terminator = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    quoting = csv.QUOTE_MINIMAL if terminator == "\r\n" and draw(st.booleans()) else csv.QUOTE_ALL
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator=terminator, quoting=quoting)
    writer.writerow(header)
    for row in data:
        cells = [_as_csv_cell(row[k]) for k in header]
        if draw(st.integers(0, 19)) == 0:  # a ragged row now and then
            cells = cells[: draw(st.integers(1, len(cells)))] if draw(st.booleans()) else [*cells, "surplus"]
        writer.writerow(cells)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
    text = buf.getvalue()
    if encoding == "utf-16":
        return text.encode("utf-16", "surrogatepass"), len(data)
    return text.encode(encoding, "surrogateescape"), len(data)


@st.composite
def jsonl_manifests(draw: st.DrawFn) -> tuple[bytes, int]:
    """JSONL bytes (objects, other JSON values, garbage lines) and the number of rows in it."""
    lines: list[bytes] = []
    for row in draw(rows):
        kind = draw(st.integers(0, 19))
        if kind == 0:
            value: Any = draw(json_any)
        elif kind == 1:
            value = {k: v for k, v in row.items() if draw(st.booleans())}  # fields missing
        else:
            value = row
        if kind == 2:
            lines.append(b"x" + draw(st.binary(max_size=20)).replace(b"\n", b"").replace(b"\r", b""))
            continue
        ascii_only = draw(st.booleans())
        lines.append(json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogateescape"))
    terminator = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    blank = draw(st.sampled_from([b"", b"  "]))  # blank lines are not rows
    return terminator.join([*lines, blank]) + terminator, len(lines)


# -- invariants -----------------------------------------------------------------------------
def _check(root: Path, name: str, content: bytes, n_rows: int) -> None:
    path = root / name
    path.write_bytes(content)
    result = ingest(path)
    assert result.n_clips + result.n_rejects == n_rows
    rejects = result.rejects.to_pylist()
    assert [r for r in rejects if r["reason"] == UNEXPECTED_ERROR] == []
    assert len({r["source"] for r in rejects}) == len(rejects)  # one reject per row
    store = FeatureStore.open(root / "store", create=True)  # both tables must be storable
    store.write_clips(result.clips)
    store.write_rejects(result.rejects)
    assert pa.Table.equals(store.clips(), result.clips.cast(store.clips().schema))
    media_end = probe_media(root / "m" / "good.mp4").duration
    ids = [c["clip_id"] for c in result.clips.to_pylist()]
    assert len({i.casefold() for i in ids}) == len(ids) and all(i == i.strip() and i for i in ids)
    for clip in result.clips.to_pylist():
        start, end, duration = clip["start"], clip["end"], clip["duration"]
        assert math.isfinite(duration) and duration > 0
        assert start is None or (math.isfinite(start) and start >= 0)
        assert end is None or (math.isfinite(end) and end > (start or 0.0))
        if clip["media_uri"]:
            assert (end if end is not None else media_end) <= media_end + WINDOW_TOLERANCE_S
        assert math.isfinite(clip["label"]) and -3 <= clip["label"] <= 3
        for w in clip["words"] or []:
            assert 0.0 <= w["start"] <= w["end"] <= duration


@SETTINGS
@given(manifest=csv_manifests())
def test_any_csv_manifest_ends_every_row_as_a_clip_or_a_named_reject(root: Path, manifest: tuple[bytes, int]) -> None:
    _check(root, "manifest.csv", *manifest)


@SETTINGS
@given(manifest=jsonl_manifests())
def test_any_jsonl_manifest_ends_every_row_as_a_clip_or_a_named_reject(root: Path, manifest: tuple[bytes, int]) -> None:
    _check(root, "manifest.jsonl", *manifest)


@SETTINGS
@given(content=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".jsonl", ".JSONL", ".txt"]))
def test_arbitrary_bytes_as_a_manifest_either_ingest_or_raise_a_manifest_error_naming_the_file(
    root: Path, content: bytes, suffix: str
) -> None:
    path = root / f"bytes{suffix}"
    path.write_bytes(content)
    try:
        result = ingest(path)
    except ManifestError as exc:
        assert str(path) in str(exc)
        return
    assert UNEXPECTED_ERROR not in result.rejects.column("reason").to_pylist()
