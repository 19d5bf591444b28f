"""Transcripts that sit next to media files ("sidecars"): find them and read them into cues.

Formats, by file name (extensions in any case):

- ``foo.words.json``: word timings, a list of ``{word, start, end}`` objects (extra keys such as
  ``conf`` ignored), or of segments ``{..., words: [...]}`` (the ASR export in
  ``shared/data/clips``), or an object with a ``segments``, ``words`` or ``word_segments`` list
  (Whisper's and WhisperX's JSON). Cues are built from the words: a cue ends after sentence
  punctuation or before a pause of ``PAUSE_S``. An ASR's own segments are ignored: they are
  fixed-size chunks, not sentences; but segments without word timings (Whisper run without them)
  are the only times there are, so each becomes a cue. WhisperX's words without times (numbers,
  symbols) are placed between their timed neighbours.
- ``foo.srt`` (SubRip, parsed by the ``srt`` package) and ``foo.vtt`` (WebVTT, by ``webvtt-py``):
  cue timing lines are first made canonical by one lenient rule (``_canonical_timings``), markup
  is stripped (``<i>``, ``<font>``, VTT voice and class tags, ASS overrides such as ``{\an8}``,
  HTML entities), the lines of a cue are joined with a space, empty cues dropped and
  YouTube-style rolling captions (each cue repeating the previous line, plus 10 ms "hold" cues)
  folded back into one cue per line.
- ``foo.txt``: plain text without times (``Transcript.timed`` is False).

Only regular files are read (a FIFO would block). Bytes are decoded by the fixed rule of
``decode_text`` (BOMs, UTF-16 without one, UTF-8, else Windows-1252, and what is rejected); line
endings become ``\n``, mojibake is repaired and control characters removed. Whatever is read
leniently (a guessed encoding, repaired times or text) is a line in ``Transcript.notes``, which
the caller logs. A file that cannot be used raises ``SidecarError`` (a ``Reject`` with one of the
reason codes of ``corpora.rows``) whose message names the file, the problem and, where there is
one, its line; quoted content is cut short.

One module per job: ``finding`` (which transcript belongs to which media), ``reading``
(``read_transcript``), ``decoding`` (bytes to text), ``subtitles`` (SRT/VTT), ``word_timings``
(``.words.json``), ``cues`` (what a transcript is, and what the readers share)."""
