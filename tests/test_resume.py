"""Runs stopped from outside resume exactly: SIGKILL mid-epoch (1 and 2 processes, and a 2-process checkpoint on 1
process), Ctrl-C and SIGTERM; a new fit never starts silently beside an earlier run. Every run is a subprocess with a
timeout, so a hang fails the test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from uft.cli import cli_main
from uft.errors import InputError

from .conftest import ROOT, demo_args
from .test_distributed import RUN_TIMEOUT, assert_gone, ddp_args, uft

pytestmark = pytest.mark.slow

EPOCHS, BATCH = 3, 8  # 42 target images: 5 global batches of 8 per epoch, 15 steps
STEPS_PER_EPOCH = 42 // BATCH
OPTIMIZERS = {
    "sgd-momentum": ["--model.optimizer=torch.optim.SGD", "--model.optimizer.momentum=0.9"],
    "adamw": ["--model.optimizer=torch.optim.AdamW"],
}


def run_args(data: Path, root: Path, devices: int, optimizer: str, record: str, *extra: str) -> list[str]:
    """`uft fit` arguments of the runs compared here; RecordTraining writes ``root / record``."""
    return [
        "fit",
        *demo_args(data, root, *ddp_args(devices), f"--trainer.max_epochs={EPOCHS}", f"--data.batch_size={BATCH}"),
        "--data.eval_batch_size=5",
        *OPTIMIZERS[optimizer],
        "--trainer.callbacks+=tests.helpers.RecordTraining",
        f"--trainer.callbacks.path={root / record}",
        *extra,
    ]


def fit(args: list[str]) -> None:
    proc = uft(args)
    assert proc.returncode == 0, proc.stderr[-3000:]


def interrupt(args: list[str], root: Path, after_steps: int, signum: int, **env_extra: str) -> int:
    """Start a slowed-down fit, send ``signum`` once rank 0 has finished ``after_steps`` steps (SIGKILL goes to
    every process, as when a job is killed), wait for all processes to end; return the exit status."""
    slow = ["--trainer.callbacks+=tests.helpers.SlowSteps", "--trainer.callbacks.seconds=0.3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", **env_extra}
    cmd = [sys.executable, "-m", "uft", *args, *slow, f"--trainer.callbacks.pid_dir={root}"]
    root.mkdir(parents=True, exist_ok=True)
    with (root / "interrupted.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            while _steps_done(root) < after_steps:
                assert proc.poll() is None, (root / "interrupted.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the run did not reach the step"
                time.sleep(0.05)
            if signum == signal.SIGKILL:
                for pid_file in root.glob("rank*.pid"):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
            else:
                proc.send_signal(signum)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert_gone(root)
    return proc.returncode


def _steps_done(root: Path) -> int:
    """Steps rank 0 reported finished (tests.helpers.SlowSteps writes the file atomically)."""
    steps = root / "steps"
    text = steps.read_text() if steps.exists() else ""
    return int(text) if text.strip() else -1


def checkpoint_step(root: Path) -> int:
    return torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]


def metrics(root: Path) -> dict:
    newest = max(root.rglob("metrics.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(newest.read_text())


def assert_resumed_exactly(full_root: Path, resumed_root: Path, resumed_record: str, atol: float) -> None:
    """The resumed run started at the checkpoint's step in the middle of the second epoch, ran exactly the steps
    that were left, on the same batches with the same losses, and ended with the same parameters and metrics."""
    full = torch.load(full_root / "record.pt", weights_only=True)
    resumed = torch.load(resumed_root / resumed_record, weights_only=True)
    start = resumed["first_step"]
    assert STEPS_PER_EPOCH < start < 2 * STEPS_PER_EPOCH, f"resumed at step {start}, not mid second epoch"
    assert len(full["losses"]) == EPOCHS * STEPS_PER_EPOCH
    assert len(resumed["losses"]) == len(full["losses"]) - start  # no finished batch done again
    assert resumed["indices"] == full["indices"][start:]  # the batches an uninterrupted run saw next
    torch.testing.assert_close(torch.tensor(resumed["losses"]), torch.tensor(full["losses"][start:]), rtol=0, atol=atol)
    for name, value in full["params"].items():
        torch.testing.assert_close(resumed["params"][name], value, rtol=0, atol=atol, msg=name)
    for split in ("test", "target"):
        assert metrics(resumed_root)[split] == pytest.approx(metrics(full_root)[split], abs=1e-6)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_sigkill_mid_epoch_resumes_exactly(shapes_dir, tmp_path, optimizer):
    """Killed with SIGKILL after step 7 (mid second epoch), checkpoints every step: `--ckpt_path last` continues
    with the optimiser state (momentum, Adam moments), the scheduler and the sampler's place in the epoch."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    fit(run_args(shapes_dir, full, 1, optimizer, "record.pt"))
    every_step = "--checkpoint.every_n_train_steps=1"
    interrupt(run_args(shapes_dir, cut, 1, optimizer, "killed.pt", every_step), cut, 7, signal.SIGKILL)
    assert not (cut / "killed.pt").exists()  # it really died
    fit(run_args(shapes_dir, cut, 1, optimizer, "resumed.pt", every_step, "--ckpt_path=last"))
    assert_resumed_exactly(full, cut, "resumed.pt", atol=1e-6)


