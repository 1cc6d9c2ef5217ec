"""Runs that cannot give a right answer stop with one message: divergence, non-finite scores, nothing to evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uft.cli import cli_main
from uft.errors import Diverged, InputError
from uft.module import UFTModule

from .conftest import ROOT, demo_args


def test_divergence_stops_at_the_first_non_finite_step_and_keeps_the_last_checkpoint(shapes_dir, tmp_path):
    """From step 3 on the learning rate is 1e30: the run stops at that step with a message naming it and the
    rates; last.ckpt still holds a finite state from before, and loads."""
    args = [
        *demo_args(shapes_dir, tmp_path, "--data.batch_size=8", "--checkpoint.every_n_train_steps=1"),
        "--trainer.callbacks+=tests.helpers.BlowUpAt",
    ]
    with pytest.raises(Diverged, match=r"training diverged at step [34]: .*prompt 1e\+30.*last finite loss"):
        cli_main(["fit", *args])
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] in (3, 4)
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
    names = checkpoint["hyper_parameters"]["class_names"]
    UFTModule(names, model_name="uft-tiny-vit", pretrained=None).on_load_checkpoint(checkpoint)  # loads


def test_a_diverged_checkpoint_is_refused_and_nan_scores_give_no_metrics(shapes_dir, tmp_path):
    """A checkpoint with NaN parameters is refused when loaded; a model whose scores are NaN gets no metrics
    (NaN used to rank as a perfect detector: AUROC 1.0, FPR95 0.0)."""
    cli_main(["fit", *demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=1")])
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["state_dict"]["prompts.ctx"] = torch.full_like(state["state_dict"]["prompts.ctx"], float("nan"))
    broken = tmp_path / "broken.ckpt"
    torch.save(state, broken)
    with pytest.raises(InputError, match=r"non-finite parameters \(prompts.ctx\)"):
        cli_main(["test", *demo_args(shapes_dir, tmp_path), f"--ckpt_path={broken}"])

    evaluated = cli_main(demo_args(shapes_dir, tmp_path / "nan"), run=False)
    with torch.no_grad():
        evaluated.model.prompts.ctx.fill_(float("nan"))
    with pytest.raises(InputError, match="non-finite scores on the test split"):
        evaluated.trainer.validate(evaluated.model, datamodule=evaluated.datamodule)


@pytest.mark.parametrize(
    ("command", "extra", "message"),
    [
        ("validate", ["--trainer.limit_val_batches=0"], "nothing to evaluate: trainer.limit_val_batches is 0"),
        ("test", ["--trainer.limit_test_batches=0"], "nothing to evaluate: trainer.limit_test_batches is 0"),
        ("test", ["UNLABELED"], "nothing to evaluate: the target data has no labels and there is no data.test_list"),
    ],
    ids=["validate-limit-0", "test-limit-0", "unlabeled-without-test-list"],
)
def test_nothing_to_evaluate_is_an_error(shapes_dir, tmp_path, command, extra, message):
    if extra == ["UNLABELED"]:
        unlabeled = tmp_path / "unlabeled.txt"
        lines = (shapes_dir / "target.txt").read_text().splitlines()
        unlabeled.write_text("\n".join(line.split()[0] for line in lines) + "\n")
        extra = [f"--data.train_list={unlabeled}", "--data.test_list=null"]
    with pytest.raises(InputError, match=message):
        cli_main([command, *demo_args(shapes_dir, tmp_path, *extra)])
    assert not list(tmp_path.rglob("metrics.json"))


@pytest.mark.slow
def test_validate_on_the_demo_config_gives_the_zero_shot_metrics(tmp_path):
    """`uft validate -c configs/demo.yaml` (as the README says) evaluates the zero-shot model on both splits."""
    data = [f"--data.root={tmp_path / 'world'}"]  # rendered there by the demo's recipe, whose files are the defaults
    cli = cli_main(
        ["validate", "-c", str(ROOT / "configs" / "demo.yaml"), *data, f"--trainer.default_root_dir={tmp_path}"]
    )
    metrics = json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())
    assert metrics["test"]["samples"] == 24 * 32 and metrics["target"]["samples"] == 14 * 64
    assert 0.3 < metrics["test"]["pacc"] < 0.8  # the shipped CLIP's zero-shot accuracy under fog, not chance
