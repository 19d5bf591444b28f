"""The CUDA path: checkpoints of cuDNN-flattened models, training, and extraction features that do
not depend on the device. Every test here skips cleanly without CUDA (CI has none); run them on a
GPU machine with ``pytest tests/gpu``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from store.runtime import resolve_device
from tests.helpers.training import ItemDataset, one_torch_thread, synthetic_items, tiny_config
from training.data import Collator
from training.loop import fit, seed_everything
from training.model import MCMF
from training.runs import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DIMS = {"l": 6, "a": 4, "v": 5}
NO_DROPOUT = dict.fromkeys(("text_dropout", "attn_dropout", "res_dropout", "relu_dropout", "head_dropout_m",
                            "head_dropout_l", "head_dropout_a", "head_dropout_v"), 0.0)


def _loaders(config):  # -> tuple[DataLoader, DataLoader]
    from torch.utils.data import DataLoader

    collate = Collator({}, finetune_text=False)
    train = DataLoader(ItemDataset(synthetic_items(64, seed=1)), batch_size=config.batch_size, collate_fn=collate)
    valid = DataLoader(ItemDataset(synthetic_items(24, seed=2, train=False)), batch_size=8, collate_fn=collate)
    return train, valid


def test_resolving_cuda_turns_tf32_off() -> None:
    assert resolve_device("auto").type == "cuda"
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 is False


def test_checkpoint_of_a_cuda_model_with_cudnn_lstm_weights_round_trips(tmp_path: Path) -> None:
    config = tiny_config()
    model = MCMF(config, DIMS).cuda()
    for u in ("a", "v"):  # cuDNN's flat weight buffer: the condition that broke save_model (issue 14)
        model.encoders[u].lstm.flatten_parameters()
    save_checkpoint(model, tmp_path / "best.safetensors")
    seed_everything(99)
    other = MCMF(config, DIMS).cuda()
    load_checkpoint(other, tmp_path / "best.safetensors")
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), name


def test_training_on_cuda_follows_the_cpu_run_of_the_same_seed() -> None:
    """Same seed, same data: CUDA and CPU runs end within float tolerance of each other (the kernels
    differ, the arithmetic is full fp32), and the CUDA run learns."""
    histories = {}
    for device in ("cpu", "cuda"):
        config = tiny_config(device=device, max_epochs=2, patience=2, **NO_DROPOUT)  # CUDA draws other masks
        seed_everything(config.seed)
        model = MCMF(config, DIMS)
        train, valid = _loaders(config)
        labels = np.array([it.label for it in train.dataset.items], dtype=np.float32)
        with one_torch_thread():
            result = fit(model, train, valid, config, train_labels=labels)
        assert result.device.startswith(device)
        histories[device] = result.history
    for cpu, gpu in zip(histories["cpu"], histories["cuda"]):
        assert gpu["train_loss"] == pytest.approx(cpu["train_loss"], rel=1e-3, abs=1e-4)
        assert gpu["valid_MAE"] == pytest.approx(cpu["valid_MAE"], rel=1e-3, abs=1e-4)



def test_a_cuda_run_preloads_its_view_and_follows_the_data_loader_run(tmp_path: Path) -> None:
    """Issue 14 §2: on CUDA the splits are held on the GPU by default (``preload`` None); the batches,
    the random stream and so the run are those of the DataLoader path."""
    from store.views import open_view
    from tests.helpers.training import write_tiny_view
    from training.batching import PreloadedBatches, make_loader
    from training.data import ViewDataset, read_stats
    from training.train import train_on_view

    write_tiny_view(tmp_path / "store")
    view = open_view(tmp_path / "store", "tiny")
    config = tiny_config(device="cuda")
    loader = make_loader(ViewDataset(view, "train", config.modalities, tokens=False),
                         Collator(read_stats(view, config.modalities), False), config, train=True)
    assert isinstance(loader, PreloadedBatches) and next(iter(loader)).label.is_cuda
    histories = {}
    for preload in (None, False):
        run, _ = train_on_view(tmp_path / "store", "tiny", tiny_config(device="cuda", max_epochs=2, preload=preload),
                               tmp_path / f"run-{preload}")
        histories[preload] = run.epochs()
    for a, b in zip(histories[None], histories[False], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5, abs=1e-6)
        assert a["valid_MAE"] == pytest.approx(b["valid_MAE"], rel=1e-5, abs=1e-6)

def _frames(shared: Path | None) -> np.ndarray:
    """Real photos (when the shared data is there) and random frames, 224x224 RGB uint8."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) for _ in range(6)]
    if shared is not None:
        from PIL import Image

        for name in ("obama.jpg", "biden.jpg"):
            with Image.open(shared / "faces" / name) as im:
                frames.append(np.asarray(im.convert("RGB").resize((224, 224))))
    return np.stack(frames)


