"""Issue 19: EfficientNet-Lite0 (and the text encoder) through ONNX Runtime. Features match torch's
within ``onnx_runtime.TOLERANCE`` on generated and real frames and sentences, the runtime stays out
of the identity, the export is cached on disk (reused, replaced when damaged, published atomically),
and a missing onnxruntime is a clear error for ``runtime: onnx`` while ``auto`` falls back to torch."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corpora.synth import LEXICON, write_clip
from features.clips import ClipInput
from features.extractors import efficientnet, onnx_runtime, text
from features.extractors.base import ClipFailure, FeatureResult, clear_model_caches, create_extractor
from features.extractors.efficientnet import (
    OnnxFrameEncoder,
    TorchFrameEncoder,
    load_frame_encoder,
)
from features.extractors.vision import EVERY_FRAME, CnnVisionExtractor
from features.media.video import decode_video
from store.errors import ConfigError
from tests.helpers.paths import REPO

TOL = onnx_runtime.TOLERANCE


def decoded(path: Path, **kwargs: float) -> np.ndarray:
    """The frames ``decode_video`` samples from ``path``."""
    out = decode_video(str(path), **kwargs)
    assert out is not None
    return out[0]


def both(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ONNX Runtime, torch) features of the same frames."""
    onnx = load_frame_encoder(device="cpu", runtime="onnx")
    torch_ = load_frame_encoder(device="cpu", runtime="torch")
    assert isinstance(onnx, OnnxFrameEncoder) and isinstance(torch_, TorchFrameEncoder)
    return onnx.features(frames), torch_.features(frames)


