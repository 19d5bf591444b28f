"""One thread runs a frame encoder's batches for every task of a process, in one batch shape.

Why (issue 19, CUDA): torch keeps cuDNN's execution plans per thread and per input shape (ATen's
``thread_local BenchmarkCache`` in ``native/cudnn/Conv_v8.cpp``), and planning EfficientNet-Lite0's
convolutions for a new shape costs about as much as a cold first batch. Tasks of the threads runner
called the CNN from their own threads with batches of whatever size their clips left (92, 88, 95
frames ...), so every (thread, batch size) pair planned every convolution again. The H200 run in
``docs/performance.md`` fits that: three concurrent vision tasks of 90 frames each took 7.7 s
where one took 2.7 s. Here the process has one thread per encoder, every batch is padded to
``batch_size`` rows, and a warm-up batch plans each frame size as soon as an extractor asks for it,
while its first clips still decode. Requests that concurrent tasks queue while a batch runs share
the next batch (frames across clips and tasks, decoding stays on the tasks' threads).

A padded row is zeros; the network treats every row of a batch on its own (BatchNorm folded, eval
mode), so the real rows' features are those of an unpadded batch within the runtime's float noise.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from features.extractors.base import model_cache
from features.extractors.efficientnet import FEATURE_DIM, FrameEncoder, load_frame_encoder
from features.extractors.onnx_runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class _Request:
    """Frames of one caller ([N, H, W, 3] uint8) and where their features go."""

    frames: np.ndarray
    done: Future[np.ndarray] = field(default_factory=Future)


def padded_features(encoder: FrameEncoder, frames: np.ndarray, rows: int) -> np.ndarray:
    """``encoder.features`` of at most ``rows`` frames, run as a batch of exactly ``rows`` (zero
    frames after the real ones), so every call has one input shape."""
    n = len(frames)
    if n < rows:
        frames = np.concatenate([frames, np.zeros((rows - n, *frames.shape[1:]), frames.dtype)])
    return encoder.features(frames)[:n]


def _next_group(first: _Request, requests: queue.SimpleQueue[_Request | None], rows: int) -> list[_Request]:
    """``first`` plus the queued requests of its frame shape, until ``rows`` frames or the queue is
    empty: no waiting for more. Requests of another shape (vision.face crops beside vision.cnn
    frames) and a stop go back to the queue for later rounds."""
    group, n, later = [first], len(first.frames), []
    while n < rows:
        try:
            item = requests.get_nowait()
        except queue.Empty:
            break
        if item is not None and item.frames.shape[1:] == first.frames.shape[1:]:
            group.append(item)
            n += len(item.frames)
        else:
            later.append(item)
    for item in later:
        requests.put(item)
    return group


def _run_group(encoder: FrameEncoder, group: list[_Request], rows: int) -> None:
    """Run a group's frames in padded batches of ``rows`` and hand each request its rows; a failed
    batch fails every request of the group (their callers fail their clips)."""
    try:
        frames = group[0].frames if len(group) == 1 else np.concatenate([r.frames for r in group])
        out = np.concatenate([padded_features(encoder, frames[lo : lo + rows], rows)
                              for lo in range(0, len(frames), rows)])
    except BaseException as exc:  # whatever it is, no caller may wait forever for these frames
        for r in group:
            r.done.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        return
    bounds = np.cumsum([len(r.frames) for r in group])[:-1]
    for r, part in zip(group, np.split(out, bounds)):
        r.done.set_result(part)


def _serve(encoder: FrameEncoder, requests: queue.SimpleQueue[_Request | None], rows: int) -> None:
    """The encoder thread: groups and runs requests until the stop (None) arrives. It holds no
    reference to its ``SharedBatchEncoder``, so dropping that one stops it."""
    while (first := requests.get()) is not None:
        _run_group(encoder, _next_group(first, requests, rows), rows)


class SharedBatchEncoder:
    """A ``FrameEncoder`` whose ``features`` calls, from any thread, run on one thread of its own in
    batches of exactly ``batch_size`` frames (module docstring). Thread-safe; ``features`` blocks
    until its frames are done."""

    def __init__(self, encoder: FrameEncoder, batch_size: int) -> None:
        self.runtime = encoder.runtime
        self.batch_size = batch_size
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._warmed: set[tuple[int, ...]] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=_serve, args=(encoder, self._requests, batch_size),
                                        name=f"emoflow-{encoder.runtime}-frames", daemon=True)
        self._thread.start()
        weakref.finalize(self, self._requests.put, None)

    def features(self, frames: np.ndarray) -> np.ndarray:
        if len(frames) == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        request = _Request(np.ascontiguousarray(frames))
        self._requests.put(request)
        return request.done.result()

    def warm_up(self, height: int, width: int) -> None:
        """Queue one batch of blank ``height`` × ``width`` frames, once per size: the runtime plans
        that shape while the caller's first clips decode. Its result and any error are dropped (a
        real batch reports the error for its clips)."""
        with self._lock:
            if (height, width) in self._warmed:
                return
            self._warmed.add((height, width))
        self._requests.put(_Request(np.zeros((self.batch_size, height, width, 3), np.uint8)))


def shared_frame_encoder(
    weights: str, device: str, runtime: Runtime, channels_last: bool, batch_size: int,
) -> SharedBatchEncoder:
    """The process's one shared encoder (and thread) for these weights, device, runtime and batch
    size. Keyed by process too: a forked child inherits the parent's encoder but not its thread, so
    calling that one would wait forever."""
    return _shared_frame_encoder(weights, device, runtime, channels_last, batch_size, os.getpid())


@model_cache
def _shared_frame_encoder(
    weights: str, device: str, runtime: Runtime, channels_last: bool, batch_size: int, pid: int,
) -> SharedBatchEncoder:
    log.debug("frames of every task run on one %s thread in batches of %d", device, batch_size)
    return SharedBatchEncoder(load_frame_encoder(weights, device, runtime, channels_last), batch_size)
