"""The shared frame encoder (issue 19, CUDA): one thread runs every task's CNN batches in one padded
shape, concurrent requests share batches, failures stay with their callers, and extraction through
it gives the features of the task-thread path. Run here on the CPU with the torch model; the CUDA
run is in tests/gpu."""

from __future__ import annotations

import gc
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from features.extractors.base import create_extractor
from features.extractors.efficientnet import TorchFrameEncoder, frame_features, load_efficientnet_lite0
from features.extractors.shared_batches import SharedBatchEncoder, padded_features, shared_frame_encoder
from features.extractors.vision import CnnVisionExtractor
from tests.helpers.media import clip_of

SIZE = 32  # frames this small keep the real network fast; Lite0 takes any size


class Recording:
    """A frame encoder that records the shape of every batch it runs, optionally waiting at a gate
    before the first one, and failing on frames whose first pixel is 255."""

    runtime = "torch"

    def __init__(self, inner: TorchFrameEncoder | None = None, gate: threading.Event | None = None) -> None:
        self.inner, self.gate = inner, gate
        self.shapes: list[tuple[int, ...]] = []
        self.entered = threading.Event()

    def features(self, frames: np.ndarray) -> np.ndarray:
        self.shapes.append(frames.shape)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
            self.gate = None
        if (frames[:, 0, 0, 0] == 255).any():
            raise RuntimeError("CUDA out of memory (stand-in)")
        if self.inner is not None:
            return self.inner.features(frames)
        return np.repeat(frames[:, 0, 0, :1].astype(np.float32), 1280, axis=1)  # row i's value: its pixel


def frames_of(values: list[int], size: int = SIZE) -> np.ndarray:
    """One frame per value, every pixel that value (what ``Recording`` without a model returns)."""
    return np.stack([np.full((size, size, 3), v, np.uint8) for v in values])


@pytest.fixture(scope="module")
def torch_encoder() -> TorchFrameEncoder:
    return TorchFrameEncoder(load_efficientnet_lite0(device="cpu"))


