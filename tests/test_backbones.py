"""The model families of docs/models.md#backbones, one row each: the text paths uft takes, its features against
open_clip's own ``encode_text``/``encode_image``, which norm affines train, one training step through the CLI; and
the architectures it refuses, in one line before anything is built."""

from __future__ import annotations

import sys

import open_clip
import pytest
import torch
from torch import nn

import uft.clip as clip_lib
from uft.cli import main
from uft.clip import TextPaths, encode_text_embeddings, load_clip, text_paths, text_side_problem, text_tower, tokenize
from uft.errors import InputError
from uft.module import UFTModule
from uft.objectives import UEO
from uft.prompts import PromptLearner, class_prompt

from .args import demo_args
from .helpers import one_line

NAMES = ["alarm_clock", "tv", "desk_lamp", "_".join(["very"] * 6) + "_long_name"]
FEATURE_ATOL = 1e-5  # float32 features of magnitude ~1 (the equality tests below measure 0 to 1.1e-6)

# The table's rows: the tiny random-weight architecture of each family (uft/model_configs) and the text paths it
# takes (truncate, share_prefix, own_forward).
FAMILIES = {
    "uft-tiny-vit": TextPaths(truncate=True, share_prefix=True, own_forward=False),  # CLIP ViT
    "uft-tiny-rn": TextPaths(truncate=True, share_prefix=True, own_forward=False),  # CLIP ResNet
    "uft-tiny-custom-text": TextPaths(truncate=True, share_prefix=True, own_forward=False),  # tower in clip.text
    "uft-tiny-sigmoid": TextPaths(truncate=False, share_prefix=False, own_forward=False),  # SigLIP-style
    "uft-tiny-coca": TextPaths(truncate=False, share_prefix=False, own_forward=True),  # CoCa
    "uft-tiny-timm": TextPaths(truncate=True, share_prefix=True, own_forward=False),  # timm image tower
}
# Which image-tower modules hold the norm affines that train (--model.norm_rule type).
NORM_MODULES = {
    "uft-tiny-vit": nn.LayerNorm,
    "uft-tiny-rn": nn.BatchNorm2d,
    "uft-tiny-custom-text": nn.LayerNorm,
    "uft-tiny-sigmoid": nn.LayerNorm,
    "uft-tiny-coca": nn.LayerNorm,  # the attentional pooler's ln_q and ln_k too
    "uft-tiny-timm": nn.LayerNorm,  # timm's LayerNorm subclasses torch's
}


def _families(slow_timm: bool = False):
    """The families, the timm one skipped where the installed timm lacks its tiny test ViT (timm >= 1.0) and marked
    slow where ``slow_timm`` (its 160-pixel images make a run through the CLI take 5 to 10 s on 2 cores)."""
    import timm

    no_test_vit = pytest.mark.skipif("test_vit" not in timm.list_models("test_vit"), reason="timm without test_vit")
    timm_marks = [no_test_vit, *([pytest.mark.slow] if slow_timm else [])]
    return [pytest.param(name, marks=timm_marks if name == "uft-tiny-timm" else []) for name in FAMILIES]


def _module(model_name: str) -> UFTModule:
    torch.manual_seed(0)
    return UFTModule(NAMES, UEO(), model_name=model_name, pretrained=None)


def _open_clip(model_name: str) -> nn.Module:
    torch.manual_seed(0)  # the same random weights as the module's
    return open_clip.create_model(model_name).eval()


@pytest.mark.parametrize("model_name", _families())
def test_each_family_takes_the_text_paths_of_the_table(model_name):
    model, _ = load_clip(model_name, None)
    assert text_paths(model) == FAMILIES[model_name]
    assert isinstance(clip_lib.tokenizer_of(model_name), open_clip.tokenizer.SimpleTokenizer)


