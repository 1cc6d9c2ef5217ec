"""Runs stopped from outside resume exactly: SIGKILL mid-epoch (the default single-device strategy, DDP on 1 and 2
processes, and a 2-process checkpoint on 1 process), Ctrl-C and SIGTERM; a new fit never starts silently beside an
earlier run. Every run is a subprocess with a timeout (and the same number of threads per process), so a hang fails
the test."""

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

from .args import ROOT, ddp_args, demo_args
from .processes import RUN_TIMEOUT, checkpoint_step, interrupt, run_env, steps_done, uft
from .tolerances import LOSS_ATOL, PARAM_ATOL, assert_metrics_agree

pytestmark = pytest.mark.slow

EPOCHS, BATCH = 3, 8  # 42 target images: 5 global batches of 8 per epoch, 15 steps
STEPS_PER_EPOCH = 42 // BATCH
OPTIMIZERS = {
    "sgd-momentum": ["--model.optimizer=torch.optim.SGD", "--model.optimizer.momentum=0.9"],
    "adamw": ["--model.optimizer=torch.optim.AdamW"],
}
# How a run is launched: (trainer arguments, number of processes). "single-device" is the config's own strategy (what
# a laptop user runs: no DDP at all).
LAUNCHES = {"single-device": ([], 1), "ddp-1": (ddp_args(1), 1), "ddp-2": (ddp_args(2), 2)}
# A resumed run against the uninterrupted one on the same number of processes and threads: the same operations on
# the same inputs, from a state the checkpoint restores by copy (parameters, optimiser moments, schedule, sampler).
# Measured: no difference at all. atol 1e-6 (~8 float32 ulps at the norm affines' magnitude 1) leaves room for kernels
# whose rounding depends on memory layout; a resume that skipped, repeated or reordered a step, or lost the optimiser
# state, moves the parameters by lr-sized steps (1e-2 here), losses by more.
SAME_ATOL = 1e-6


def run_args(data: Path, root: Path, launch: str, optimizer: str, record: str, *extra: str) -> list[str]:
    """`uft fit` arguments of the runs compared here; RecordTraining writes ``root / record``."""
    trainer, _ = LAUNCHES[launch]
    return [
        "fit",
        *demo_args(data, root, *trainer, f"--trainer.max_epochs={EPOCHS}", f"--data.batch_size={BATCH}"),
        "--data.eval_batch_size=5",
        *OPTIMIZERS[optimizer],
        "--trainer.callbacks+=tests.helpers.RecordTraining",
        f"--trainer.callbacks.path={root / record}",
        *extra,
    ]


def fit(args: list[str]) -> None:
    proc = uft(args)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def uninterrupted(shapes_dir, tmp_path_factory):
    """``uninterrupted(launch, optimizer)``: the folder of the uninterrupted run the resumed runs are compared with,
    fitted once per module (several tests compare with the same run)."""
    roots: dict[tuple[str, str], Path] = {}

    def run(launch: str, optimizer: str) -> Path:
        if (launch, optimizer) not in roots:
            root = tmp_path_factory.mktemp(f"full-{launch}-{optimizer}")
            fit(run_args(shapes_dir, root, launch, optimizer, "record.pt"))
            roots[launch, optimizer] = root
        return roots[launch, optimizer]

    return run


