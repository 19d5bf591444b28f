"""The CMU-MOSI layout as the CMU release ships it: full videos, a segments table, per-video
segmented transcripts and optional word timings, with the folds given apart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corpora.fields import DuplicateKeyError, is_safe_component, load_json
from corpora.layouts.media_files import find_media, unsafe_id
from corpora.layouts.tables import LINE_BREAK, read_csv
from corpora.rows import INVALID_WORDS, RawClip, Reject
from store.errors import ManifestError


def read_mosi(root: Path, folds: Path | None = None) -> Iterator[RawClip]:
    """CMU-MOSI layout: ``Video/Full/<vid>.*``, ``segments.csv``, ``Transcript/Segmented/<vid>.annotprocessed``,
    ``folds.csv`` (video_id, split), optional ``Transcript/Words/<vid>.json``.

    A video id is checked to be one safe path component before any file is built from it; a
    transcript or words file that cannot be read or parsed rejects that video's rows.
    """
    folds_path = folds or root / "folds.csv"
    if not folds_path.exists():
        raise ManifestError(f"{root}: CMU-MOSI layout needs a folds file (video_id,split) at {folds_path}")
    split_of = {
        row["video_id"].strip(): row["split"]
        for _, row in read_csv(folds_path, {"video_id", "split"})
        if not isinstance(row, Reject)
    }
    per_video: dict[str, tuple[dict[str, str], dict[str, Any], str | None] | Reject] = {}
    for source, row in read_csv(root / "segments.csv", {"video_id", "segment_id", "start", "end", "label"}):
        if isinstance(row, Reject):
            yield RawClip(source=source, clip_id=None, problem=row)
            continue
        vid, seg = row["video_id"].strip(), row["segment_id"].strip()
        clip = RawClip(source=source, clip_id=f"{vid}_{seg}", video_id=vid, start=row["start"], end=row["end"],
                       label=row["label"], split=split_of.get(vid, ""))
        if not is_safe_component(vid):
            clip.problem = unsafe_id(source, vid)
            yield clip
            continue
        if vid not in per_video:
            per_video[vid] = _mosi_video(root, vid)
        found = per_video[vid]
        if isinstance(found, Reject):
            clip.problem = Reject(found.reason, f"clip {clip.clip_id!r}: {found}")
        else:
            texts, words, media = found
            clip.text, clip.words = texts.get(seg, ""), words.get(seg)
            clip.media = media or f"Video/Full/{vid}.mp4"
        yield clip


def _mosi_video(root: Path, vid: str) -> tuple[dict[str, str], dict[str, Any], str | None] | Reject:
    """One MOSI video's segment transcripts, word timings and media path, or why they are unusable."""
    transcript = root / "Transcript" / "Segmented" / f"{vid}.annotprocessed"
    words_path = root / "Transcript" / "Words" / f"{vid}.json"
    try:
        texts = _read_annotprocessed(transcript) if transcript.exists() else {}
        words = load_json(words_path.read_bytes()) if words_path.exists() else {}
    except OSError as exc:
        return Reject(INVALID_WORDS, f"cannot read the transcript of video {vid!r}: {exc}")
    except DuplicateKeyError as exc:
        return Reject(INVALID_WORDS, f"{words_path.relative_to(root)}: {exc}")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return Reject(INVALID_WORDS, f"{words_path.relative_to(root)} is not valid JSON: {str(exc)[:200]}")
    if not isinstance(words, dict):
        return Reject(INVALID_WORDS, f"{words_path.relative_to(root)} is not an object of segment -> words")
    return texts, words, find_media(root / "Video" / "Full", vid, root)


def _read_annotprocessed(path: Path) -> dict[str, str]:
    out = {}
    for line in LINE_BREAK.split(path.read_bytes().decode("utf-8-sig", errors="surrogateescape")):
        if "_DELIM_" in line:
            seg, text = line.split("_DELIM_", 1)
            out[seg.strip()] = text.strip()
    return out
