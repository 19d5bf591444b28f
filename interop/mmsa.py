"""The thuiar/MMSA feature-pickle format, shared by export and import (``docs/interop.md``).

``MMSA.data_loader.MMDataset`` reads ``data[split][key]`` for split in train/valid/test: ``id``
(``video$_$clip``), ``raw_text``, ``text`` [N, L, D], ``text_bert`` [N, 3, L] (input ids, attention
mask, token type ids), ``audio`` [N, La, Da], ``vision`` [N, Lv, Dv], ``regression_labels`` [N],
``annotations``, and for unaligned files ``audio_lengths``/``vision_lengths`` [N]; SIMS files add
``regression_labels_T``/``_A``/``_V``. Both directions use the id rules and names defined here.
"""

from __future__ import annotations

from typing import Any

from store.errors import StoreError

SPLITS = ("train", "valid", "test")
ID_SEP = "$_$"  # MMSA's separator of video and clip in a sample id
FEATURE_KEYS = {"text": "text", "audio": "audio", "vision": "vision"}  # modality -> key of [N, L, D] values
LENGTH_KEYS = {"audio": "audio_lengths", "vision": "vision_lengths"}  # modality -> key of [N] lengths
UNIMODAL = {"label_T": "regression_labels_T", "label_A": "regression_labels_A", "label_V": "regression_labels_V"}
TEXT_BERT = "text_bert"


def mmsa_id(clip_id: str, video_id: str | None) -> str:
    """``video$_$clip``: the clip part drops a ``<video>_`` prefix (MMSA ``label.csv`` ids are
    ``clip_id`` within the video, emoflow's ``<video>_<clip>``); a clip that is its own video (a
    manifest without video ids) keeps its whole id on both sides. A video id holding ``$_$`` cannot be
    written (a reader splits at the first one), so it is a ``StoreError`` naming the clip."""
    video = video_id or clip_id
    if ID_SEP in video:
        raise StoreError(f"clip {clip_id!r}: its video id {video!r} contains {ID_SEP!r}, the separator of MMSA's "
                         f"<video>{ID_SEP}<clip> ids, so no MMSA reader could split it back; rename the video")
    prefix = f"{video}_"
    clip = clip_id[len(prefix):] if clip_id.startswith(prefix) and len(clip_id) > len(prefix) else clip_id
    return f"{video}{ID_SEP}{clip}"


def decoded(value: Any) -> Any:
    """Bytes (a Python 2 pickle's str, a numpy ``S`` array's items) as the UTF-8 text they hold;
    undecodable bytes stay lone surrogates, which the ingest grammar rejects as not UTF-8. Other
    values are returned as given."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def split_mmsa_id(value: Any) -> tuple[str, str]:
    """(video_id, clip_id) of an MMSA sample id: the inverse of ``mmsa_id`` (the ``label.csv`` rule of
    ``corpora.layouts.mmsa.read_mmsa``: ``<video>_<clip>`` unless the clip part already is that or the video).
    An id without ``$_$`` is its own video. Non-strings are returned as given, for validation to reject."""
    value = decoded(value)
    text = str(value) if isinstance(value, str) else value
    if not isinstance(text, str) or ID_SEP not in text:
        return text, text
    video, clip = text.split(ID_SEP, 1)
    if clip == video or clip.startswith(f"{video}_"):
        return video, clip
    return video, f"{video}_{clip}"


def annotation(label: float) -> str:
    """The ``annotations`` word MMSA files carry per sample (the sign of the score)."""
    return "Positive" if label > 0 else "Negative" if label < 0 else "Neutral"
