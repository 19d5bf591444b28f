"""Which files are transcripts, and which transcript belongs to which media file."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

from corpora.sidecars.cues import Format

#: transcript suffixes in precedence order (a media file's first match wins); compared case-insensitively
SUFFIXES: tuple[tuple[str, Format], ...] = (
    (".words.json", "words"),
    (".srt", "srt"),
    (".vtt", "vtt"),
    (".txt", "txt"),
)


def transcript_format(name: str) -> tuple[str, Format] | None:
    """``(base name, format)`` of a transcript file name (``foo.en.srt`` -> ``("foo.en", "srt")``),
    None for any other file."""
    lower = name.lower()
    for suffix, fmt in SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], fmt
    return None


def sidecar_candidates(media: Path, names: Iterable[str], media_stems: Collection[str] = ()) -> list[Path]:
    """Every transcript among ``names`` (file names in the media's folder) that belongs to ``media``,
    best first.

    Precedence: format first (``.words.json`` > ``.srt`` > ``.vtt`` > ``.txt``), then the untagged
    name (``foo.srt``) before language-tagged ones (``foo.en.srt``, ``foo.TOS-en.srt``), these by
    name. Names are compared as strings, never as globs; a name that matches only up to case
    (``Interview.mp4`` and ``interview.srt``, as case-insensitive file systems let people write
    them) comes after the exact ones, unless another media file in ``media_stems`` has that name
    exactly. A tagged name whose base is itself the stem of another media file in ``media_stems``
    belongs to that file (``foo.vp9.srt`` is the sidecar of ``foo.vp9.webm``, not of ``foo.mp4``).
    """
    ranked: list[tuple[int, int, int, str]] = []
    for name in names:
        found = transcript_format(name)
        if found is None or found[0] in media_stems:
            continue
        base, fmt = found
        rank = [f for _, f in SUFFIXES].index(fmt)
        for case, stem in enumerate((media.stem, media.stem.casefold())):
            key = base if case == 0 else base.casefold()
            if key == stem:
                ranked.append((case, rank, 0, name))
            elif key.startswith(stem + ".") and key != stem + "." and base not in media_stems:
                ranked.append((case, rank, 1, name))
            else:
                continue
            break
    return [media.parent / name for *_, name in sorted(ranked)]


def find_sidecar(media: Path, media_stems: Collection[str] = ()) -> Path | None:
    """The transcript of ``media`` by the precedence of ``sidecar_candidates``, None if it has none."""
    try:
        names = [p.name for p in media.parent.iterdir() if p.is_file()]
    except OSError:
        return None
    found = sidecar_candidates(media, names, media_stems)
    return found[0] if found else None


def suffix_list() -> str:
    return ", ".join(s for s, _ in SUFFIXES)
