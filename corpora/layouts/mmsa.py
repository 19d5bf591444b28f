"""The MMSA layout (thuiar/MMSA's raw datasets: CH-SIMS, SIMS v2, MOSI/MOSEI as MMSA ships them):
``label.csv`` with ``Raw/<video_id>/<clip_id>.*`` media."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from corpora.fields import is_safe_component
from corpora.layouts.media_files import find_media, unsafe_id
from corpora.layouts.tables import read_csv
from corpora.rows import EXTRA_LABELS, RawClip, Reject

MMSA_COLUMNS = {"video_id", "clip_id", "text", "label", "mode"}


def read_mmsa(path: Path) -> Iterator[RawClip]:
    """MMSA ``label.csv`` (+ ``Raw/<video_id>/<clip_id>.mp4``); no ``Raw/`` folder means text only.

    ``clip_id`` becomes ``<video_id>_<clip_id>`` (the MMSA convention) unless it already is.
    """
    label_csv = path / "label.csv" if path.is_dir() else path
    root = label_csv.parent
    raw_dir = root / "Raw"
    has_raw = raw_dir.is_dir()
    for source, row in read_csv(label_csv, MMSA_COLUMNS):
        if isinstance(row, Reject):
            yield RawClip(source=source, clip_id=None, problem=row)
            continue
        vid, cid = row["video_id"].strip(), row["clip_id"].strip()
        clip = RawClip(
            source=source,
            clip_id=cid if cid.startswith(f"{vid}_") else f"{vid}_{cid}",
            video_id=vid,
            start=row.get("start"),
            end=row.get("end"),
            text=row["text"],
            label=row["label"],
            split=row["mode"],
            extra_labels={k: row.get(k) for k in EXTRA_LABELS},
        )
        if has_raw:
            if not (is_safe_component(vid) and is_safe_component(cid)):
                clip.problem = unsafe_id(source, vid, cid)
            else:
                clip.media = find_media(raw_dir / vid, cid, root) or f"Raw/{vid}/{cid}.mp4"
        yield clip