@pytest.fixture(scope="module")
def generated_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two demo-generator clips (planted vision signal v = -1 and +1: blue and orange scenes with a
    moving grey square), 320x240, 3 s."""
    d = tmp_path_factory.mktemp("cnn-runtime")
    return [write_clip(d / f"v{v:+.0f}.mp4", seconds=3.0, size=(320, 240), v=v, seed=i, audio=False)
            for i, v in enumerate((-1.0, 1.0))]


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty export cache and no session loaded yet in this process."""
    monkeypatch.setenv("EMOFLOW_CACHE_DIR", str(tmp_path))
    clear_model_caches()
    yield tmp_path / "onnx"
    clear_model_caches()


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (height, width) of every export this test triggers."""
    calls: list[tuple[int, int]] = []
    real = efficientnet.export_features_onnx

    def counted(weights: str, height: int, width: int, path: Path) -> None:
        calls.append((height, width))
        real(weights, height, width, path)

    monkeypatch.setattr(efficientnet, "export_features_onnx", counted)
    return calls


# ------------------------------------------------------------------------------------ same features


def test_onnx_matches_torch_on_generated_clips(generated_clips: list[Path]) -> None:
    frames = np.concatenate([decoded(p, fps=5.0, width=224, height=224) for p in generated_clips])
    assert len(frames) == 30
    onnx, ref = both(frames)
    assert onnx.shape == (30, 1280) and onnx.dtype == np.float32
    assert np.abs(onnx - ref).max() <= TOL
    # the batch axis is dynamic: one frame, an odd batch and all of them agree
    encoder = load_frame_encoder(device="cpu", runtime="onnx")
    np.testing.assert_allclose(encoder.features(frames[:1]), ref[:1], rtol=0, atol=TOL)
    np.testing.assert_allclose(encoder.features(frames[3:10]), ref[3:10], rtol=0, atol=TOL)
    assert encoder.features(frames[:0]).shape == (0, 1280)


def test_onnx_matches_torch_on_another_frame_size(generated_clips: list[Path]) -> None:
    """The padding is baked per size at export: a non-square size gets its own, correct graph."""
    frames = decoded(generated_clips[1], fps=2.0, width=160, height=96)
    onnx, ref = both(frames)
    assert np.abs(onnx - ref).max() <= TOL


@pytest.mark.shared_data
def test_onnx_matches_torch_on_real_frames(shared_data: Path) -> None:
    """Real footage (NASA narration, manifesto reading) and the two portrait photos."""
    clips = shared_data / "clips"
    frames = [decoded(clips / name, fps=1.0, width=224, height=224, end=8.0)
              for name in ("nasa_webb_narration.mp4", "manifesto_audiobook.mp4")]
    faces = shared_data / "faces"
    if faces.is_dir():
        for name in ("obama.jpg", "biden.jpg"):
            with Image.open(faces / name) as im:
                frames.append(np.asarray(im.convert("RGB").resize((224, 224)))[None])
    batch = np.concatenate(frames)
    onnx, ref = both(batch)
    assert len(batch) >= 16 and np.abs(ref).max() > 1.0  # real activations, not a blank picture
    assert np.abs(onnx - ref).max() <= TOL


# ------------------------------------------------------------------------------------------ extractors


def test_runtime_stays_out_of_the_identity() -> None:
    for name in ("vision.cnn", "vision.face"):
        hashes = {create_extractor(name, {"runtime": r}).identity_hash() for r in ("auto", "torch", "onnx")}
        assert len(hashes) == 1, name
        assert "runtime" not in create_extractor(name).identity()["config"]


def test_cnn_extraction_with_onnx_equals_torch(generated_clips: list[Path],
                                               make_clip: Callable[..., ClipInput]) -> None:
    clips = [make_clip(p) for p in generated_clips]
    onnx = create_extractor("vision.cnn", {"device": "cpu", "runtime": "onnx", **EVERY_FRAME})
    ref = create_extractor("vision.cnn", {"device": "cpu", "runtime": "torch", **EVERY_FRAME})
    for a, b in zip(onnx.extract(clips), ref.extract(clips)):
        assert isinstance(a, FeatureResult) and isinstance(b, FeatureResult)
        assert a.meta["runtime"] == "onnx" and b.meta["runtime"] == "torch"
        assert a.values.shape == b.values.shape == (6, 1280)
        np.testing.assert_array_equal(a.times, b.times)
        assert np.abs(a.values - b.values).max() <= TOL


def test_auto_is_onnx_on_the_cpu() -> None:
    ex = create_extractor("vision.cnn", {"device": "cpu"})
    assert isinstance(ex, CnnVisionExtractor) and ex.encoder().runtime == "onnx"


def test_onnx_on_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="runtime 'onnx' runs on the CPU"):
        create_extractor("vision.cnn", {"runtime": "onnx", "device": "cuda"})


def test_without_onnxruntime_onnx_is_a_clear_error_and_auto_is_torch(
    monkeypatch: pytest.MonkeyPatch, generated_clips: list[Path], make_clip: Callable[..., ClipInput],
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime → ImportError
    ex = create_extractor("vision.cnn", {"device": "cpu", "runtime": "onnx"})
    assert isinstance(ex, CnnVisionExtractor)
    with pytest.raises(RuntimeError, match="runtime 'onnx' needs the 'onnxruntime' package"):
        ex.encoder()
    (failure,) = ex.extract([make_clip(generated_clips[0])])
    assert isinstance(failure, ClipFailure) and "onnxruntime" in failure.message
    auto = create_extractor("vision.cnn", {"device": "cpu"})
    assert isinstance(auto, CnnVisionExtractor) and isinstance(auto.encoder(), TorchFrameEncoder)
    (result,) = auto.extract([make_clip(generated_clips[0])])
    assert isinstance(result, FeatureResult) and result.meta["runtime"] == "torch"


def test_without_the_onnx_exporter_onnx_is_a_clear_error_and_auto_is_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # looked up, not imported: missing all the same
    with pytest.raises(RuntimeError, match="runtime 'onnx' needs the 'onnx' package"):
        create_extractor("vision.cnn", {"device": "cpu", "runtime": "onnx"}).encoder()
    assert isinstance(create_extractor("vision.cnn", {"device": "cpu"}).encoder(), TorchFrameEncoder)


def test_a_cached_export_runs_without_importing_the_exporter_or_dask(
    generated_clips: list[Path], make_clip: Callable[..., ClipInput],
) -> None:
    """What a threads-runner run would otherwise pay for nothing at its first batch: importing onnx
    (0.1 s; only an export needs it) and distributed (0.2 s; only a Dask worker has it)."""
    clip = make_clip(generated_clips[0])
    (first,) = create_extractor("vision.cnn", {"device": "cpu", "runtime": "onnx"}).extract([clip])
    assert isinstance(first, FeatureResult)  # exported into this session's cache, which the child shares
    code = textwrap.dedent(f"""
        import sys
        from features.clips import ClipInput
        from stages.extract import cached_extractor
        clip = ClipInput("c", {str(generated_clips[0])!r}, None, None, "", 3.0)
        (result,) = cached_extractor("vision.cnn", {{"device": "cpu", "runtime": "onnx"}}).extract([clip])
        assert result.meta["runtime"] == "onnx" and len(result.values) == 6, result
        print(sorted(m for m in ("onnx", "distributed") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------------------------ export cache


def test_export_is_cached_on_disk_and_reused(fresh_cache: Path, exports: list[tuple[int, int]]) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    first = load_frame_encoder(device="cpu", runtime="onnx").features(frames)
    assert exports == [(224, 224)]
    assert not efficientnet.load_efficientnet_lite0(device="cpu").training  # export leaves the shared model in eval
    (cached,) = fresh_cache.glob("*.onnx")
    assert cached.name.startswith("efficientnet-lite0-224x224-")
    assert [p.name for p in fresh_cache.iterdir()] == [cached.name]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert cached.stat().st_mode & 0o777 == 0o666 & ~umask  # as any file the user writes: a shared cache reads
    stamp = cached.stat().st_mtime_ns
    load_frame_encoder(device="cpu", runtime="onnx").features(frames)  # same process: same session
    clear_model_caches()  # as a new process would: the file is loaded, not exported again
    again = load_frame_encoder(device="cpu", runtime="onnx").features(frames)
    assert exports == [(224, 224)] and cached.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first, again)


def test_the_exported_cnn_has_its_pads_folded_into_its_convolutions(fresh_cache: Path) -> None:
    """What ONNX Runtime runs after its own graph optimisation: convolutions without a separate Pad
    (each one cost a pad and two layout reorders, 19% of the CPU per frame) and no shape arithmetic."""
    import onnx
    import onnxruntime

    load_frame_encoder(device="cpu", runtime="onnx").features(np.zeros((1, 224, 224, 3), np.uint8))
    (graph,) = fresh_cache.glob("efficientnet-lite0-224x224-*.onnx")
    opts = onnxruntime.SessionOptions()
    opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC  # portable ops only
    opts.optimized_model_filepath = str(fresh_cache / "optimised.onnx")
    onnxruntime.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(str(fresh_cache / "optimised.onnx")).graph.node}
    assert "Conv" in ops and not ops & {"Pad", "Shape", "Gather", "Slice", "Concat"}, ops


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_cache_file_is_exported_again(fresh_cache: Path, exports: list[tuple[int, int]],
                                                 damage: str) -> None:
    frames = np.random.default_rng(2).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    want = load_frame_encoder(device="cpu", runtime="onnx").features(frames)
    (cached,) = fresh_cache.glob("*.onnx")
    data = cached.read_bytes()
    cached.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00not onnx" * 1000, "empty": b""}[damage])
    clear_model_caches()
    got = load_frame_encoder(device="cpu", runtime="onnx").features(frames)
    assert len(exports) == 2 and cached.read_bytes() == data
    np.testing.assert_array_equal(got, want)


