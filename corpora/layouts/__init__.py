"""Layout readers: find a dataset's rows and media files without judging their values
(``corpora.ingest.validate`` does that), one module per layout: ``manifest`` (generic CSV/JSONL),
``mmsa``, ``mosi``, ``meld``, and ``media`` (new, unlabeled media to score); ``detect`` picks one
for ``--layout auto``. A row a reader already knows to be bad (unparseable, an id that would build
a path outside the root) carries its ``Reject``. ``tables`` and ``media_files`` are what readers
share: CSV/JSONL rows with their sources, and finding a clip's media file by its id."""
