"""Fingerprints: canonical JSON + hashlib, never pickle.

* media fingerprint — content hash of the file, cached by (path, size, mtime) in a small
  on-disk cache so re-ingesting a large dataset does not re-read every byte;
* clip fingerprint — what the clip table says about a clip (media, window, text, label, split);
* feature fingerprint — what determines one extractor's output for one clip: the inputs that
  extractor reads (media + window for audio/vision, transcript + word timings for text) and the
  extractor identity (name, version, config, model files).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def canonical_json(obj: Any) -> str:
    """Stable JSON: sorted keys, no whitespace, floats rounded to 6 decimals.

    A NaN or infinity raises ``ValueError``: mapping it to null would give a clip with a NaN
    window the identity of the whole-file clip of the same media (ingest rejects such values, so
    one reaching a fingerprint is a bug to surface, not to hash).
    """
    return json.dumps(_normalise(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _normalise(obj: Any) -> Any:
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


def _cache_dir() -> Path:
    root = os.environ.get("EMOFLOW_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "emoflow"
    )
    return Path(root) / "media-fingerprints"


def media_fingerprint(path: str | os.PathLike[str]) -> str:
    """Content hash (sha256) of a local file, cached by resolved path + size + mtime_ns."""
    p = Path(path).resolve()
    st = p.stat()
    key = hashlib.sha256(f"{p}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    cache = _cache_dir() / key[:2] / key
    try:
        return cache.read_text().strip()
    except OSError:
        pass
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(digest)
        os.replace(tmp, cache)
    except OSError:  # a read-only cache only costs speed
        pass
    return digest


def clip_fingerprint(clip: dict[str, Any]) -> str:
    """Hash of every clip-table field that matters downstream."""
    keys = ("clip_id", "media_fingerprint", "start", "end", "text", "words", "label", "split")
    return hash_obj({k: clip.get(k) for k in keys})


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
