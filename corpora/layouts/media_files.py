"""How layouts find a clip's media file by its id: by exact name among a folder's media files,
never as a glob, and only after checking that the id cannot name a path outside the dataset root."""

from __future__ import annotations

import os
from pathlib import Path

from corpora.fields import printable
from corpora.rows import PATH_ESCAPES_ROOT, Reject

AUDIO_SUFFIXES = frozenset({".mp3", ".wav", ".flac", ".ogg", ".m4a", ".opus"})  # audio-only media
MEDIA_SUFFIXES = AUDIO_SUFFIXES | {".mp4", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m4v"}  # media, found by name


def media_names(folder: Path) -> dict[str, str]:
    """Stem -> name of the media files in ``folder`` (``MEDIA_SUFFIXES``, any case; none if it cannot
    be listed): other files, such as an OpenFace ``.csv`` next to a clip, are never its media. Of
    several with one stem, a video comes before an audio-only file (audio extracted next to its
    video must not cost the clip its frames), then the first by name."""
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return {}
    found: dict[str, str] = {}
    for name in sorted(names, key=lambda n: (os.path.splitext(n)[1].lower() in AUDIO_SUFFIXES, n)):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in MEDIA_SUFFIXES:
            found.setdefault(stem, name)
    return found


def find_media(directory: Path, stem: str, root: Path) -> str | None:
    """The media file of ``stem`` in ``directory`` (``media_names``), relative to ``root``: an exact
    name match, never a glob, so ids with ``*`` or ``[`` cannot pick another file."""
    name = media_names(directory).get(stem)
    return str((directory / name).relative_to(root)) if name else None


def unsafe_id(source: str, *ids: str) -> Reject:
    """The reject of a row whose id cannot be one file name inside the root (``/``, ``..``, control
    characters): checked before any path is built from it."""
    shown = ", ".join(repr(printable(i)) for i in ids)
    return Reject(PATH_ESCAPES_ROOT, f"{source}: id {shown} cannot name a file inside the dataset root")