def test_two_process_checkpoint_resumes_on_two_and_on_one(shapes_dir, tmp_path):
    """Both processes killed mid second epoch: resumed on 2 processes and, from a copy, on 1, each ends where the
    uninterrupted 2-process run ends."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    every_step = "--checkpoint.every_n_train_steps=1"
    fit(run_args(shapes_dir, full, 2, "sgd-momentum", "record.pt"))
    interrupt(run_args(shapes_dir, cut, 2, "sgd-momentum", "killed.pt", every_step), cut, 7, signal.SIGKILL)
    for devices in (2, 1):
        resumed = tmp_path / f"resumed-on-{devices}"
        shutil.copytree(cut / "checkpoints", resumed / "checkpoints")
        fit(run_args(shapes_dir, resumed, devices, "sgd-momentum", "resumed.pt", every_step, "--ckpt_path=last"))
        assert_resumed_exactly(full, resumed, "resumed.pt", atol=1e-5)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_save_a_checkpoint_that_resumes_exactly(shapes_dir, tmp_path, signum):
    """With only the default time-based and end-of-epoch saves, the mid-epoch checkpoint can only come from the
    signal: the run stops at a step boundary, saves, exits 143, and resumes exactly."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    fit(run_args(shapes_dir, full, 1, "sgd-momentum", "record.pt"))
    status = interrupt(run_args(shapes_dir, cut, 1, "sgd-momentum", "stopped.pt"), cut, 7, signum)
    assert status == 128 + signal.SIGTERM
    assert 7 <= checkpoint_step(cut) <= 9  # the step running when the signal came (the timer cannot fire)
    assert not list((cut / "checkpoints").glob("*.part"))
    fit(run_args(shapes_dir, cut, 1, "sgd-momentum", "resumed.pt", "--ckpt_path=last"))
    assert_resumed_exactly(full, cut, "resumed.pt", atol=1e-6)


def test_sigusr1_saves_and_requeues_the_slurm_job(shapes_dir, tmp_path):
    """SLURM's pre-emption signal (`#SBATCH --signal=SIGUSR1@90`) under a SLURM job: the run stops at a step,
    saves, asks `scontrol requeue <job>` (a stand-in on PATH records the call) and exits 143."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol.calls"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    cut = tmp_path / "cut"
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    args = run_args(shapes_dir, cut, 1, "sgd-momentum", "stopped.pt")
    status = interrupt(args, cut, 7, signal.SIGUSR1, PATH=path, SLURM_JOB_ID="4242")
    assert status == 128 + signal.SIGTERM
    assert calls.read_text().split() == ["requeue", "4242"]
    assert 7 <= checkpoint_step(cut) <= 9  # the step running when the signal came (the timer cannot fire)


def test_a_new_fit_never_starts_beside_an_earlier_run(shapes_dir, tmp_path, caplog):
    """A second fit into a run folder is refused unless it resumes (`--ckpt_path last`) or says `--fresh`;
    `--ckpt_path last` with nothing to resume says so and starts from scratch. One last.ckpt, never last-v1."""
    args = demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=1")
    with caplog.at_level("INFO"):
        cli_main(["fit", *args, "--ckpt_path=last"])
    assert "no checkpoint to resume" in caplog.text and "starting from scratch" in caplog.text
    with pytest.raises(InputError, match="holds an earlier run: resume it with --ckpt_path last"):
        cli_main(["fit", *args])
    one_epoch = checkpoint_step(tmp_path)
    with caplog.at_level("INFO"):
        resumed = cli_main(["fit", *args, "--trainer.max_epochs=2", "--ckpt_path=last"])
    assert resumed.trainer.current_epoch == 2 and checkpoint_step(tmp_path) == 2 * one_epoch
    # Extending the run re-plans the cosine schedule: half-way through the new run the factor is 0.5, not ~0.
    assert (
        f"re-planned over {2 * one_epoch} steps from step {one_epoch} (learning-rate factor now 0.500)" in caplog.text
    )
    with caplog.at_level("INFO"):
        cli_main(["fit", *args, "--fresh"])
    assert "--fresh: starting a new run" in caplog.text
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.ckpt"]
    assert checkpoint_step(tmp_path) == one_epoch  # the new run's, from scratch


def test_a_table_made_by_another_objective_is_refused(shapes_dir, tmp_path):
    """UEO's confidence weights are not UPL's pseudo-labels: resuming with another objective (or other settings of
    the same one) stops with a message instead of reusing the table."""
    args = demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=1")
    cli_main(["fit", *args])
    for objective in ("--model.objective=uft.objectives.UPL", "--model.objective.tau=0.5"):
        with pytest.raises(InputError, match=r"table was made by UEO\(tau=1.0, trade=1.0\)"):
            cli_main(["fit", *args, objective, "--trainer.max_epochs=2", "--ckpt_path=last"])


def test_signal_handlers_are_restored_after_fit(shapes_dir, tmp_path):
    """After `fit` (ended normally), SIGTERM, SIGINT and SIGUSR1 are handled as before it: a program that runs
    several fits (the comparison runner) still stops on SIGTERM."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    cli_main(["fit", *demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=1")])
    assert {s: signal.getsignal(s) for s in before} == before
