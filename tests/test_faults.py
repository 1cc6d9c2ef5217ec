"""Runs that cannot give a right answer stop with one message: divergence, non-finite scores, nothing to evaluate."""

from __future__ import annotations

import errno
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uft.cli import cli_main
from uft.errors import Diverged, InputError

from .args import ROOT, demo_args
from .processes import limit_file_size, run_env


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
    """`uft validate -c configs/demo.yaml` evaluates the zero-shot model on both splits."""
    data = [f"--data.root={tmp_path / 'world'}"]  # rendered there by the demo's recipe, whose files are the defaults
    cli = cli_main(
        ["validate", "-c", str(ROOT / "configs" / "demo.yaml"), *data, f"--trainer.default_root_dir={tmp_path}"]
    )
    metrics = json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())
    assert metrics["test"]["samples"] == 24 * 32 and metrics["target"]["samples"] == 14 * 64
    assert 0.3 < metrics["test"]["pacc"] < 0.8  # the shipped CLIP's zero-shot accuracy under fog, not chance


# --- the output side ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "limit, where",
    [(4_000, "checkpoints/last.ckpt"), (20_000, "figures/"), (60_000, "lightning_logs/version_1 (the run's logs)")],
    ids=["checkpoint", "figures", "tensorboard"],
)
def test_a_full_disk_mid_fit_is_one_line_and_never_damages_last_ckpt(shapes_dir, tmp_path, limit, where):
    """A run resumed from a whole last.ckpt onto a disk that fills up: with room for no checkpoint (4 kB a file; one
    is 11 kB) the first save fails; with room for checkpoints but not for pictures (20 kB; a picture is up to 30 kB)
    the pictures at the end fail; with room for those but not for TensorBoard's events with the pictures (60 kB;
    about 100 kB) its writer thread fails, and the log folder is named (the write names no file). Each time: exit 2,
    one line, no traceback (also none from the writer thread), the earlier last.ckpt byte for byte (or a newer whole
    one), and no partial file."""
    cli_main(["fit", *demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=1")])
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    args = demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=2", "--ckpt_path=last")
    proc = subprocess.run(
        [sys.executable, "-m", "uft", "fit", *args],
        cwd=ROOT,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_file_size(limit),
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("uft: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert errors[0].startswith("uft: error: cannot write ") and where in errors[0] and "File too large" in errors[0]
    if where.startswith("checkpoints"):
        assert last.read_bytes() == before
    else:
        assert (
            torch.load(last, weights_only=True)["global_step"]
            > torch.load(io.BytesIO(before), weights_only=True)["global_step"]
        )
    partial = [p for p in tmp_path.rglob("*") if p.name.endswith((".part", ".tmp"))]
    assert not partial, partial


def test_a_root_dir_that_is_read_only_is_refused_before_the_run(shapes_dir, tmp_path, monkeypatch):
    """We run as root here, which writes through permissions: the read-only file system is simulated."""
    write_bytes = Path.write_bytes

    def read_only(self, data):
        if self.name.startswith(".uft-write-check"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", read_only)
    with pytest.raises(InputError, match=rf"trainer.default_root_dir {tmp_path}: cannot write .*: Read-only file sys"):
        cli_main(["fit", *demo_args(shapes_dir, tmp_path)])
    assert not list(tmp_path.iterdir())
