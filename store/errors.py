"""The error hierarchy shared by every package: typed, with messages that name the clip and problem."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class EmoflowError(Exception):
    """Base of every error emoflow raises on purpose."""


class ConfigError(EmoflowError):
    """A config file or override is invalid."""

    @classmethod
    def from_validation(cls, exc: ValidationError, what: str) -> ConfigError:
        """``what: <validation_problems>``, one line."""
        return cls(f"{what}: {validation_problems(exc)}")


def validation_problems(exc: ValidationError) -> str:
    """One line naming every bad field and its problem: pydantic's own message spans lines
    and names the model class, not the config key the user typed."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors())


class RegistryError(ConfigError):
    """A name that no registry knows (an extractor); the message lists the known names."""


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


class TrainingError(EmoflowError):
    """Training diverged: a loss or a model's prediction is no longer a finite number, so nothing
    it would report or save could be trusted."""