def test_concurrent_publishers_leave_one_whole_file(tmp_path: Path) -> None:
    """Two exporters racing on one cache file (as two processes at first use): each writes its own
    temporary file and renames it over the target, so the file is always one complete export."""
    target = tmp_path / "model.onnx"
    seen: list[bytes] = []

    def slow_export(payload: bytes) -> Callable[[Path], None]:
        def export(path: Path) -> None:
            with open(path, "wb") as fh:
                for k in range(0, len(payload), 1000):
                    fh.write(payload[k : k + 1000])
                    fh.flush()
                    if target.exists():
                        seen.append(target.read_bytes())
                    time.sleep(0.001)
        return export

    payloads = [bytes([65 + i]) * 20_000 for i in range(2)]
    threads = [threading.Thread(target=onnx_runtime.publish, args=(target, slow_export(p))) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in payloads
    assert all(s in payloads for s in seen)  # never a partial file
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left


# ------------------------------------------------------------------------------------------ text encoder


def sentences(shared_data: Path | None) -> list[ClipInput]:
    """Demo-lexicon sentences of every length up to 40 words, plus 32 real MOSI transcripts when
    the shared data has them."""
    words = [w for group in LEXICON.values() for w in group]
    texts = [" ".join(["the", "film", "was"] + words[: k]) for k in range(0, 40, 3)]
    mosi = shared_data / "mosi" / "mosi_text_trainval.csv" if shared_data else None
    if mosi is not None and mosi.is_file():
        with mosi.open(encoding="utf-8") as fh:
            texts += [r["text"] for _, r in zip(range(32), csv.DictReader(fh))]
    return [ClipInput(f"s{i}", None, None, None, t, 4.0, None) for i, t in enumerate(texts)]


@pytest.mark.parametrize("real", [pytest.param(False, id="generated"),
                                  pytest.param(True, id="mosi", marks=pytest.mark.shared_data)])
def test_text_onnx_equals_torch(real: bool, request: pytest.FixtureRequest) -> None:
    clips = sentences(request.getfixturevalue("shared_data") if real else None)
    onnx = create_extractor("text.bert", {"device": "cpu", "runtime": "onnx", "batch_size": 8})
    ref = create_extractor("text.bert", {"device": "cpu", "runtime": "torch"})
    assert onnx.identity_hash() == ref.identity_hash()
    for a, b in zip(onnx.extract(clips), ref.extract(clips)):
        assert isinstance(a, FeatureResult) and isinstance(b, FeatureResult)
        assert a.meta["runtime"] == "onnx" and b.meta["runtime"] == "torch"
        np.testing.assert_array_equal(a.extras["input_ids"], b.extras["input_ids"])
        assert np.abs(a.values - b.values).max() <= TOL


def test_text_model_that_does_not_export_runs_in_torch_under_auto(fresh_cache: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(folder: str, path: Path) -> None:
        raise RuntimeError("ONNX export of this model differs from torch by 3.1e-01")

    monkeypatch.setattr(text, "export_text_onnx", broken)
    clip = ClipInput("c", None, None, None, "a fine film", 2.0, None)
    (auto,) = create_extractor("text.bert", {"device": "cpu"}).extract([clip])
    assert isinstance(auto, FeatureResult) and auto.meta["runtime"] == "torch"
    (forced,) = create_extractor("text.bert", {"device": "cpu", "runtime": "onnx"}).extract([clip])
    assert isinstance(forced, ClipFailure) and "differs from torch" in forced.message
    assert not fresh_cache.exists() or not any(fresh_cache.iterdir())  # nothing published


def test_text_without_onnxruntime_runs_in_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    clip = ClipInput("c", None, None, None, "a fine film", 2.0, None)
    (auto,) = create_extractor("text.bert", {"device": "cpu"}).extract([clip])
    assert isinstance(auto, FeatureResult) and auto.meta["runtime"] == "torch"
    (forced,) = create_extractor("text.bert", {"device": "cpu", "runtime": "onnx"}).extract([clip])
    assert isinstance(forced, ClipFailure) and "needs the 'onnxruntime' package" in forced.message


def test_the_cnn_batch_follows_the_device_unless_the_config_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19: a GPU needs batches of ≥ 128 frames, the CPU runs best at 4; an explicit size wins."""
    import torch

    from features.extractors import vision

    default = create_extractor("vision.cnn", {"device": "cpu"})
    assert isinstance(default, CnnVisionExtractor) and default.batch_size == 4
    assert create_extractor("vision.cnn", {"device": "cpu", "batch_size": 16}).batch_size == 16  # type: ignore[attr-defined]
    monkeypatch.setattr(vision, "resolve_device", lambda setting: torch.device("cuda"))
    assert default.batch_size == 128
    face = create_extractor("vision.face", {"device": "cpu"})
    assert face.identity() == create_extractor("vision.face", {"device": "cpu", "batch_size": 9}).identity()
