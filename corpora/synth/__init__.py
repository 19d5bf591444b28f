"""A seeded generator of a small but real multimodal sentiment dataset (the embedded demo data).

Why it exists: ``emoflow demo`` and the core tests must run on a fresh machine with nothing but the
install, and the real corpora (MOSI, MELD) ship no video. So we write real H.264/AAC ``.mp4`` files
with PyAV whose *content* carries the label, one planted component per modality:

* ``t`` (text): the transcript's sentiment words ("wonderful", "dull", ...); neutral filler otherwise.
* ``a`` (audio): a harmonic, voice-like tone per word: pitch (low = negative, high = positive),
  spectral tilt and a loudness contour follow ``a``; silence (light noise) between words.
* ``v`` (vision): the background colour runs from blue (negative) to warm orange (positive); a
  neutral grey square moves and "talks" (grows while a word is spoken) so frames are not constant.

``label = clip(t + a + v + noise, -3, 3)`` with ``t, a, v`` drawn independently (balanced over a
few levels), so no single modality predicts the label well and a fusion model beats each one.

Three on-disk layouts are written, the ones ingest reads: ``manifest`` (CSV + JSONL),
``mmsa`` (``label.csv`` + ``Raw/<video_id>/<clip_id>.mp4``) and ``mosi`` (CMU-MOSI style long
videos with segment windows, ``.annotprocessed`` transcripts and folds). Whatever the layout, the
canonical clip id is ``<video_id>_<local_id>`` with a zero-padded ``local_id`` such as ``"0001"``
(read those columns as strings).

:func:`generate_long_video` writes one long video (a minute or more, by default) of back-to-back
segments rendered by the same rules, with known labels and an ``.srt`` sidecar: the input the demo
predicts on.
"""

from corpora.synth.encode import truncate_file, write_clip
from corpora.synth.generate import generate_dataset
from corpora.synth.long import LongVideo, PlantedSegment, generate_long_video
from corpora.synth.signals import (
    AUDIO_SAMPLE_RATE,
    FRAME_SIZE,
    LEXICON,
    NEGATIVE_RGB,
    POSITIVE_RGB,
    GeneratedDataset,
    Layout,
    SynthClip,
    background_rgb,
    pitch_hz,
    render_audio,
    render_frames,
    text_polarity,
)

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "FRAME_SIZE",
    "LEXICON",
    "NEGATIVE_RGB",
    "POSITIVE_RGB",
    "GeneratedDataset",
    "Layout",
    "LongVideo",
    "PlantedSegment",
    "SynthClip",
    "background_rgb",
    "generate_dataset",
    "generate_long_video",
    "pitch_hz",
    "render_audio",
    "render_frames",
    "text_polarity",
    "truncate_file",
    "write_clip",
]
