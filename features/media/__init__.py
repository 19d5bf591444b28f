"""Media decoding for the extractors: probing (``probe``), the media timeline and stream choice
(``streams``), video frames with decord or PyAV (``video``), audio with PyAV (``audio``).

Why these choices:

- **Probe first** (``features.media.probe``): decord can dump file bytes to the console on non-video input
  and cannot tell us which streams exist, so every decode starts from a PyAV probe; a clip whose
  media lacks a modality gets a recorded absence, an unreadable file a ``CorruptMediaError``, a
  stream this FFmpeg build has no decoder for an ``UnsupportedMediaError``.
- **One media timeline** for every stream and decoder: t=0 is the earliest start of an audio/video
  stream (``MediaInfo.start_time`` on the file's clock; see ``features.media.probe``), so an MPEG-TS file
  starting at 1.46 s or an mp4 whose edit list delays a track gives audio rows, PyAV frames and
  decord frames at the same times. PyAV maps ``frame.time - start_time``; decord reports
  ``pts - the stream's start_time``, so its times are shifted by the stream's start on the timeline.
  Before a stream starts, audio is silence and video shows the stream's first frame, in a clip
  window that reaches the stream's data; a window outside it gets nothing from that stream (no
  samples, no rows: ``streams.overlaps``).
- **Upright pictures.** Frames are rotated by the stream's display matrix (``meta["rotation"]``,
  degrees counter-clockwise, in quarter turns) as a player does, then sized ``width`` x ``height``.
- **Explicit streams.** A container can hold several video/audio streams and the decoders disagree
  on the default (for ``nasa_webb_narration.mp4`` PyAV's first streams are the 320x180 video and the
  8 kHz audio, decord's VideoReader takes the 480x270 video and its AudioReader the 8 kHz audio).
  We pick the highest-resolution video and highest-sample-rate audio unless a stream index is
  configured, and record the choice in the result meta.
- **decord has no stream selector** in its Python API (0.6: ``VideoReader`` always opens
  ``av_find_best_stream``'s choice). We check which stream it opened (frame count + fps against the
  probe) and, when it is not the chosen one, remux the chosen stream alone (packet copy, no
  re-encode) into a temporary Matroska file that decord then reads. If decord cannot read a file
  that PyAV can, we decode the stream with PyAV instead. ``meta["video_decoder"]`` says which.
- **decord only where it is right.** decord 0.6 (its own FFmpeg 4.1) is used on mp4/mov and
  Matroska/WebM only: on MPEG-TS with B-frames its seeks return wrong frames (every frame of a clip
  white, or the picture 0.4 s early), and it applies an mp4 rotation but not a Matroska or codec
  one. Other containers and rotated streams are decoded with PyAV, for any ``decoder`` but
  ``"pyav"``, and ``meta["decord_skipped"]`` says why.
- **Bounded memory.** Frames are resized inside the decoder (``VideoReader(width=, height=)``,
  swscale for PyAV) and fetched in chunks of sampled indices (never ``next()``), so a 4K or
  hour-long input only ever holds ``chunk_size`` small frames.
- **Audio with PyAV**, resampled to 16 kHz mono float32 by swresample (librosa cannot read mp4 and
  its audioread fallback is deprecated; decord's AudioReader ignores stream choice).

Times of returned rows are seconds from the clip start; the clip is ``[start, end)`` of the media
timeline.
"""