@pytest.mark.parametrize("model_name", _families())
def test_class_features_and_image_features_equal_open_clip_encode_text_and_encode_image(model_name):
    """The module's class features (prompt context initialised from ``ctx_init``, through the paths its family
    takes) are open_clip's ``encode_text`` of the plain prompts, and its image features ``encode_image``."""
    module, reference = _module(model_name), _open_clip(model_name)
    tokens = tokenize(model_name, [class_prompt("a photo of a", name) for name in NAMES])
    size = module.preprocess.size
    images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        text, expected_text = module.text_features(), reference.encode_text(tokens, normalize=True)
        image, expected_image = module.image_features(images), reference.encode_image(images, normalize=True)
    torch.testing.assert_close(text, expected_text, rtol=0, atol=FEATURE_ATOL)
    torch.testing.assert_close(image, expected_image, rtol=0, atol=FEATURE_ATOL)
    # Not vacuous: the classes' features differ from each other by far more than the tolerance.
    assert torch.cdist(expected_text, expected_text).add(torch.eye(len(NAMES))).min() > 100 * FEATURE_ATOL


@pytest.mark.parametrize("model_name", _families())
def test_the_gradient_reaches_the_context_and_chunks_change_nothing(model_name):
    """Through each family's path (open_clip's own forward included), the context receives a gradient, and encoding
    the prompts two at a time with recomputation gives the same features and gradient (in float64, where the two
    agree to rounding; float32's summation orders differ by 4e-5 relative in the gradient)."""
    model, _ = load_clip(model_name, None)
    model = model.double()
    embedding = text_tower(model).token_embedding
    prompts = PromptLearner(NAMES, lambda t: tokenize(model_name, t), embedding, "a photo of").double()
    results = []
    for chunk in (None, 2):
        prompts.ctx.grad = None
        feats = encode_text_embeddings(model, prompts(), prompts.tokens, chunk_size=chunk, shared_prefix=3)
        feats.square().sum().backward()
        results.append((feats.detach(), prompts.ctx.grad.clone()))
    (feats, grad), (chunked, chunked_grad) = results
    assert grad.abs().max() > 1e-3 and all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(chunked, feats, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked_grad, grad, rtol=1e-10, atol=1e-10)


def test_a_tower_without_causal_mask_is_not_cut_nor_shared(monkeypatch):
    """The check has teeth: the SigLIP-style tower's features change when its sequence is cut after the last
    end-of-text token or when its shared prefix runs apart (every position sees the padding and the class name),
    which is why it takes neither path."""
    model, _ = load_clip("uft-tiny-sigmoid", None)
    tower = text_tower(model)
    tokens = tokenize("uft-tiny-sigmoid", [class_prompt("a photo of a", name) for name in NAMES])
    with torch.no_grad():
        full = model.encode_text(tokens)
        cut = int(tokens.argmax(dim=-1).max()) + 1  # what a causal tower would run over
        truncated = encode_text_embeddings(model, tower.token_embedding(tokens), tokens, length=cut)
        monkeypatch.setattr(clip_lib, "text_paths", lambda clip: TextPaths(False, True, False))
        shared = encode_text_embeddings(model, tower.token_embedding(tokens), tokens, shared_prefix=3)
    assert not torch.allclose(truncated, full, atol=1e-3)
    assert not torch.allclose(shared, full, atol=1e-3)


@pytest.mark.parametrize("model_name", _families())
def test_the_image_tower_norm_affines_of_each_family(model_name):
    model, _ = load_clip(model_name, None)
    params = clip_lib.visual_norm_parameters(model.visual)
    norms = [m for m in model.visual.modules() if isinstance(m, NORM_MODULES[model_name])]
    expected = [p for m in norms for p in (m.weight, m.bias)]
    assert len(params) == len(expected) > 0 and all(a is b for a, b in zip(params, expected))


