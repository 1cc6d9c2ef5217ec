"""Runs that cannot give a right answer stop with one message: divergence, non-finite scores, nothing to evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uft.cli import cli_main
from uft.errors import Diverged, InputError

from .conftest import ROOT, demo_args


def test_divergence_keeps_the_last_state_whose_next_loss_was_finite(shapes_dir, tmp_path):
    """The rate is 1e30 from step 3 on, checkpoints every step. Step 3's update makes the norm weights huge but
    finite (so the state after it is saved), and the loss computed on that state, at step 4, is NaN: the run stops
    there, naming the step, and last.ckpt holds the state at step 3 again, equal to an unperturbed run's at step 3.
    Resuming it with the normal rate trains to the end."""
    common = ("--data.batch_size=8", "--checkpoint.every_n_train_steps=1")  # 5 steps an epoch, 2 epochs
    run = tmp_path / "run"
    blow_up = [*demo_args(shapes_dir, run, *common), "--trainer.callbacks+=tests.helpers.BlowUpAt"]
    message = r"training diverged at step 4: the loss is nan .*prompt 1e\+30.*last finite loss .* at step 3.*"
    with pytest.raises(
        Diverged, match=message + r"last.ckpt holds step 3 again, .* \(the one saved at step 4 diverged\)"
    ):
        cli_main(["fit", *blow_up])
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]  # no checked.ckpt or partial file left
    kept = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert kept["global_step"] == 3

    plain = tmp_path / "plain"
    cli_main(["fit", *demo_args(shapes_dir, plain, *common), "--trainer.callbacks+=tests.helpers.StopAtStep"])
    reference = torch.load(plain / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert reference["global_step"] == 3
    assert kept["state_dict"].keys() == reference["state_dict"].keys()
    for name, value in reference["state_dict"].items():  # the same computation in the same process: bit-equal
        assert torch.equal(kept["state_dict"][name], value), name

    cli_main(["fit", *demo_args(shapes_dir, run, *common), "--ckpt_path=last"])
    resumed = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 10 and resumed["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in resumed["state_dict"].values())


def test_divergence_at_the_first_step_leaves_no_last_checkpoint(shapes_dir, tmp_path):
    """A rate of 1e30 from the start: no saved state ever led to a finite loss, so nothing named last.ckpt is left
    for --ckpt_path last to resume."""
    args = [*demo_args(shapes_dir, tmp_path, "--data.batch_size=8", "--checkpoint.every_n_train_steps=1")]
    with pytest.raises(Diverged, match=r"training diverged at step 1: .*moved to diverged.ckpt"):
        cli_main(["fit", *args, "--model.prompt_lr=1e30", "--model.visual_lr=1e30"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["diverged.ckpt"]


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
