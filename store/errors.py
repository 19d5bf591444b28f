"""The error hierarchy shared by every package: typed, with messages that name the clip and problem."""

from __future__ import annotations


class EmoflowError(Exception):
    """Base of every error emoflow raises on purpose."""


class ConfigError(EmoflowError):
    """A config file or override is invalid."""


class ManifestError(EmoflowError):
    """A dataset manifest cannot be read (missing columns, unknown layout)."""


class MediaError(EmoflowError):
    """A media file cannot be used for a clip."""

    def __init__(self, message: str, *, clip_id: str | None = None, path: str | None = None) -> None:
        prefix = " ".join(p for p in (f"clip {clip_id!r}:" if clip_id else "", f"{path}:" if path else "") if p)
        super().__init__(f"{prefix} {message}".strip())
        self.clip_id = clip_id
        self.path = path


class CorruptMediaError(MediaError):
    """The file exists but cannot be decoded (truncated, zero bytes, garbage)."""


class UnsupportedMediaError(MediaError):
    """The file decodes but lacks what is needed (no such stream, unknown codec)."""


class StoreError(EmoflowError):
    """The store is unreadable, unwritable or inconsistent."""


class StoreConflictError(StoreError):
    """A write would mix incompatible data (different extractor identity, mismatched view)."""