@pytest.mark.parametrize("model_name", _families(slow_timm=True))
def test_one_training_step_through_the_cli_moves_context_and_norm_affines(model_name, shapes_dir, tmp_path):
    """One UEO step (SGD at learning rate 0.1) moves the context and the norm affines by over 1e-3, 100 times the
    features' tolerance. The random tiny ResNet gives nearly the same feature to every image (its residual branches
    start from zero-initialised BatchNorms), on which UEO's two entropies nearly cancel (a step of 6e-6): it takes
    ENT's step."""
    from uft.cli import cli_main

    record = tmp_path / "record.pt"
    lrs = ["--model.prompt_lr=0.1", "--model.visual_lr=0.1"]
    lrs += ["--model.objective=uft.objectives.ENT"] if model_name == "uft-tiny-rn" else []
    callback = ["--trainer.callbacks+=tests.helpers.RecordTraining", f"--trainer.callbacks.init_args.path={record}"]
    args = demo_args(shapes_dir, tmp_path, f"--model.model_name={model_name}", "--trainer.max_steps=1", *lrs)
    cli = cli_main(["fit", *args, *callback])
    assert cli.trainer.global_step == 1
    run = torch.load(record)
    moved = {name: (run["params"][name] - run["initial"][name]).abs().max() for name in run["initial"]}
    assert moved.pop("prompts.ctx") > 1e-3 and moved  # the context, and the norm affines beside it
    assert max(moved.values()) > 1e-3 and all(name.startswith("clip.visual.") for name in moved)


def test_sigmoid_models_logit_bias_changes_no_softmax_over_classes():
    """A SigLIP-style model scores a class by ``sigmoid(s * cos + b)``. uft's objectives and UEO's confidence
    weights take a softmax over classes of ``logit_scale * cos``, which a bias alike for every class does not move,
    and its predicted class is the one of the highest sigmoid score (sigmoid is increasing): the bias is not read."""
    module, reference = _module("uft-tiny-sigmoid"), _open_clip("uft-tiny-sigmoid")
    assert reference.logit_bias is not None and float(reference.logit_bias.detach()) == -10.0
    tokens = tokenize("uft-tiny-sigmoid", [class_prompt("a photo of a", name) for name in NAMES])
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        image, text, scale, bias = reference(images, tokens)
        cosine = module.cosine(images)
    logits = scale * image @ text.T + bias  # open_clip's own scores (SigLipLoss's logits)
    torch.testing.assert_close(logits.softmax(dim=1), (scale * cosine).softmax(dim=1), rtol=0, atol=1e-5)
    assert torch.equal(logits.sigmoid().argmax(dim=1), cosine.argmax(dim=1))


@pytest.mark.parametrize(
    ("model_name", "missing"),
    [
        ("ViT-B-16-SigLIP", "the Hugging Face tokenizer 'timm/ViT-B-16-SigLIP'"),
        ("ViT-B-16-SigLIP2", "the Hugging Face tokenizer 'timm/ViT-B-16-SigLIP2'"),
        ("roberta-ViT-B-32", "the Hugging Face model 'roberta-base'"),
        ("coca_roberta-ViT-B-32", "the Hugging Face model 'roberta-base'"),
        ("nllb-clip-base-siglip", "the Hugging Face model 'facebook/nllb-200-distilled-600M'"),
    ],
)
def test_a_text_side_that_needs_a_download_is_refused_before_anything_is_built(model_name, missing, monkeypatch):
    def built(*args, **kwargs):
        raise AssertionError("open_clip was asked to build the model")

    monkeypatch.setattr(open_clip, "create_model", built)
    with pytest.raises(InputError) as refused:
        load_clip(model_name, "webli")
    message = str(refused.value)
    assert message.startswith(f"{model_name}: its ") and missing in message and "\n" not in message
    assert "transformers package and a download" in message and "docs/models.md#backbones" in message


def test_open_clips_siglip_tokenizer_for_a_siglip_name_is_refused_too():
    """open_clip picks its SigLipTokenizer (a Hugging Face one) for any architecture named ``*siglip*`` without an
    ``hf_tokenizer_name``; which is why the tiny SigLIP-style architecture is called ``uft-tiny-sigmoid``."""
    assert "'SigLipTokenizer'" in text_side_problem("my-SigLIP-arch", {"width": 32})
    assert text_side_problem("uft-tiny-sigmoid", open_clip.get_model_config("uft-tiny-sigmoid")["text_cfg"]) is None


