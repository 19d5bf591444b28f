"""text.bert: rows = real tokens, word-piece → word mapping, spans, batching, truncation, identity."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from features.clips import ClipInput, Word, clip_words
from features.extractors.base import FeatureResult, create_extractor
from features.extractors.text import BertTextExtractor, load_text_model


@pytest.fixture(scope="module")
def bert() -> BertTextExtractor:
    ex = create_extractor("text.bert", {"device": "cpu"})
    assert isinstance(ex, BertTextExtractor)
    return ex


def _clip(text: str, duration: float = 4.0, words: tuple[Word, ...] | None = None, cid: str = "c") -> ClipInput:
    return ClipInput(cid, None, None, None, text, duration, words)


def test_rows_are_real_tokens_with_word_mapping(bert: BertTextExtractor) -> None:
    text = "the unbelievably good movie"
    (r,) = bert.extract([_clip(text)])
    tokenizer, _ = load_text_model(bert.model_path, "cpu")
    expected = tokenizer(text.split(), is_split_into_words=True)["input_ids"]
    assert isinstance(r, FeatureResult) and r.absent is None
    assert r.values.shape == (len(expected), 384) and r.values.dtype == np.float32
    assert np.isfinite(r.values).all()
    np.testing.assert_array_equal(r.extras["input_ids"], expected)
    assert r.extras["input_ids"].dtype == np.int32
    assert r.extras["attention_mask"].dtype == np.int8 and (r.extras["attention_mask"] == 1).all()
    pieces = tokenizer.convert_ids_to_tokens(expected)
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert len(pieces) > 6  # "unbelievably" is several word pieces
    wi = r.extras["word_index"]
    assert wi.dtype == np.int32
    assert wi[0] == -1 and wi[-1] == -1
    # every piece maps to its word, in order, and the multi-piece word owns all its pieces
    assert list(wi[1:-1]) == sorted(wi[1:-1]) and set(wi[1:-1]) == {0, 1, 2, 3}
    unbelievably = [p for p, w in zip(pieces, wi) if w == 1]
    assert len(unbelievably) > 1 and "".join(p.removeprefix("##") for p in unbelievably) == "unbelievably"


def test_spans_from_word_timings(bert: BertTextExtractor) -> None:
    words = (Word("the", 0.1, 0.3), Word("unbelievably", 0.3, 1.2), Word("good", 1.4, 1.9))
    (r,) = bert.extract([_clip("the unbelievably good", duration=2.5, words=words)])
    wi = r.extras["word_index"]
    for row, w in enumerate(wi):
        if w < 0:
            np.testing.assert_allclose(r.times[row], [0.0, 2.5])  # special tokens: the whole clip
        else:
            np.testing.assert_allclose(r.times[row], [words[w].start, words[w].end])
    assert r.meta["word_times"] == "given"


def test_spans_spread_evenly_without_timings(bert: BertTextExtractor) -> None:
    (r,) = bert.extract([_clip("one two three four", duration=2.0)])
    by_word = {int(w): tuple(t) for w, t in zip(r.extras["word_index"], r.times) if w >= 0}
    assert by_word == {0: (0.0, 0.5), 1: (0.5, 1.0), 2: (1.0, 1.5), 3: (1.5, 2.0)}
    assert r.meta["word_times"] == "even"


def test_batch_equals_one_at_a_time(bert: BertTextExtractor) -> None:
    clips = [
        _clip("hi", cid="a"),
        _clip("this film was an absolute masterpiece of overwrought melodrama and i loved it", cid="b"),
        _clip("not great", cid="c"),
        _clip("", cid="empty"),
        _clip("it was okay i guess but the ending dragged on", cid="d"),
    ]
    batched = bert.extract(clips)
    assert [type(r) for r in batched] == [FeatureResult] * 5
    for clip, r in zip(clips, batched):
        (single,) = bert.extract([clip])
        assert r.values.shape == single.values.shape
        np.testing.assert_allclose(r.values, single.values, atol=1e-4)
        np.testing.assert_array_equal(r.extras["input_ids"], single.extras["input_ids"])
    assert batched[3].absent == "empty transcript" and batched[3].values.shape == (0, 384)


def test_truncation_at_max_length() -> None:
    ex = create_extractor("text.bert", {"max_length": 16, "device": "cpu"})
    text = " ".join(["wonderful"] * 40)
    (r,) = ex.extract([_clip(text)])
    assert len(r.values) == 16 and r.meta["truncated"] is True
    assert r.extras["word_index"][-1] == -1  # still ends with [SEP]
    assert r.extras["word_index"].max() == 13  # 14 words fit between [CLS] and [SEP]
    (short,) = ex.extract([_clip("wonderful film")])
    assert short.meta["truncated"] is False
    # a word split by the cut counts as truncated
    (cut,) = ex.extract([_clip(" ".join(["ok"] * 13) + " unbelievably")])
    assert len(cut.values) == 16 and cut.meta["truncated"] is True


def test_identity_has_model_and_tokenizer_but_not_device(bert: BertTextExtractor) -> None:
    ident = bert.identity()
    assert "device" not in ident["config"] and "batch_size" not in ident["config"]
    assert len(ident["model"]["model_files_sha256"]) == 64
    assert ident["model"]["tokenizer"]["class"] and len(ident["model"]["tokenizer"]["files_sha256"]) == 64
    same = create_extractor("text.bert", {"device": "auto", "batch_size": 3})
    assert same.identity_hash() == bert.identity_hash()
    other = create_extractor("text.bert", {"max_length": 32})
    assert other.identity_hash() != bert.identity_hash()


def test_real_mosi_sentences(shared_data: Path, bert: BertTextExtractor) -> None:
    path = shared_data / "mosi" / "mosi_text_trainval.csv"
    if not path.is_file():
        pytest.skip("MOSI text not available")
    with path.open(encoding="utf-8") as f:
        rows = [r for _, r in zip(range(24), csv.DictReader(f))]
    clips = [ClipInput(r["clip_id"], None, None, None, r["text"], float(r["end"]) - float(r["start"])) for r in rows]
    results = bert.extract(clips)
    for clip, r in zip(clips, results):
        assert isinstance(r, FeatureResult) and np.isfinite(r.values).all()
        assert r.extras["word_index"].max() == len(clip.text.split()) - 1
        assert r.times[:, 1].max() <= clip.duration + 1e-9


@pytest.mark.parametrize("words", [None, (Word("hi", 0.1, 0.4), Word("there", 0.5, 1.2))])
def test_clip_words_is_one_rule_for_clip_inputs_and_clip_table_rows(words: tuple[Word, ...] | None) -> None:
    clip = _clip("hi there", duration=3.0, words=words)
    row = {"text": "hi there", "duration": 3.0, "words": [vars(w) for w in words] if words else None}
    got, spans = clip_words(clip)
    got_row, spans_row = clip_words(row)
    assert got == got_row == ["hi", "there"]
    np.testing.assert_array_equal(spans, spans_row)
    np.testing.assert_array_equal(spans, [[0.1, 0.4], [0.5, 1.2]] if words else [[0.0, 1.5], [1.5, 3.0]])
