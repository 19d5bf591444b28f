"""Fingerprints: canonical JSON + hashlib, never pickle.

* file hashes — ``files_sha256``, the one sha256 of file contents (media, model weights and
  tokenizer files), cached by (path, size, mtime) in-process and in a small on-disk cache, so
  re-ingesting a large dataset or starting a command does not re-read every byte;
* media fingerprint — the content hash of one media file;
* clip fingerprint — what the clip table says about a clip (media, window, text, label, class
  labels when set, split);
* feature fingerprint — what determines one extractor's output for one clip: the inputs that
  extractor reads (media + window for audio/vision, transcript + word timings for text) and the
  extractor identity (name, version, config, model files).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from store.fs import atomic_path
from store.schema import CLASS_LABELS

_AS_IS = frozenset({str, int, bool, type(None)})  # exact types that JSON takes unchanged


def canonical_json(obj: Any) -> str:
    """Stable JSON: sorted keys, no whitespace, floats rounded to 6 decimals.

    A NaN or infinity raises ``ValueError``: mapping it to null would give a clip with a NaN
    window the identity of the whole-file clip of the same media (ingest rejects such values, so
    one reaching a fingerprint is a bug to surface, not to hash).
    """
    return json.dumps(_normalise(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Canonical(list[Any]):
    """A list whose leaves are already what ``canonical_json`` makes of them (``canonical_column``):
    taken as is, so a view fingerprint over 10^6 clips is normalised column by column, not leaf by leaf."""


def canonical_column(column: pa.Array | pa.ChunkedArray) -> Canonical:
    """One Arrow column's values normalised as ``canonical_json`` normalises leaves: strings, integers
    and booleans as they are, floats rounded (a non-finite one raises), anything else leaf by leaf."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind) \
            or pa.types.is_boolean(kind) or pa.types.is_null(kind):
        return Canonical(column.to_pylist())
    if pa.types.is_floating(kind):
        if pc.all(pc.is_finite(column)).as_py() not in (True, None):
            bad = pc.filter(column, pc.invert(pc.is_finite(column)))[0].as_py()
            raise ValueError(f"cannot fingerprint the non-finite number {bad}")
        return Canonical([None if v is None else round(v, 6) for v in column.to_pylist()])
    return Canonical(_normalise(v) for v in column.to_pylist())


def _normalise(obj: Any) -> Any:
    if type(obj) in _AS_IS or type(obj) is Canonical:  # most leaves: ids, fingerprints, counts
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"cannot fingerprint the non-finite number {obj}")
        return round(obj, 6)
    if isinstance(obj, dict):
        return {str(k): _normalise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_normalise(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _normalise(obj.item())
    return obj


def hash_obj(obj: Any, length: int = 32) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def cache_root() -> Path:
    """emoflow's per-machine cache: ``$EMOFLOW_CACHE_DIR``, default ``~/.cache/emoflow`` (file
    hashes, exported ONNX graphs). Deleting it only costs recomputation."""
    root = os.environ.get("EMOFLOW_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "emoflow"
    )
    return Path(root)


def files_sha256(paths: Sequence[str | os.PathLike[str]], *, named: bool = False) -> str:
    """sha256 over the files' bytes in order, each preceded by its file name and a NUL when
    ``named`` (a model folder's hash then changes when a file is renamed; a symlink counts by its
    own name). Cached by each file's (path, size, mtime_ns), in-process and on disk, so neither a
    repeated ``identity()`` nor a new process (every CLI command) re-reads 100 MB of weights, nor a
    re-ingest every video."""
    stamps = []
    for path in map(os.path.abspath, paths):
        st = os.stat(path)
        stamps.append((path, st.st_size, st.st_mtime_ns))
    return _files_sha256(tuple(stamps), named)


@functools.lru_cache(maxsize=256)
def _files_sha256(stamps: tuple[tuple[str, int, int], ...], named: bool) -> str:
    key = hash_obj({"files": stamps, "named": named}, 64)
    cache = cache_root() / "file-sha256" / key[:2] / key
    try:
        return cache.read_text().strip()
    except OSError:
        pass
    h = hashlib.sha256()
    for path, _, _ in stamps:
        if named:
            h.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            hashlib.file_digest(f, lambda: h)  # streams the file into h, which file_digest returns
    digest = h.hexdigest()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache, durable=False) as tmp:  # a lost cache entry is recomputed
            Path(tmp).write_text(digest)
    except OSError:  # a read-only cache only costs speed
        pass
    return digest


def media_fingerprint(path: str | os.PathLike[str]) -> str:
    """Content hash (sha256) of a local file."""
    return files_sha256([path])


CLIP_KEYS = ("clip_id", "media_fingerprint", "start", "end", "text", "words", "label", "split")


def clip_fingerprint(clip: dict[str, Any]) -> str:
    """Hash of every clip-table field that matters downstream. A class label joins the hash only
    when the clip has one, so clips of datasets without classes keep the fingerprints they had
    before class labels existed (and a store ingested then is not rewritten)."""
    fields = {k: clip.get(k) for k in CLIP_KEYS}
    fields |= {k: clip[k] for k in CLASS_LABELS if clip.get(k) is not None}
    return hash_obj(fields)


# Which clip fields each modality's extractors read: a changed transcript re-extracts text only.
MODALITY_INPUTS: dict[str, tuple[str, ...]] = {
    "text": ("text", "words", "duration"),
    "audio": ("media_fingerprint", "start", "end"),
    "vision": ("media_fingerprint", "start", "end"),
}


def feature_fingerprint(clip: dict[str, Any], modality: str, extractor_identity: dict[str, Any]) -> str:
    """Hash of (the clip inputs this modality reads, the extractor identity)."""
    inputs = {k: clip.get(k) for k in MODALITY_INPUTS[modality]}
    return hash_obj({"inputs": inputs, "extractor": extractor_identity})


def feature_fingerprints(
    columns: dict[str, list[Any]], modality: str, extractor_identity: dict[str, Any]
) -> list[str]:
    """``feature_fingerprint`` of every clip of a column-wise clip table (lists of equal length), with
    the same values: the identity's JSON is serialised and hashed once, not once per clip (planning
    hashes every clip of the table: 10^6 clips at a time)."""
    keys = MODALITY_INPUTS[modality]
    n = len(columns[keys[0]])
    head = hashlib.sha256(('{"extractor":' + canonical_json(extractor_identity) + ',"inputs":').encode())
    out = []
    for values in zip(*(columns.get(k, [None] * n) for k in keys)):
        h = head.copy()
        h.update((canonical_json(dict(zip(keys, values))) + "}").encode())
        out.append(h.hexdigest()[:32])
    return out
