"""MCMF modules: UFF size and ones augmentation, mask handling, ablations, fine-tuned text."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.training import (
    SHORT_DIMS,
    one_torch_thread,
    save_tiny_bert,
    synthetic_items,
    tiny_config,
)
from training.config import TrainConfig
from training.data import Collator
from training.loop import param_groups
from training.model import MCMF, UFF, LGTBranch, ModalityInput, build_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def test_uff_size_and_ones_augmentation_contains_unimodal_and_bimodal_terms() -> None:
    torch.manual_seed(0)
    uff = UFF(k=5, d_f=3)
    s = [torch.randn(2, 5) for _ in range(3)]
    f = uff(s)
    assert f.shape == (2, 4**3) and uff.out_dim == 64
    zl, za, zv = (torch.relu(p(x)) for p, x in zip(uff.proj, s))
    cube = f.view(2, 4, 4, 4)
    assert torch.equal(cube[:, 0, 0, 0], torch.ones(2))
    assert torch.allclose(cube[:, 1:, 0, 0], zl)
    assert torch.allclose(cube[:, 0, 1:, 0], za)
    assert torch.allclose(cube[:, 0, 0, 1:], zv)
    assert torch.allclose(cube[:, 1:, 1:, 0], zl[:, :, None] * za[:, None, :])
    assert torch.allclose(cube[:, 1:, 1:, 1:], torch.einsum("bi,bj,bk->bijk", zl, za, zv))


def test_default_model_fuses_into_4913_features() -> None:
    model = MCMF(TrainConfig(text_mode="frozen"), {"l": 384, "a": 40, "v": 1280})
    assert model.fusion is not None and model.fusion.out_dim == 17**3 == 4913
    assert model.heads["m"].fc1.in_features == 4913
    assert model.tasks == ("m", "l", "a", "v")
    assert [model.heads[x].fc1.out_features for x in model.tasks] == [128, 32, 16, 32]
    assert model.heads["m"].drop.p == 0.2 and model.heads["v"].drop.p == 0.0


def _batch(seed: int = 0, n: int = 5) -> dict[str, ModalityInput]:
    return Collator({}, finetune_text=False)(synthetic_items(n, seed)).inputs


def _poison_padding(inputs: dict[str, ModalityInput], extra: int, fill: float) -> dict[str, ModalityInput]:
    """Pad every modality by ``extra`` more steps and overwrite all padded values with ``fill``."""
    out = {}
    for u, x in inputs.items():
        assert x.values is not None
        b, t, d = x.values.shape
        values = torch.full((b, t + extra, d), fill)
        mask = torch.zeros(b, t + extra, dtype=torch.bool)
        mask[:, :t] = x.mask
        values[mask] = x.values[x.mask]
        out[u] = ModalityInput(mask=mask, lengths=x.lengths, values=values)
    return out


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"use_sm": False},
        {"use_lgt": False, "fusion": "concat"},
        {"fusion": "sum", "unimodal_input": "encoder"},
        {"text_positions": True, "av_input_norm": True, "head_layers": 2},
    ],
)
def test_padded_steps_do_not_change_outputs(overrides: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = MCMF(tiny_config(**overrides), SHORT_DIMS).eval()
    inputs = _batch()
    with torch.no_grad():
        ref = model(inputs)
        for extra, fill in ((0, 1e4), (3, float("nan")), (2, -7.0)):
            out = model(_poison_padding(inputs, extra, fill))
            for x in model.tasks:
                assert torch.allclose(out.preds[x], ref.preds[x], atol=1e-5), (x, extra, fill)
                assert torch.allclose(out.features[x], ref.features[x], atol=1e-5)


def test_lgt_branch_ignores_padded_source_steps_and_zeroes_padded_queries() -> None:
    torch.manual_seed(0)
    branch = LGTBranch(tiny_config(), self_attention=False).eval()
    q, qmask = torch.randn(2, 4, 8), torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    src, smask = torch.randn(2, 6, 8), torch.tensor([[1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    ref = branch(q, qmask, src, smask)
    src2 = src.clone()
    src2[~smask] = 123.0
    assert torch.allclose(branch(q, qmask, src2, smask), ref, atol=1e-6)
    assert torch.equal(ref[~qmask], torch.zeros_like(ref[~qmask]))


def test_unimodal_heads_read_s_u_and_encoder_mode_uses_separate_pooling() -> None:
    lgt = MCMF(tiny_config(), SHORT_DIMS)
    enc = MCMF(tiny_config(unimodal_input="encoder"), SHORT_DIMS)
    assert lgt.pool_encoder is None
    assert enc.pool_encoder is not None and set(enc.pool_encoder) == {"l", "a", "v"}
    out = enc(_batch())
    assert {x: tuple(f.shape) for x, f in out.features.items()} == {"m": (5, 8), "l": (5, 4), "a": (5, 4), "v": (5, 4)}


@pytest.mark.parametrize("modality", ["text", "audio", "vision"])
def test_single_modality_model_has_one_branch_and_one_head(modality: str) -> None:
    config = tiny_config(modalities=[modality], use_slgm=False)
    model = MCMF(config, SHORT_DIMS)
    u = config.single_modality
    assert model.tasks == ("m",) and list(model.encoders) == [u]
    assert model.lgt is not None and model.lgt[u].self_attention
    assert model.heads["m"].fc1.out_features == config.head_dim(u)  # u's own head sizes
    out = model({u: _batch()[u]})
    assert out.preds["m"].shape == (5,)


def test_single_modality_with_slgm_is_refused() -> None:
    with pytest.raises(ValueError, match="use_slgm"):
        tiny_config(modalities=["audio"])
    with pytest.raises(ValueError, match="exactly one"):
        tiny_config(modalities=["audio", "text"], use_slgm=False)


def test_finetune_text_encoder_from_local_folder(tmp_path: Path) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    path = save_tiny_bert(tmp_path / "bert")
    torch.manual_seed(0)
    config = tiny_config(text_mode="finetune")
    model = build_model(config, SHORT_DIMS, text_model_path=path)
    assert model.text_encoder is not None and model.text_encoder.hidden_size == 8
    inputs = _batch()
    ids = torch.tensor(np.random.default_rng(0).integers(1, 40, size=(5, 6)))
    mask = torch.arange(6)[None, :] < torch.tensor([6, 3, 2, 5, 1])[:, None]
    inputs["l"] = ModalityInput(mask=mask, lengths=mask.sum(1), input_ids=ids)
    out = model(inputs)
    sum(out.preds.values()).sum().backward()
    grads = [p.grad for p in model.text_encoder.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    groups = {g["name"]: g["lr"] for g in param_groups(model, config)}
    assert groups == {"text": 5e-5, "av": config.lr_av, "other": config.lr_other}


def test_finetune_without_model_path_fails_clearly() -> None:
    with pytest.raises(ValueError, match="text_model_path"):
        build_model(tiny_config(text_mode="finetune"), SHORT_DIMS)


def test_a_text_model_folder_transformers_cannot_load_is_a_config_error_naming_it(tmp_path: Path) -> None:
    from store.errors import ConfigError

    path = save_tiny_bert(tmp_path / "bert")
    for weights in (tmp_path / "bert").glob("model.safetensors"):
        weights.write_bytes(b"not weights")
    with pytest.raises(ConfigError, match=rf"text model {re.escape(path)}: transformers cannot load it \("):
        build_model(tiny_config(text_mode="finetune"), SHORT_DIMS, text_model_path=path)
    with pytest.raises(ConfigError, match=r"text model .*gone: no such folder"):
        build_model(tiny_config(text_mode="finetune"), SHORT_DIMS, text_model_path=str(tmp_path / "gone"))
