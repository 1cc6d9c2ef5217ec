"""The LightningModule: confidence pass, frozen eval-mode CLIP during training, optimiser groups."""

from __future__ import annotations

import io
import re

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from uft.clip import template_features, tokenize
from uft.data.batch import Batch, collate
from uft.objectives import UEO
from uft.prompts import class_prompt

from .args import TINY, demo_args

NAMES = ["circle", "square", "triangle"]


class Images(Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "index": i, "readable": True}


def batch_of(images):
    return Batch(images, torch.arange(len(images)), torch.ones(len(images), dtype=torch.bool))


def make_module(**kwargs):
    from uft.module import UFTModule

    torch.manual_seed(0)
    return UFTModule(NAMES, UEO(), model_name=TINY, pretrained=None, **kwargs)


def test_confidence_pass_matches_zero_shot_by_index():
    """w_i = max softmax(cos_i / tau) with the zero-shot prompt, stored at each sample's own index."""
    module = make_module()
    module.objective.tau = 0.5
    images = torch.randn(10, 3, 32, 32)
    order = [7, 2, 9, 0, 4, 1, 8, 3, 6, 5]  # a shuffled loader must still fill the table by index
    loader = DataLoader(Images(images), batch_size=3, sampler=order, collate_fn=collate)
    table = module.objective.prepare(module.cosine_table(loader, len(images)))
    clip = module.clip
    text = clip.encode_text(tokenize(TINY, [class_prompt("a photo of a", n) for n in NAMES]), normalize=True)
    cos = clip.encode_image(images, normalize=True) @ text.T
    expected = torch.softmax(cos / 0.5, dim=-1).max(dim=-1).values
    torch.testing.assert_close(table, expected, rtol=1e-5, atol=1e-6)


def test_clip_stays_in_eval_mode_and_batchnorm_statistics_do_not_move():
    from uft.module import UFTModule

    torch.manual_seed(0)
    module = UFTModule(NAMES, UEO(), model_name="uft-tiny-rn", pretrained=None)
    module.train()
    assert not module.clip.training and all(not m.training for m in module.clip.modules())
    bn = next(m for m in module.clip.visual.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    module.table.values = torch.full((4,), 0.5)
    loss = module.training_step(batch_of(torch.randn(4, 3, 32, 32)), 0)
    loss.backward()
    torch.testing.assert_close(bn.running_mean, before)
    assert bn.weight.grad is not None and module.prompts.ctx.grad is not None


@pytest.mark.parametrize(
    ("tune", "groups"), [("both", ["prompt", "visual_norms"]), ("prompt", ["prompt"]), ("visual", ["visual_norms"])]
)
def test_only_the_chosen_groups_train(tune, groups):
    module = make_module(tune=tune, prompt_lr=0.1, visual_lr=0.2)
    config = module.configure_optimizers()
    optimizer = config["optimizer"]
    assert [g["name"] for g in optimizer.param_groups] == groups
    lrs = {"prompt": 0.1, "visual_norms": 0.2}
    assert all(g["lr"] == lrs[g["name"]] for g in optimizer.param_groups)
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert trainable == {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0
    assert config["lr_scheduler"]["interval"] == "step"
    schedule = config["lr_scheduler"]["scheduler"]
    assert schedule.plan(10) is None  # what on_train_start reads from the trainer
    factors = [schedule.factor(step) for step in (0, 5, 10, 12)]
    assert factors == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert schedule.state_dict()["total"] == 10  # a resumed run knows what it was planned over


def test_single_template_ensemble_equals_the_initial_prompt():
    """The template-ensemble zero-shot with the one template 'a photo of a {}.' is the prompt at initialisation."""
    module = make_module()
    with torch.no_grad():
        one = template_features(module.clip, TINY, NAMES, ["a photo of a {}."])
        torch.testing.assert_close(one, module.text_features())
        two = template_features(module.clip, TINY, NAMES, ["a sketch of a {}.", "art of the {}."])
        assert not torch.allclose(two, module.text_features())


def test_frozen_context_encodes_class_texts_once():
    """With tune=visual the class features are computed once, and equal the zero-shot ones."""
    module = make_module(tune="visual")
    module.table.values = torch.full((4,), 0.5)
    calls = []
    original = module.text_features
    module.text_features = lambda: calls.append(1) or original()
    for _ in range(3):
        module.training_step(batch_of(torch.randn(4, 3, 32, 32)), 0).backward()
    assert len(calls) == 1
    torch.testing.assert_close(module._frozen_text, original())
    assert module.visual_norms[0].grad is not None and module.prompts.ctx.grad is None


def test_cosine_is_float32_under_bf16_autocast():
    """Under bf16 autocast the similarities stay float32 and close to the float32 ones (the logit scale of 100
    would magnify bfloat16's rounding of about 4e-3)."""
    module = make_module()
    images = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        exact = module.cosine(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = module.cosine(images)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, exact, rtol=0, atol=0.03)


@pytest.mark.slow
@pytest.mark.parametrize(("tune", "training_passes"), [("both", 2), ("visual", 1)])
def test_class_texts_are_encoded_once_per_pass_that_needs_them(
    shapes_dir, tmp_path, monkeypatch, tune, training_passes
):
    """One epoch of 2 steps: the text tower runs once per training step while the context trains (once in all when
    it is frozen), once for the confidence pass and once per evaluation epoch, never per evaluation batch."""
    import uft.module
    from uft.cli import cli_main

    calls = []
    original = uft.module.encode_text_embeddings
    monkeypatch.setattr(uft.module, "encode_text_embeddings", lambda *a, **k: calls.append(1) or original(*a, **k))
    args = demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=1", "--data.eval_batch_size=4", f"--model.tune={tune}")
    cli_main(["fit", *args])
    assert len(calls) == training_passes + 1 + 1  # steps, confidence pass, one validation epoch (18 batches)
    calls.clear()
    cli_main(["validate", *args])
    assert len(calls) == 1


def test_the_pass_over_the_target_set_shows_a_bar_on_a_terminal_only(shapes_dir, tmp_path, monkeypatch):
    """The confidence pass runs before Lightning's bar appears: on a terminal it draws its own (and erases it)."""
    from uft.cli import cli_main

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    cli_main(["fit", *demo_args(shapes_dir, tmp_path / "tty", "--trainer.max_epochs=1")])
    assert re.search(r"encoding the target set: .*\d+/\d+ \[", terminal.getvalue())
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    cli_main(["fit", *demo_args(shapes_dir, tmp_path / "log", "--trainer.max_epochs=1")])
    assert "encoding the target set" not in log.getvalue()
