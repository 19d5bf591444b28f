"""A manifest row on its way to the clip table: as a layout found it (``RawClip``), or turned down
(``Reject``, with a stable reason code; the codes are listed in docs/reliability.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Reject reasons: stable codes, documented in docs/reliability.md.
MISSING_FILE = "missing_file"
EMPTY_MEDIA = "empty_media"
UNREADABLE_MEDIA = "unreadable_media"
PATH_ESCAPES_ROOT = "path_escapes_root"
INVALID_PATH = "invalid_path"
DUPLICATE_CLIP_ID = "duplicate_clip_id"
INVALID_ID = "invalid_id"
INVALID_LABEL = "invalid_label"
INVALID_WINDOW = "invalid_window"
WINDOW_PAST_END = "window_past_end"
INVALID_TEXT = "invalid_text_encoding"
INVALID_WORDS = "invalid_words"
INVALID_SPLIT = "invalid_split"
INVALID_ROW = "invalid_row"
MISSING_VALUE = "missing_value"
UNEXPECTED_ERROR = "unexpected_error"  # a bug of ours, never a user's fault; the row is still kept

EXTRA_LABELS = ("label_T", "label_A", "label_V")


class Reject(Exception):  # noqa: N818 - a verdict on an input row, not an error of ours
    """One input row is invalid; carries a reason code and a message naming the problem."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class RawClip:
    """A row as a layout reader found it, before validation: values are as read (any JSON type).

    ``problem`` is set by a reader that already knows the row is bad (a line that is not a JSON
    object, an id that would escape the root if used in a path); ``validate`` raises it first.
    """

    source: str
    clip_id: Any
    video_id: Any = None
    media: Any = None  # path relative to the dataset root, None/blank for a text-only clip
    start: Any = None
    end: Any = None
    text: Any = None
    words: Any = None
    label: Any = None
    split: Any = None
    extra_labels: dict[str, Any] = field(default_factory=dict)
    classes: dict[str, Any] = field(default_factory=dict)  # store.schema.CLASS_LABELS -> class name
    text_original: str | None = None  # the text as read, when the layout repaired ``text``
    problem: Reject | None = None


def media_file_problem(path: Path, shown: str) -> Reject | None:
    """Why ``path`` cannot be a clip's media before a decoder opens it (``shown`` names it in the
    message): a missing file or broken symlink, something that is no regular file (a FIFO would
    block the decoder), an empty file. None: a decoder may try it."""
    if not path.exists():
        return Reject(MISSING_FILE, f"{shown} does not exist")
    if not path.is_file():
        return Reject(MISSING_FILE, f"{shown} is not a file")
    if path.stat().st_size == 0:
        return Reject(EMPTY_MEDIA, f"{shown} is empty (0 bytes)")
    return None