def test_a_tokenizer_or_text_tower_found_only_once_built_is_refused_in_one_line(monkeypatch):
    """``hf-hub:`` names keep their configuration on the hub: their tokenizer and text tower are checked once open_clip
    built them."""

    class NotClip:  # what get_tokenizer returns for a model with a Hugging Face tokenizer
        def __call__(self, texts):
            raise AssertionError("tokenized")

    monkeypatch.setattr(open_clip, "get_tokenizer", lambda name: NotClip())
    clip_lib.tokenizer_of.cache_clear()
    try:
        with pytest.raises(InputError, match=r"^hf-hub:org/model: its tokenizer is NotClip: uft builds prompts with"):
            clip_lib.tokenizer_of("hf-hub:org/model")

        def unreachable(name):
            raise ImportError("No module named 'transformers'")

        monkeypatch.setattr(open_clip, "get_tokenizer", unreachable)
        with pytest.raises(InputError, match=r"^hf-hub:org/model: cannot build its tokenizer \(ImportError: No mod"):
            clip_lib.tokenizer_of("hf-hub:org/model")
    finally:
        clip_lib.tokenizer_of.cache_clear()

    class HFTextClip(nn.Module):  # CustomTextCLIP with an HFTextEncoder as its text tower
        def __init__(self):
            super().__init__()
            self.visual, self.text = nn.Identity(), nn.Linear(2, 2)

    monkeypatch.setattr(open_clip, "create_model", lambda *args, **kwargs: HFTextClip())
    with pytest.raises(InputError, match=r"^hf-hub:org/model: its text tower \(Linear\) is not open_clip's own"):
        load_clip("hf-hub:org/model", None)


def test_the_cli_refuses_a_siglip_name_in_one_line(shapes_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["uft", "fit", *demo_args(shapes_dir, tmp_path / "run")])
    sys.argv.append("--model.model_name=ViT-B-16-SigLIP")
    message = one_line(lambda args: main(), [], capsys)
    assert message.startswith("ViT-B-16-SigLIP: its tokenizer is the Hugging Face tokenizer 'timm/ViT-B-16-SigLIP'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model_name", _families(slow_timm=True))
def test_each_family_exports_and_reloads_through_open_clip(model_name, shapes_dir, tmp_path):
    """A one-step fit exported with `uft export` (full weights): open_clip rebuilds the model from the folder's
    model.pt, and its image features against the classifier's class features give the cosines of uft's own adapted
    model within the features' tolerance, while the adapted norm affines differ from the random start's."""
    from uft.cli import cli_main
    from uft.export_command import export_main

    lrs = ["--model.prompt_lr=0.1", "--model.visual_lr=0.1", "--model.objective=uft.objectives.ENT"]
    args = demo_args(shapes_dir, tmp_path / "run", f"--model.model_name={model_name}", *lrs)
    fit = cli_main(["fit", *args, "--trainer.max_steps=1"])
    out = tmp_path / "export"
    export_main([f"--ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}", f"--out={out}", *args])
    reloaded, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(out / "model.pt"))
    classifier = torch.load(out / "classifier.pt", weights_only=True)
    start = _open_clip(model_name).visual.state_dict()  # the seed-0 random weights the fit started from
    adapted = {n: p for n, p in reloaded.visual.state_dict().items() if not torch.equal(p, start[n])}
    assert adapted, "the exported model holds the random start's image tower"
    size = preprocess.transforms[0].size  # the side of the images open_clip's transform makes
    images = torch.randn(6, 3, size, size, generator=torch.Generator().manual_seed(3))
    fit.model.eval()
    with torch.no_grad():
        expected = fit.model.cosine(images)
        features = torch.nn.functional.normalize(reloaded.eval().encode_image(images), dim=-1)
    torch.testing.assert_close(features @ classifier["class_features"].T, expected, rtol=0, atol=FEATURE_ATOL)
