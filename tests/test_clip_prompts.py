"""The frozen CLIP, the prompt learner and the selection of visual norm parameters."""

from __future__ import annotations

import open_clip
import pytest
import torch
from torch import nn

from uft.clip import encode_text_embeddings, load_clip, tokenize, visual_norm_parameters
from uft.errors import InputError
from uft.prompts import PromptLearner, class_prompt

from .conftest import TINY

NAMES = ["alarm_clock", "tv", "desk_lamp"]


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    model, pre = load_clip(TINY, None)
    return model, pre


def learner(model, ctx_init="a photo of a"):
    return PromptLearner(NAMES, lambda t: tokenize(TINY, t), model.token_embedding, ctx_init)


def test_class_prompt_text():
    assert class_prompt("a photo of a", "Alarm_Clock") == "a photo of a Alarm Clock."


def test_clip_is_frozen_and_in_eval(clip):
    model, pre = clip
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training and pre.size == 32 and len(pre.mean) == 3


def test_initial_prompts_embed_as_zero_shot_text(clip):
    """At initialisation each prompt embeds exactly as 'a photo of a <name>.' and gives the same text feature."""
    model, _ = clip
    prompts = learner(model)
    assert prompts.n_ctx == 4 and prompts.ctx.shape == (4, model.token_embedding.embedding_dim)
    texts = [class_prompt("a photo of a", n) for n in NAMES]
    tokens = tokenize(TINY, texts)
    torch.testing.assert_close(prompts(), model.token_embedding(tokens))
    ours = encode_text_embeddings(model, prompts(), prompts.tokens)
    torch.testing.assert_close(ours, model.encode_text(tokens), rtol=1e-5, atol=1e-6)


def test_context_length_follows_ctx_init(clip):
    model, _ = clip
    assert learner(model, "a blurry photo of the").n_ctx == 5


def test_gradient_reaches_context_through_frozen_text_tower(clip):
    model, _ = clip
    prompts = learner(model)
    encode_text_embeddings(model, prompts(), prompts.tokens).pow(2).sum().backward()
    assert prompts.ctx.grad is not None and prompts.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_vit_norm_parameters_are_layernorm_affines(clip):
    model, _ = clip
    params = visual_norm_parameters(model.visual)
    expected = [p for m in model.visual.modules() if isinstance(m, nn.LayerNorm) for p in (m.weight, m.bias)]
    assert len(params) == len(expected) > 0
    assert {id(p) for p in params} == {id(p) for p in expected}


def test_resnet_norm_parameters_are_batchnorm_affines():
    model, _ = load_clip("uft-tiny-rn", None)
    params = visual_norm_parameters(model.visual)
    bns = [m for m in model.visual.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and len(params) == 2 * len(bns)
    assert {id(p) for p in params} == {id(p) for m in bns for p in (m.weight, m.bias)}


def test_unknown_model_and_missing_checkpoint_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not-a-model"):
        load_clip("not-a-model", None)
    with pytest.raises(InputError, match="missing.pt"):
        load_clip(TINY, str(tmp_path / "missing.pt"))


def test_local_checkpoint_file_loads_through_open_clip(tmp_path):
    """A local checkpoint file is passed straight to open_clip, as real weights would be."""
    torch.manual_seed(3)
    source = open_clip.create_model(TINY)
    path = tmp_path / "tiny.pt"
    torch.save(source.state_dict(), path)
    loaded, _ = load_clip(TINY, str(path))
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
