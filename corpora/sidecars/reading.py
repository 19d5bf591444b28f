"""Read one transcript file, whatever its format: decode it, repair it, parse it by its name."""

from __future__ import annotations

from pathlib import Path

from corpora.rows import INVALID_TEXT
from corpora.sidecars.cues import SidecarError, Transcript, clean_text, shown
from corpora.sidecars.decoding import ENCODING_NOTES, decode_text, read_bytes, repaired
from corpora.sidecars.finding import suffix_list, transcript_format
from corpora.sidecars.subtitles import read_subtitles
from corpora.sidecars.word_timings import read_words


def read_transcript(path: Path) -> Transcript:
    """Read one sidecar by its name's format; ``SidecarError`` names the file and the problem.
    ``Transcript.notes`` says what was read leniently (an encoding guessed, times or markup
    repaired), for the caller to log."""
    found = transcript_format(path.name)
    if found is None:
        raise SidecarError(INVALID_TEXT, f"{shown(path)}: not a transcript file (expected {suffix_list()})")
    fmt = found[1]
    text, encoding = decode_text(read_bytes(path), path)
    notes: list[str] = []
    if encoding in ENCODING_NOTES:
        notes.append(f"{shown(path)}: {ENCODING_NOTES[encoding]}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # CRLF and old Mac CR-only files
    text = repaired(text, path, notes)
    if fmt == "words":
        transcript = read_words(path, text, notes)
    elif fmt == "txt":
        transcript = Transcript(path, "txt", [], clean_text(text), timed=False)
    else:
        transcript = read_subtitles(path, text, fmt, notes)
    transcript.encoding, transcript.notes = encoding, notes
    return transcript
