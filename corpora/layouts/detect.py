"""Which layout reader a dataset path needs, when the user says ``--layout auto``."""

from __future__ import annotations

from pathlib import Path

from corpora.layouts.manifest import MANIFEST_COLUMNS
from corpora.layouts.meld import MELD_COLUMNS, MELD_CSV_GLOB
from corpora.layouts.mmsa import MMSA_COLUMNS
from corpora.layouts.tables import csv_header, read_text
from store.errors import ManifestError


def detect_layout(path: Path) -> str:
    """Which reader a dataset path needs: a file by its header (or ``.jsonl`` suffix, any case),
    a folder by the files it holds."""
    if path.is_file():
        if path.suffix.lower() == ".jsonl":
            return "manifest"
        header = set(csv_header(read_text(path), path))
        if "media" in header:
            return "manifest"
        if MELD_COLUMNS <= header:
            return "meld"
        if MMSA_COLUMNS <= header:
            return "mmsa"
        raise ManifestError(
            f"{path}: cannot tell the layout from the header {sorted(header)}: a manifest needs "
            f"{sorted(MANIFEST_COLUMNS)}, an MMSA label file {sorted(MMSA_COLUMNS)}, "
            f"a MELD file {sorted(MELD_COLUMNS)}"
        )
    if (path / "label.csv").exists():
        return "mmsa"
    if (path / "segments.csv").exists():
        return "mosi"
    if (path / "manifest.csv").exists() or (path / "manifest.jsonl").exists():
        return "manifest"
    if any(path.glob(MELD_CSV_GLOB)):
        return "meld"
    raise ManifestError(
        f"{path}: cannot tell the dataset layout (no label.csv, segments.csv, manifest.* or {MELD_CSV_GLOB})"
    )