def test_concurrent_callers_get_their_own_features_from_batches_of_one_shape(torch_encoder) -> None:
    recording = Recording(torch_encoder)
    shared = SharedBatchEncoder(recording, batch_size=4)
    rng = np.random.default_rng(0)
    requests = [rng.integers(0, 255, (n, SIZE, SIZE, 3), dtype=np.uint8) for n in (1, 3, 4, 5, 2, 9, 1, 7)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(shared.features, requests))
    for frames, got in zip(requests, results):
        np.testing.assert_allclose(got, frame_features(torch_encoder.model, frames), atol=1e-4)
    assert {s[0] for s in recording.shapes} == {4}  # every batch padded to batch_size rows
    assert sum(s[0] for s in recording.shapes) < 4 * sum(-(-len(r) // 4) for r in requests) + 4


def queued_behind_a_running_batch(requests: list[np.ndarray]) -> tuple[list[np.ndarray], Recording]:
    """Features of a first one-frame request (value 1) and of ``requests``, all sent while the first
    batch is held running, so ``requests`` wait in the queue together; and the batches that ran."""
    gate = threading.Event()
    recording = Recording(gate=gate)
    shared = SharedBatchEncoder(recording, batch_size=8)
    with ThreadPoolExecutor(len(requests) + 1) as pool:
        first = pool.submit(shared.features, frames_of([1]))
        assert recording.entered.wait(10)  # the first batch is running (held at the gate)
        later = [pool.submit(shared.features, r) for r in requests]
        while shared._requests.qsize() < len(requests):
            threading.Event().wait(0.01)
        gate.set()
        return [f.result(10) for f in (first, *later)], recording


def test_requests_queued_while_a_batch_runs_share_the_next_batch() -> None:
    results, recording = queued_behind_a_running_batch([frames_of([v, v]) for v in (2, 3, 4)])
    assert [r[:, 0].tolist() for r in results] == [[1], [2, 2], [3, 3], [4, 4]]
    assert len(recording.shapes) == 2  # three callers, one batch


def test_frames_of_another_size_never_share_a_batch() -> None:
    results, recording = queued_behind_a_running_batch([frames_of([2]), frames_of([3], size=SIZE * 2),
                                                         frames_of([4])])
    assert [r[0, 0] for r in results] == [1, 2, 3, 4]
    assert [s[1] for s in recording.shapes] == [SIZE, SIZE, SIZE * 2]  # 2 and 4 together, 3 alone


def test_a_failed_batch_fails_its_callers_and_the_thread_serves_the_next() -> None:
    shared = SharedBatchEncoder(Recording(), batch_size=4)
    with pytest.raises(RuntimeError, match="out of memory"):
        shared.features(frames_of([7, 255]))
    assert shared.features(frames_of([5, 6]))[:, 0].tolist() == [5, 6]


def test_warm_up_runs_one_blank_batch_per_size_and_answers_nobody() -> None:
    recording = Recording()
    shared = SharedBatchEncoder(recording, batch_size=4)
    for _ in range(3):
        shared.warm_up(SIZE, SIZE * 2)
    assert shared.features(frames_of([9]))[:, 0].tolist() == [9]
    assert recording.shapes == [(4, SIZE, SIZE * 2, 3), (4, SIZE, SIZE, 3)]


def test_dropping_the_shared_encoder_stops_its_thread() -> None:
    shared = SharedBatchEncoder(Recording(), batch_size=4)
    shared.features(frames_of([1]))
    thread = shared._thread
    del shared
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_a_forked_process_gets_its_own_shared_encoder_and_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from features.extractors.packaged import default_weights_path

    args = (str(default_weights_path()), "cpu", "torch", True, 4)
    parent = shared_frame_encoder(*args)
    assert shared_frame_encoder(*args) is parent
    monkeypatch.setattr(os, "getpid", lambda: -1)  # what a fork changes: the parent's thread is not in the child
    child = shared_frame_encoder(*args)
    assert child is not parent and child._thread.is_alive()
    assert child.features(frames_of([3], size=SIZE)).shape == (1, 1280)


def test_padding_keeps_the_real_rows_features(torch_encoder) -> None:
    frames = np.random.default_rng(1).integers(0, 255, (3, SIZE, SIZE, 3), dtype=np.uint8)
    np.testing.assert_allclose(padded_features(torch_encoder, frames, 8), torch_encoder.features(frames), atol=1e-4)


def test_vision_cnn_on_the_shared_encoder_gives_the_task_thread_features(synth_media, tmp_path: Path) -> None:
    clips = [clip_of(synth_media.av_mp4, "a"), clip_of(synth_media.still, "still"),
             clip_of(synth_media.audio_only, "no-video"), clip_of(synth_media.video_only, "b", start=0.5, end=1.5)]
    base = {"device": "cpu", "runtime": "torch", "batch_size": 4, "chunk_size": 3}
    shared = create_extractor("vision.cnn", {**base, "shared_batches": True})
    own = create_extractor("vision.cnn", base)
    assert isinstance(shared, CnnVisionExtractor) and isinstance(shared.encoder(), SharedBatchEncoder)
    assert not isinstance(own.encoder(), SharedBatchEncoder)  # the CPU default: the task's own thread
    assert shared.identity_hash() == own.identity_hash()  # a runtime knob
    with ThreadPoolExecutor(2) as pool:  # two tasks at once, as the threads runner runs them
        got = list(pool.map(shared.extract, [clips[:2], clips[2:]]))
    want = own.extract(clips)
    for a, b in zip(got[0] + got[1], want):
        assert a.absent == b.absent
        np.testing.assert_array_equal(a.times, b.times)
        np.testing.assert_allclose(a.values, b.values, atol=1e-4)
        assert a.meta == b.meta
