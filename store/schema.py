"""Arrow schemas of the store's tables (one place, so writers and readers cannot drift)."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa

# -- aligned views: what the writer (features.align) and the reader (training) agree on ---------
Modality = Literal["text", "audio", "vision"]
MODALITIES: tuple[Modality, ...] = ("text", "audio", "vision")
STD_FLOOR = 1e-6  # a dimension with a smaller train std is scaled by 1 (constant features stay as-is)

WORD = pa.struct([("word", pa.string()), ("start", pa.float64()), ("end", pa.float64())])

CLIPS = pa.schema(
    [
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("media_uri", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("duration", pa.float64()),
        ("text", pa.string()),
        ("words", pa.list_(WORD)),
        ("label", pa.float64()),
        ("label_T", pa.float64()),
        ("label_A", pa.float64()),
        ("label_V", pa.float64()),
        ("split", pa.string()),
        ("has_video", pa.bool_()),
        ("has_audio", pa.bool_()),
        ("media_fingerprint", pa.string()),
        ("clip_fingerprint", pa.string()),
        # Added later (absent from older stores; ``conform`` fills them with nulls on read):
        ("label_emotion", pa.string()),  # emotion class, e.g. MELD's 7 or IEMOCAP's 4/6; null: none
        ("label_sentiment", pa.string()),  # sentiment class: negative / neutral / positive; null: none
        ("text_original", pa.string()),  # the transcript as shipped when ingest repaired it; null: unchanged
    ]
)

#: class-label columns of the clip table: a training stage picks its target as ``label_<name>``
CLASS_LABELS: tuple[str, ...] = ("label_emotion", "label_sentiment")


def conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    """``table`` in ``target``'s column order and types, a missing nullable column added as nulls:
    a table written before a column existed (an older store) still reads in the current schema."""
    for f in target:
        if f.name not in table.column_names and f.nullable:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(target.names).cast(target)


REJECTS = pa.schema(
    [
        ("source", pa.string()),  # manifest file and row, e.g. "manifest.csv:12"
        ("clip_id", pa.string()),
        ("reason", pa.string()),  # short stable code, e.g. "missing_file"
        ("message", pa.string()),
    ]
)

INDEX = pa.schema(
    [
        ("clip_id", pa.string()),
        ("shard", pa.string()),
        ("offset", pa.int64()),
        ("length", pa.int64()),
        ("fingerprint", pa.string()),
        ("checksum", pa.string()),
        ("absent", pa.string()),  # reason a modality is missing, null when present
        ("meta", pa.string()),  # JSON provenance (streams chosen, sample rate, ...)
        ("duration", pa.float64()),  # media seconds covered, for throughput figures
        ("committed_at", pa.timestamp("us", tz="UTC")),
    ]
)

FAILURES = pa.schema(
    [
        ("clip_id", pa.string()),
        ("feature_set", pa.string()),
        ("extractor", pa.string()),
        ("fingerprint", pa.string()),
        ("stage", pa.string()),
        ("error_type", pa.string()),
        ("message", pa.string()),
        ("transient", pa.bool_()),
        ("run_id", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
    ]
)

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("feature_set", pa.string()),
        ("extractor", pa.string()),
        ("clips_done", pa.int64()),
        ("clips_skipped", pa.int64()),
        ("clips_failed", pa.int64()),
        ("media_seconds", pa.float64()),
        ("wall_seconds", pa.float64()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("clips_linked", pa.int64()),  # sharing a committed extraction of identical inputs; null in older parts
    ]
)

#: ``predictions/<run>/<video>.parquet``: one row per segment of new media (stages.predict)
PREDICTIONS = pa.schema(
    [
        ("media", pa.string()),  # the media file (or subtitle file for text-only input) as given
        ("video_id", pa.string()),
        ("segment_id", pa.string()),  # = the clip id in the predict store
        ("start", pa.float64()),  # media time span of the segment, seconds
        ("end", pa.float64()),
        ("text", pa.string()),
        ("modalities", pa.list_(pa.string())),  # modalities the prediction saw (present and used)
        ("score", pa.float64()),  # the M head (seed ensemble mean when several seeds)
        ("score_std", pa.float64()),  # std of the M head over seeds (0 for one seed)
        ("score_text", pa.float64()),  # unimodal heads (null: no such head, or the segment lacks its modality)
        ("score_audio", pa.float64()),
        ("score_vision", pa.float64()),
        ("error", pa.string()),  # null, or why this segment got no prediction
        ("run", pa.string()),
        ("run_fingerprint", pa.string()),
        ("view_fingerprint", pa.string()),
        ("predicted_at", pa.timestamp("us", tz="UTC")),
    ]
)
