"""The tabular files of dataset layouts: CSV and JSONL read row by row, each row with its source
(``file:line``), a row that cannot be split or parsed as a ``Reject`` so it can be rejected alone.
Only whole-file problems (unreadable, empty, a bad or repeated header) raise ``ManifestError``."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corpora.fields import DuplicateKeyError, duplicates, load_json, printable
from corpora.rows import INVALID_ROW, Reject
from store.errors import ManifestError

CSV_FIELD_LIMIT = 16 << 20  # characters per CSV field: a feature-length transcript fits
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # JSON text never holds a raw CR or LF, so these are line ends


def read_text(path: Path) -> str:
    """The whole file as text. UTF-8 (BOM optional) keeps undecodable bytes as lone surrogates so
    one bad row can be rejected alone; a UTF-16 BOM switches to UTF-16."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest: {exc}") from exc
    if not raw.strip():
        raise ManifestError(f"{path}: the manifest is empty")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", errors="surrogatepass")
    return raw.decode("utf-8-sig", errors="surrogateescape")


def row_source(path: Path, line: int) -> str:
    return f"{printable(path.name)}:{line}"


def csv_header(text: str, path: Path) -> list[str]:
    """Column names: quotes removed by the CSV parser (also after a space: ``a, "b"``),
    surrounding whitespace dropped. A name given twice is a ManifestError: a row would keep one of
    its two values, silently (unnamed columns, as trailing commas make, are never read and may repeat)."""
    try:
        first = next(csv.reader(io.StringIO(text, newline=""), skipinitialspace=True), [])
    except csv.Error as exc:
        raise ManifestError(f"{path}: the header line cannot be parsed as CSV: {exc}") from exc
    header = [name.strip() for name in first]
    problem = duplicates("column", (name for name in header if name))
    if problem:
        raise ManifestError(f"{path}: {problem}")
    return header


def read_csv(
    path: Path, required: set[str], alternatives: dict[str, frozenset[str]] | None = None
) -> Iterator[tuple[str, dict[str, str] | Reject]]:
    """``(source, row)`` per data row; a row the CSV parser cannot split, or whose field count
    differs from the header's, comes as a ``Reject`` instead of a dict. The header must hold every
    ``required`` column, or one of its ``alternatives`` (a class label for ``label``)."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    text = read_text(path)
    header = csv_header(text, path)
    alternatives = alternatives or {}
    missing = {c for c in required - set(header) if not alternatives.get(c, frozenset()) & set(header)}
    if missing:
        raise ManifestError(f"{path}: missing columns {sorted(missing)} (has {header})")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield row_source(path, reader.line_num), Reject(INVALID_ROW, f"{row_source(path, reader.line_num)}: {exc}")
            continue
        source = row_source(path, reader.line_num)
        if not values:  # a blank line is not a row
            continue
        if len(values) != len(header):
            yield source, Reject(INVALID_ROW, f"{source}: {len(values)} fields, the header has {len(header)}")
            continue
        yield source, dict(zip(header, values))



def read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any] | Reject]]:
    """``(source, object)`` per non-blank line; a line that is not a JSON object, or whose objects
    name a key twice, is a ``Reject``."""
    for i, line in enumerate(LINE_BREAK.split(read_text(path)), start=1):
        if not line.strip():
            continue
        source = row_source(path, i)
        try:
            row = load_json(line)
        except DuplicateKeyError as exc:
            yield source, Reject(INVALID_ROW, f"{source}: {exc}")
            continue
        except (json.JSONDecodeError, RecursionError) as exc:
            yield source, Reject(INVALID_ROW, f"{source}: not valid JSON: {str(exc)[:200]}")
            continue
        if not isinstance(row, dict):
            yield source, Reject(INVALID_ROW, f"{source}: a row must be a JSON object, not {type(row).__name__}")
            continue
        yield source, row