def metrics(root: Path) -> dict:
    newest = max(root.rglob("metrics.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(newest.read_text())


def assert_resumed_exactly(full_root: Path, resumed_root: Path, resumed_record: str, launches: tuple[str, str]) -> None:
    """The resumed run started at the checkpoint's step in the middle of the second epoch, ran exactly the steps
    that were left, on the same batches with the same losses, and ended with the same parameters and metrics.
    ``launches``: how the uninterrupted and the resumed run were launched (their process counts are checked)."""
    full = torch.load(full_root / "record.pt", weights_only=True)
    resumed = torch.load(resumed_root / resumed_record, weights_only=True)
    worlds = tuple(LAUNCHES[launch][1] for launch in launches)
    assert (full["world_size"], resumed["world_size"]) == worlds  # a fall-back to one process would pass unseen
    start = resumed["first_step"]
    assert STEPS_PER_EPOCH < start < 2 * STEPS_PER_EPOCH, f"resumed at step {start}, not mid second epoch"
    assert len(full["losses"]) == EPOCHS * STEPS_PER_EPOCH
    assert len(resumed["losses"]) == len(full["losses"]) - start  # no finished batch done again
    assert resumed["indices"] == full["indices"][start:]  # the batches an uninterrupted run saw next
    # On other process counts, the 1-vs-2-process tolerances (tests/tolerances.py has their derivation). Here,
    # 9 steps of SGD with momentum 0.9 after a resume on 1 process of a 2-process checkpoint: measured 8.9e-7 (losses)
    # and 1.2e-7 (parameters), no more than the 6 plain SGD steps there.
    loss_atol, param_atol = (SAME_ATOL, SAME_ATOL) if worlds[0] == worlds[1] else (LOSS_ATOL, PARAM_ATOL)
    losses = torch.tensor(resumed["losses"]), torch.tensor(full["losses"][start:])
    torch.testing.assert_close(*losses, rtol=0, atol=loss_atol)
    for name, value in full["params"].items():
        torch.testing.assert_close(resumed["params"][name], value, rtol=0, atol=param_atol, msg=name)
    # The resumed part trained: its parameters moved far beyond the tolerance from the checkpoint's (measured: 2.4e-2
    # to 8.6e-2, at least 24x the bound).
    moved = max(float((value - resumed["initial"][name]).abs().max()) for name, value in resumed["params"].items())
    assert moved > 100 * param_atol
    if worlds[0] == worlds[1]:  # the same arithmetic: the same scores, the same metrics
        for split in ("test", "target"):
            assert metrics(resumed_root)[split] == pytest.approx(metrics(full_root)[split], abs=1e-6)
    else:  # parameters a few ulps apart can flip a near-tie of two images' scores
        assert_metrics_agree(metrics(full_root), metrics(resumed_root))


@pytest.mark.parametrize(
    "launch, optimizer",
    [("single-device", "sgd-momentum"), ("ddp-1", "sgd-momentum"), ("ddp-1", "adamw"), ("ddp-2", "adamw")],
)
def test_sigkill_mid_epoch_resumes_exactly(shapes_dir, tmp_path, uninterrupted, launch, optimizer):
    """Killed with SIGKILL after step 7 (mid second epoch), checkpoints every step: `--ckpt_path last` continues
    with the optimiser state (momentum, Adam moments), the scheduler and the sampler's place in the epoch, on the
    default single-device strategy and under DDP (2 processes: both killed)."""
    cut = tmp_path / "cut"
    full = uninterrupted(launch, optimizer)
    every_step = "--checkpoint.every_n_train_steps=1"
    interrupt(run_args(shapes_dir, cut, launch, optimizer, "killed.pt", every_step), cut, 7, signal.SIGKILL)
    assert not (cut / "killed.pt").exists()  # it really died
    assert len(list(cut.glob("rank*.pid"))) == LAUNCHES[launch][1]  # every process was running when killed
    fit(run_args(shapes_dir, cut, launch, optimizer, "resumed.pt", every_step, "--ckpt_path=last"))
    assert_resumed_exactly(full, cut, "resumed.pt", (launch, launch))


def saved(root: Path) -> dict:
    return torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.mark.parametrize("second", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
@pytest.mark.parametrize("launch", ["single-device", "ddp-2"])
def test_a_run_interrupted_twice_resumes_exactly(shapes_dir, tmp_path, uninterrupted, launch, second):
    """Killed with SIGKILL in the evaluation at the end of the first epoch (after its last step was saved), resumed,
    stopped again two steps later (SIGKILL, or SIGTERM, which saves the step it stops at), resumed to the end: the
    run ends at the uninterrupted run's step with its parameters, losses and metrics. (Lightning's own counters
    alone restarted the second epoch here: 16 steps instead of 15.)"""
    cut = tmp_path / "cut"
    full = uninterrupted(launch, "adamw")
    every_step = "--checkpoint.every_n_train_steps=1"
    first = run_args(shapes_dir, cut, launch, "adamw", "first.pt", every_step)
    interrupt(first, cut, STEPS_PER_EPOCH, signal.SIGKILL, evaluating=True)
    assert not (cut / "first.pt").exists()  # it really died
    assert (cut / "evaluating").read_text() == "0"  # inside the first epoch's evaluation
    first_save = saved(cut)
    assert first_save["global_step"] == STEPS_PER_EPOCH and not first_save["uft_epoch_end"]  # before its epoch end
    second_args = run_args(shapes_dir, cut, launch, "adamw", "second.pt", every_step, "--ckpt_path=last")
    interrupt(second_args, cut, STEPS_PER_EPOCH + 2, second)
    assert not (cut / "second.pt").exists()
    step = saved(cut)["global_step"]
    assert STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH  # stopped inside the second epoch, after a step of it
    fit(run_args(shapes_dir, cut, launch, "adamw", "resumed.pt", every_step, "--ckpt_path=last"))
    record, whole = (
        torch.load(root / name, weights_only=True) for root, name in ((cut, "resumed.pt"), (full, "record.pt"))
    )
    assert (record["world_size"], record["first_step"]) == (LAUNCHES[launch][1], step)
    assert saved(cut)["global_step"] == len(whole["losses"]) == EPOCHS * STEPS_PER_EPOCH
    assert record["indices"] == whole["indices"][step:]
    torch.testing.assert_close(
        torch.tensor(record["losses"]), torch.tensor(whole["losses"][step:]), rtol=0, atol=SAME_ATOL
    )
    for name, value in whole["params"].items():
        torch.testing.assert_close(record["params"][name], value, rtol=0, atol=SAME_ATOL, msg=name)
    for split in ("test", "target"):
        assert metrics(cut)[split] == pytest.approx(metrics(full)[split], abs=1e-6)


def test_a_run_stopped_in_its_final_evaluation_resumes_to_it_and_a_finished_run_is_refused(
    shapes_dir, tmp_path, uninterrupted
):
    """Killed in the evaluation after its last step: `--ckpt_path last` evaluates (the metrics of the uninterrupted
    run) and trains nothing; then the run is finished: `--ckpt_path last` is refused in one line, and `--fresh`
    starts afresh (as it says) although `--ckpt_path last` is given."""
    cut = tmp_path / "cut"
    full = uninterrupted("single-device", "adamw")
    every_step = "--checkpoint.every_n_train_steps=1"
    last_step = EPOCHS * STEPS_PER_EPOCH
    interrupt(
        run_args(shapes_dir, cut, "single-device", "adamw", "killed.pt", every_step),
        cut,
        last_step,
        signal.SIGKILL,
        evaluating=True,
    )
    assert (cut / "evaluating").read_text() == str(EPOCHS - 1)
    assert saved(cut)["global_step"] == last_step and not saved(cut)["uft_epoch_end"]
    proc = uft(run_args(shapes_dir, cut, "single-device", "adamw", "resumed.pt", "--ckpt_path=last"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished training but was stopped before its final evaluation: evaluating" in proc.stderr + proc.stdout
    assert not (cut / "resumed.pt").exists()  # no training ran
    for split in ("test", "target"):
        assert metrics(cut)[split] == pytest.approx(metrics(full)[split], abs=1e-6)
    done = tmp_path / "done"  # a copy: other tests compare with the uninterrupted run
    shutil.copytree(full, done)
    fit(run_args(shapes_dir, done, "single-device", "adamw", "again.pt", "--ckpt_path=last", "--trainer.max_epochs=4"))
    assert saved(done)["uft_epoch_end"] and saved(done)["global_step"] == last_step + STEPS_PER_EPOCH
    proc = uft(
        run_args(shapes_dir, done, "single-device", "adamw", "again.pt", "--ckpt_path=last", "--trainer.max_epochs=4")
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("uft: error:")]
    assert errors == [
        f"uft: error: {done / 'checkpoints' / 'last.ckpt'} holds a finished run (4 epochs, step "
        f"{last_step + STEPS_PER_EPOCH}; trainer.max_epochs=4, max_steps=-1): nothing to resume; to train longer "
        "raise --trainer.max_epochs, to start again use --fresh"
    ], proc.stderr
    proc = uft(run_args(shapes_dir, done, "single-device", "adamw", "fresh.pt", "--ckpt_path=last", "--fresh"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--fresh: starting a new run; --ckpt_path last is not used" in proc.stderr + proc.stdout
    assert torch.load(done / "fresh.pt", weights_only=True)["first_step"] == 0


def test_a_second_fit_into_a_running_fits_folder_is_refused_and_a_killed_fits_lock_taken_over(shapes_dir, tmp_path):
    """While a fit runs, another into its folder (here resuming it) is refused in one line naming the first's
    process; after the first is killed with SIGKILL, its lock is stale: the next fit (here a fresh one) takes it
    over, says so, and removes it when it ends."""
    cut = tmp_path / "cut"
    cut.mkdir()
    lock = cut / "checkpoints" / "run.lock"
    slow = ["--trainer.callbacks+=tests.helpers.SlowSteps", "--trainer.callbacks.seconds=0.3"]
    args = [
        *run_args(shapes_dir, cut, "single-device", "adamw", "first.pt", "--trainer.max_epochs=30"),  # 150 slow steps
        *slow,
        f"--trainer.callbacks.pid_dir={cut}",
    ]
    cmd = [sys.executable, "-m", "uft", *args]
    with (cut / "first.log").open("w") as log:
        first = subprocess.Popen(cmd, cwd=ROOT, env=run_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            while steps_done(cut) < 1:
                assert first.poll() is None and time.monotonic() < deadline, (cut / "first.log").read_text()[-3000:]
                time.sleep(0.05)
            assert json.loads(lock.read_text())["pid"] == first.pid
            resume = ["--ckpt_path=last", "--trainer.max_epochs=30"]
            second = uft(run_args(shapes_dir, cut, "single-device", "adamw", "second.pt", *resume))
            assert first.poll() is None  # the first still ran all along
            first.kill()
            first.wait(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    assert second.returncode == 2 and "Traceback" not in second.stderr
    errors = [line for line in second.stderr.splitlines() if line.startswith("uft: error:")]
    assert len(errors) == 1 and f"is in use by a fit that is still running (pid {first.pid} on " in errors[0], errors
    assert not (cut / "second.pt").exists() and lock.exists()  # the killed fit left its lock
    third = uft(run_args(shapes_dir, cut, "single-device", "adamw", "third.pt", "--fresh", "--trainer.max_epochs=1"))
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"was left by a fit that no longer runs (pid {first.pid} on " in third.stderr + third.stdout
    assert (cut / "third.pt").exists() and not lock.exists()


def test_two_process_checkpoint_resumes_on_two_and_on_one(shapes_dir, tmp_path, uninterrupted):
    """Both processes killed mid second epoch: resumed on 2 processes and, from a copy, on 1, each ends where the
    uninterrupted 2-process run ends."""
    cut = tmp_path / "cut"
    every_step = "--checkpoint.every_n_train_steps=1"
    full = uninterrupted("ddp-2", "sgd-momentum")
    interrupt(run_args(shapes_dir, cut, "ddp-2", "sgd-momentum", "killed.pt", every_step), cut, 7, signal.SIGKILL)
    assert not (cut / "killed.pt").exists()  # it really died
    for launch in ("ddp-2", "ddp-1"):
        resumed = tmp_path / f"resumed-{launch}"
        shutil.copytree(cut / "checkpoints", resumed / "checkpoints")
        fit(run_args(shapes_dir, resumed, launch, "sgd-momentum", "resumed.pt", every_step, "--ckpt_path=last"))
        assert_resumed_exactly(full, resumed, "resumed.pt", ("ddp-2", launch))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_save_a_checkpoint_that_resumes_exactly(shapes_dir, tmp_path, uninterrupted, signum):
    """With only the default time-based and end-of-epoch saves, the mid-epoch checkpoint can only come from the
    signal: the run stops at a step boundary, saves, exits 143, and resumes exactly."""
    cut = tmp_path / "cut"
    full = uninterrupted("ddp-1", "sgd-momentum")
    status = interrupt(run_args(shapes_dir, cut, "ddp-1", "sgd-momentum", "stopped.pt"), cut, 7, signum)
    assert status == 128 + signal.SIGTERM
    assert 7 <= checkpoint_step(cut) <= 9  # the step running when the signal came (the timer cannot fire)
    assert not list((cut / "checkpoints").glob("*.part"))
    fit(run_args(shapes_dir, cut, "ddp-1", "sgd-momentum", "resumed.pt", "--ckpt_path=last"))
    assert_resumed_exactly(full, cut, "resumed.pt", ("ddp-1", "ddp-1"))


def test_sigusr1_saves_and_requeues_the_slurm_job(shapes_dir, tmp_path):
    """SLURM's pre-emption signal (`#SBATCH --signal=SIGUSR1@90`) under a SLURM job: the run stops at a step,
    saves, asks `scontrol requeue <job>` (a stand-in on PATH records the call) and exits 143."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol.calls"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    cut = tmp_path / "cut"
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    args = run_args(shapes_dir, cut, "ddp-1", "sgd-momentum", "stopped.pt")
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
