"""``.words.json`` word timings into words and cues: plain word lists, ASR segment exports, and
Whisper's and WhisperX's JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corpora.fields import WORD_TOLERANCE_S, FieldError, load_json, parse_number, parse_words
from corpora.rows import INVALID_WORDS
from corpora.sidecars.cues import Cue, SidecarError, Transcript, check_span, clean_text, excerpt, shown, words_to_cues
from features.clips import Word


def read_words(path: Path, text: str, notes: list[str]) -> Transcript:
    """A ``.words.json`` file into words (checked: finite, ordered, ``start <= end``) and cues.
    Whisper's JSON without word timings (segments with only ``start``/``end``/``text``) is read as
    one cue per segment, as a ``.srt`` would be; so is a file where only some segments have words."""
    try:
        data = load_json(text)
    except (ValueError, RecursionError) as exc:  # not JSON, or a key named twice
        raise SidecarError(INVALID_WORDS, f"{shown(path)}: not valid JSON: {excerpt(str(exc))}") from None
    groups = _word_groups(data)
    if groups is None:
        raise SidecarError(
            INVALID_WORDS,
            f"{shown(path)}: expected a list of {{word, start, end}} objects, of segments with a 'words' list "
            "or with start/end/text, or an object with such a 'segments', 'words' or 'word_segments' list",
        )
    without = sum(1 for _, group_words in groups if group_words is None)
    if without:
        notes.append(f"{shown(path)}: {without} of its {len(groups)} segments have no word timings: "
                     "each segment is read as one cue")
        return _segment_cues(path, [seg for seg, _ in groups if seg is not None])
    items: list[Any] = []
    placed = 0
    for segment, group_words in groups:
        group, n = _place_untimed(segment, group_words or [])
        items += group
        placed += n
    if placed:
        notes.append(f"{shown(path)}: {placed} word(s) without times (as WhisperX leaves numbers and symbols) "
                     "placed evenly between the timed words or segment bounds around them")
    try:
        parsed = parse_words(items, None, INVALID_WORDS) or []
    except FieldError as exc:
        raise SidecarError(exc.reason, f"{shown(path)}: {excerpt(str(exc), 300)}") from None
    words: list[Word] = []
    for i, w in enumerate(parsed):
        token = clean_text(w["word"])
        if not token:
            continue
        if words and (w["start"] < words[-1].start or w["start"] < words[-1].end - WORD_TOLERANCE_S):
            raise SidecarError(
                INVALID_WORDS,
                f"{shown(path)}: word {i} {excerpt(token)!r} at {w['start']:g} s overlaps or precedes the word "
                f"before it ({words[-1].word!r}, {words[-1].start:g}-{words[-1].end:g} s): timings out of order",
            )
        words.append(Word(token, w["start"], w["end"]))
    cues = words_to_cues(words)
    return Transcript(path, "words", cues, " ".join(w.word for w in words), words=words)


def _word_groups(data: Any) -> list[tuple[dict[str, Any] | None, list[Any] | None]] | None:
    """``(segment, its words)`` of the accepted JSON shapes: a flat word list is one group without
    a segment; a segment without a ``words`` list has words None. None for any other shape. Of an
    object's ``segments``, ``words`` and ``word_segments`` (WhisperX) lists, the first non-empty one."""
    if isinstance(data, dict):
        lists = [data[k] for k in ("segments", "words", "word_segments") if isinstance(data.get(k), list)]
        return _word_groups(next((v for v in lists if v), lists[0])) if lists else None
    if not isinstance(data, list):
        return None
    if data and all(isinstance(s, dict) and ("words" in s or ("text" in s and "word" not in s)) for s in data):
        if not all(s.get("words") is None or isinstance(s["words"], list) for s in data):
            return None
        return [(s, s.get("words")) for s in data]
    return [(None, data)]


def _segment_cues(path: Path, segments: list[dict[str, Any]]) -> Transcript:
    """One cue per segment of Whisper's JSON (``start``, ``end``, ``text``), sorted by start."""
    cues: list[Cue] = []
    for i, seg in enumerate(segments):
        try:
            start = parse_number(seg.get("start"), f"segment {i} start", INVALID_WORDS)
            end = parse_number(seg.get("end"), f"segment {i} end", INVALID_WORDS)
        except FieldError as exc:
            raise SidecarError(exc.reason, f"{shown(path)}: {excerpt(str(exc), 300)}") from None
        check_span(path, f"segment {i}", start, end, INVALID_WORDS)
        if not isinstance(seg.get("text"), str):
            raise SidecarError(INVALID_WORDS, f"{shown(path)}: segment {i} has no 'text' string")
        if text := clean_text(seg["text"]):
            cues.append(Cue(start, end, text))
    cues.sort(key=lambda c: c.start)
    return Transcript(path, "words", cues, " ".join(c.text for c in cues))


def _place_untimed(segment: dict[str, Any] | None, words: list[Any]) -> tuple[list[Any], int]:
    """``words`` with each run of words lacking both ``start`` and ``end`` spread evenly from the end
    of the timed word before it (else the segment's start) to the start of the one after it (else
    the segment's end); how many were placed. A run with nothing on one side stays as it is."""
    def untimed(w: Any) -> bool:
        return isinstance(w, dict) and "word" in w and w.get("start") is None and w.get("end") is None

    out = list(words)
    placed = 0
    i = 0
    while i < len(words):
        if not untimed(words[i]):
            i += 1
            continue
        j = i
        while j < len(words) and untimed(words[j]):
            j += 1
        lo = _time_of(words[i - 1], "end") if i > 0 else _time_of(segment, "start")
        hi = _time_of(words[j], "start") if j < len(words) else _time_of(segment, "end")
        if lo is None or hi is None:  # nothing to place it by: parse_words names the word
            i = j
            continue
        step = (max(hi, lo) - lo) / (j - i)
        for k in range(i, j):
            out[k] = {**words[k], "start": lo + (k - i) * step, "end": lo + (k - i + 1) * step}
        placed += j - i
        i = j
    return out, placed


def _time_of(item: Any, key: str) -> float | None:
    """``item[key]`` as seconds, None when it has no usable one."""
    if not isinstance(item, dict):
        return None
    try:
        return parse_number(item.get(key), key, INVALID_WORDS)
    except FieldError:
        return None
