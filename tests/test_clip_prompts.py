"""The frozen CLIP, the prompt learner and the selection of visual norm parameters."""

from __future__ import annotations

import contextlib
import warnings

import open_clip
import pytest
import torch
from torch import nn

import uft.clip as clip_lib
from uft.clip import (
    common_prefix,
    encode_text_embeddings,
    encode_tokens,
    load_clip,
    pooled_length,
    tokenize,
)
from uft.errors import InputError
from uft.prompts import PromptLearner, class_prompt

from .args import TINY

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
    params = clip_lib.visual_norm_parameters(model.visual)
    expected = [p for m in model.visual.modules() if isinstance(m, nn.LayerNorm) for p in (m.weight, m.bias)]
    assert len(params) == len(expected) > 0
    assert {id(p) for p in params} == {id(p) for p in expected}


def test_resnet_norm_parameters_are_batchnorm_affines():
    model, _ = load_clip("uft-tiny-rn", None)
    params = clip_lib.visual_norm_parameters(model.visual)
    bns = [m for m in model.visual.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and len(params) == 2 * len(bns)
    assert {id(p) for p in params} == {id(p) for m in bns for p in (m.weight, m.bias)}


def test_the_reference_rule_leaves_out_the_resnet_shortcut_batchnorms():
    """``norm_rule: reference`` selects by name as the UEO reference code does (``bn`` or ``ln`` in the name): on a
    ResNet the shortcut BatchNorms (``downsample.1``) are left out, the others kept; on a ViT both rules agree."""
    model, _ = load_clip("uft-tiny-rn", None)
    by_type = clip_lib.visual_norm_parameters(model.visual, "type")
    by_name = clip_lib.visual_norm_parameters(model.visual, "reference")
    names = {id(p): n for n, p in model.visual.named_parameters()}
    left_out = sorted(names[id(p)] for p in by_type if id(p) not in {id(q) for q in by_name})
    shortcuts = [m for n, m in model.visual.named_modules() if n.endswith("downsample.1")]
    assert shortcuts and all(isinstance(m, nn.BatchNorm2d) for m in shortcuts)
    assert left_out == sorted(
        f"{n}.{w}" for n, m in model.visual.named_modules() if n.endswith("downsample.1") for w in ("weight", "bias")
    )
    assert {id(p) for p in by_name} < {id(p) for p in by_type}  # nothing else differs
    vit, _ = load_clip(TINY, None)
    assert [id(p) for p in clip_lib.visual_norm_parameters(vit.visual, "reference")] == [
        id(p) for p in clip_lib.visual_norm_parameters(vit.visual, "type")
    ]


def test_a_module_with_the_reference_rule_trains_those_and_refuses_a_checkpoint_of_the_other():
    from uft.checkpoint_contents import check_loadable, model_identity
    from uft.module import UFTModule

    names = ["circle", "square", "triangle"]
    reference = UFTModule(names, model_name="uft-tiny-rn", pretrained=None, norm_rule="reference")
    typed = UFTModule(names, model_name="uft-tiny-rn", pretrained=None)
    assert len(typed.visual_norms) - len(reference.visual_norms) == 8  # 4 shortcut BatchNorms, weight and bias
    trained = {n for n, p in reference.named_parameters() if p.requires_grad}
    assert not any("downsample" in n for n in trained) and any(
        "downsample" in n for n, p in typed.named_parameters() if p.requires_grad
    )
    checkpoint = {"state_dict": {}, "uft_model_identity": model_identity(typed.hparams, typed.prompts.n_ctx)}
    identity = model_identity(reference.hparams, reference.prompts.n_ctx)
    with pytest.raises(InputError, match="norm_rule: checkpoint 'type', configured 'reference'"):
        check_loadable(checkpoint, identity, set(reference.state_dict()), fitting=True)
    check_loadable(checkpoint, identity, set(reference.state_dict()), fitting=False)  # evaluating: either serves


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


# --- the text tower over the positions that matter ---------------------------------------------------------------

LONG = "_".join(["very"] * 40) + "_long_name"  # about 45 tokens: the prompt ends near the context's end
SHORT_AND_LONG = {"short": ["tv", "cat", "desk_lamp"], "long": ["tv", LONG, "desk_lamp"]}


@pytest.mark.parametrize("model_name", ["uft-tiny-vit", "uft-tiny-rn", "ViT-B-32"])
@pytest.mark.parametrize("names", ["short", "long"])
def test_truncated_text_features_equal_the_full_length_pass(model_name, names):
    """Running the causal text tower only up to the last end-of-text token gives open_clip's full 77-token
    features, for the tiny architectures and a real one (random weights), for short and for long class names."""
    torch.manual_seed(0)
    model, _ = load_clip(model_name, None)
    texts = [class_prompt("a photo of a", n) for n in SHORT_AND_LONG[names]]
    tokens = tokenize(model_name, texts)
    length = pooled_length(model, tokens)
    ends = tokens.argmax(dim=-1)
    assert length == int(ends.max()) + 1
    assert names != "short" or length == 9  # "a photo of a desk lamp." with start and end of text
    with torch.no_grad():
        full = model.encode_text(tokens)
        truncated = encode_tokens(model, tokens)
        from_embeddings = encode_text_embeddings(model, model.token_embedding(tokens), tokens)
    torch.testing.assert_close(truncated, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(from_embeddings, full, rtol=1e-5, atol=1e-5)


def test_truncation_changes_features_it_must_not_cut(clip):
    """The check has teeth: cutting before an end-of-text token, or keeping the cut for a tower that pools the
    last position, gives other features; such towers run over the full context."""
    model, _ = clip
    tokens = tokenize(TINY, [class_prompt("a photo of a", n) for n in NAMES])
    length = int(tokens.argmax(dim=-1).max())  # one short of the last end-of-text token
    with torch.no_grad():
        full = model.encode_text(tokens)
        cut = encode_text_embeddings(model, model.token_embedding(tokens), tokens, length=length)
    assert not torch.allclose(cut, full, atol=1e-3)
    model.text_pool_type = "last"
    try:
        assert pooled_length(model, tokens) == tokens.shape[1]
    finally:
        model.text_pool_type = "argmax"
    mask, model.attn_mask = model.attn_mask, None
    try:
        assert pooled_length(model, tokens) == tokens.shape[1]
    finally:
        model.attn_mask = mask


def test_prompt_learner_builds_only_the_positions_asked_for(clip):
    model, _ = clip
    prompts = learner(model)
    length = pooled_length(model, prompts.tokens)
    assert prompts(length).shape[:2] == (len(NAMES), length)
    torch.testing.assert_close(prompts(length), prompts()[:, :length])


def test_chunked_encoding_with_checkpointing_gives_the_same_features_and_gradients(clip):
    """Chunks of 2 of 5 prompts, recomputed in the backward pass: the same features and context gradient as one
    pass, and fewer activations kept for the backward pass."""
    model, _ = clip
    names = ["tv", "cat", "desk_lamp", LONG, "bike"]
    prompts = PromptLearner(names, lambda t: tokenize(TINY, t), model.token_embedding, "a photo of a")
    length = pooled_length(model, prompts.tokens)
    results = []
    for chunk in (None, 2):
        prompts.ctx.grad = None
        with saved_bytes() as saved:
            feats = encode_text_embeddings(model, prompts(length), prompts.tokens, length, chunk_size=chunk)
        feats.square().sum().backward()
        results.append((feats.detach(), prompts.ctx.grad.clone(), saved[0]))
    (full, full_grad, full_saved), (chunked, chunked_grad, chunked_saved) = results
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked_grad, full_grad, rtol=1e-4, atol=1e-5)  # summed in another order
    assert chunked_saved < full_saved / 3
    with torch.no_grad():  # without gradients, chunks are encoded one after the other, nothing recomputed
        torch.testing.assert_close(
            encode_text_embeddings(model, prompts(length), prompts.tokens, length, chunk_size=2), full
        )


@contextlib.contextmanager
def saved_bytes():
    """Bytes of the tensors autograd keeps for the backward pass while the block runs (in a one-element list)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


@pytest.mark.parametrize("model_name", ["uft-tiny-vit", "ViT-B-32"])
def test_shared_prompt_context_runs_once_with_the_same_features_and_gradient(model_name):
    """The start token and the learned context are alike in every class prompt: encoding them once and letting
    every class attend to them gives the per-class pass's features and context gradient (in float64, where the
    two agree to rounding: 1e-15 relative; float32 rounding differs by 1e-6 either way)."""
    torch.manual_seed(0)
    model, _ = load_clip(model_name, None)
    model = model.double()
    names = ["tv", "cat", "desk_lamp", LONG if model_name == "uft-tiny-vit" else "The_Great_Wall_of_China"]
    prompts = PromptLearner(names, lambda t: tokenize(model_name, t), model.token_embedding, "a photo of a").double()
    with torch.no_grad():
        prompts.ctx.add_(0.05 * torch.randn_like(prompts.ctx))  # a trained context, not the words' embeddings
    length = pooled_length(model, prompts.tokens)
    results = []
    for shared in (0, prompts.shared_prefix):
        prompts.ctx.grad = None
        feats = encode_text_embeddings(model, prompts(length), prompts.tokens, length, shared_prefix=shared)
        feats.square().sum().backward()
        results.append((feats.detach(), prompts.ctx.grad.clone()))
    (full, full_grad), (once, once_grad) = results
    torch.testing.assert_close(once, full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(once_grad, full_grad, rtol=1e-10, atol=1e-10)
    assert common_prefix(prompts.tokens) == prompts.shared_prefix  # the placeholder context tokens are alike too
    # A prefix that is not alike in every row gives other features: the equality above is not vacuous.
    with torch.no_grad():
        wrong = encode_text_embeddings(model, prompts(length), prompts.tokens, length, shared_prefix=length - 1)
    assert not torch.allclose(wrong, full, atol=1e-3)


def test_a_class_name_cut_at_the_text_context_warns_and_names_equal_after_the_cut_are_refused():
    """The tiny CLIP reads 24 tokens: with "a photo of a" (4 context tokens) a name of 20 words is cut. A cut name
    is a warning naming it and the context length; two names that differ only after the cut are an error."""
    from uft.module import UFTModule

    long = "very " * 20 + "long bird"
    with pytest.warns(UserWarning, match=r"class name 'very very .*' is cut: .* longer than the 24 tokens"):
        UFTModule(["cat", long], model_name=TINY, pretrained=None)
    with pytest.raises(InputError, match=r"class names 'very .*bird' and 'very .*fish' give the same prompt once cut"):
        UFTModule(["cat", long, long.replace("bird", "fish")], model_name=TINY, pretrained=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # names that fit: no warning
        UFTModule(["cat", "short bird"], model_name=TINY, pretrained=None)