def test_efficientnet_features_on_cuda_match_the_cpu_in_full_fp32() -> None:
    """Issue 19: with TF32 on, CUDA features differ from the CPU's by up to 0.019; the device is not
    part of a feature set's identity, so they must agree to float precision."""
    from features.extractors.efficientnet import frame_features, load_efficientnet_lite0
    from tests.helpers.paths import SHARED_DATA

    frames = _frames(SHARED_DATA if (SHARED_DATA / "faces").is_dir() else None)
    cpu = frame_features(load_efficientnet_lite0(device="cpu"), frames)
    gpu = frame_features(load_efficientnet_lite0(device=resolve_device("cuda")), frames)
    assert cpu.shape == gpu.shape == (len(frames), 1280)
    assert np.abs(cpu - gpu).max() < 1e-4, np.abs(cpu - gpu).max()


def test_text_states_on_cuda_match_the_cpu() -> None:
    from features.extractors.packaged import default_model_path
    from features.extractors.text import load_text_model

    try:
        path = default_model_path()
    except RuntimeError:
        pytest.skip("the packaged MiniLM-L6 is not installed")
    tokenizer, cpu_model = load_text_model(path, "cpu")
    _, gpu_model = load_text_model(path, resolve_device("cuda"))
    enc = tokenizer(["the film was wonderful", "I did not like it at all, honestly"], padding=True,
                    return_tensors="pt")
    with torch.no_grad():
        cpu = cpu_model(**enc).last_hidden_state.numpy()
        gpu = gpu_model(**{k: v.cuda() for k, v in enc.items()}).last_hidden_state.cpu().numpy()
    assert np.abs(cpu - gpu).max() < 1e-4


def test_vision_cnn_tasks_on_cuda_share_one_encoder_thread_and_give_the_cpu_features(tmp_path: Path) -> None:
    """Issue 19: on CUDA, ``device: auto`` runs every task's frames through the process's shared
    encoder (one thread, padded batches of 128, so cuDNN plans one shape once), and the features of
    concurrent tasks are the CPU's to float precision."""
    from concurrent.futures import ThreadPoolExecutor

    from features.extractors.base import create_extractor
    from features.extractors.shared_batches import SharedBatchEncoder
    from tests.helpers.media import Video, clip_of, write_media

    clips = [clip_of(write_media(tmp_path / f"c{i}.mp4", seconds=2.0 + i, video=Video(size=(160, 120))))
             for i in range(3)]
    gpu = create_extractor("vision.cnn", {"device": "auto"})
    encoder = gpu.encoder()  # type: ignore[attr-defined]
    assert isinstance(encoder, SharedBatchEncoder) and encoder.batch_size == 128
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda c: gpu.extract([c])[0], clips))
    cpu = create_extractor("vision.cnn", {"device": "cpu"}).extract(clips)
    for a, b in zip(got, cpu):
        assert a.meta["runtime"] == "torch" and len(a.values) == len(b.values) > 0
        np.testing.assert_array_equal(a.times, b.times)
        assert np.abs(a.values - b.values).max() < 1e-4
