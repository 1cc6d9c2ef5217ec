"""The same `uft fit` on 1 and 2 real processes (DDP, gloo, CPU), each with one thread: the same losses, parameters,
table and metrics within float32 rounding; a dead rank or a SIGTERM ends the whole run. Every run is a subprocess with
a timeout, so a hang fails the test."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from uft.distributed import gather_batch
from uft.objectives import IM, POUF, UEO

from .args import ROOT, ddp_args, demo_args
from .processes import RUN_TIMEOUT, THREADS, assert_gone, free_port, run_env, uft
from .tolerances import LOSS_ATOL, PARAM_ATOL, TABLE_ATOL, assert_metrics_agree

pytestmark = pytest.mark.slow


def world_size_of(proc: subprocess.CompletedProcess) -> int:
    """The number of processes a DDP run had, from Lightning's line per process ("Initializing distributed:
    GLOBAL_RANK: r, MEMBER: r+1/W"): every member 1..W of one W reported it."""
    members = sorted({(int(rank), int(size)) for rank, size in re.findall(r"MEMBER: (\d+)/(\d+)", proc.stderr)})
    assert members and members == [(r, members[0][1]) for r in range(1, members[0][1] + 1)], members
    return members[0][1]


def fit_and_record(data: Path, root: Path, devices: int, *extra: str) -> tuple[dict, dict]:
    """Fit on ``devices`` processes; return the recording of tests.helpers.RecordTraining and metrics.json."""
    record = root / "record.pt"
    args = [
        "fit",
        *demo_args(data, root, *ddp_args(devices), "--trainer.max_epochs=3", *extra),
        "--trainer.callbacks+=tests.helpers.RecordTraining",
        f"--trainer.callbacks.path={record}",
    ]
    proc = uft(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (metrics,) = root.rglob("metrics.json")
    return torch.load(record, weights_only=True), json.loads(metrics.read_text())


def assert_same_training(one: dict, two: dict, steps: int) -> None:
    """Two RecordTraining recordings, of 1 and of 2 processes, trained the same model, and training moved it."""
    assert (one["world_size"], two["world_size"]) == (1, 2)  # a fall-back to one process would compare 1 with 1
    assert len(one["losses"]) == len(two["losses"]) == steps
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=0, atol=LOSS_ATOL)
    assert one["params"].keys() == two["params"].keys() == one["initial"].keys()
    for name, value in one["params"].items():
        torch.testing.assert_close(two["params"][name], value, rtol=0, atol=PARAM_ATOL, msg=name)
    if one["table"] is None or two["table"] is None:
        assert one["table"] is two["table"] is None  # the objective keeps no table
    else:
        torch.testing.assert_close(two["table"], one["table"], rtol=0, atol=TABLE_ATOL)
    # Training moved the parameters, far beyond the tolerance: equal results are not equal no-ops. Measured: each
    # tensor by 3.9e-4 (a LayerNorm bias) to 6.2e-2 (the prompt context).
    moved = {name: float((value - one["initial"][name]).abs().max()) for name, value in one["params"].items()}
    assert max(moved.values()) > 100 * PARAM_ATOL, moved
    assert min(moved.values()) > PARAM_ATOL, moved  # every tensor: its comparison above says something


@pytest.mark.parametrize("objective", ["UEO", "IM", "POUF"])
def test_one_and_two_processes_train_the_same_model(shapes_dir, tmp_path, objective):
    """Loss at every step, final parameters and the confidence table within float32 rounding (assert_same_training),
    validation metrics of the last epoch equal. The evaluation sets (32 test and 42 target images) split into uneven
    batch counts.

    Parameters that differ in the last float bits can break or make an exact tie of two images' scores (the
    generated shapes hold near-duplicates), so a rank metric may move by one pair: AUROC by 1 / (known x unknown)
    pairs, FPR95 by one unknown image. Evaluation of the same parameters in the same batches is exact (the test
    below)."""
    extra = (f"--model.objective=uft.objectives.{objective}", "--data.eval_batch_size=5")
    one, one_metrics = fit_and_record(shapes_dir, tmp_path / "one", 1, *extra)
    two, two_metrics = fit_and_record(shapes_dir, tmp_path / "two", 2, *extra)

    assert_same_training(one, two, steps=3 * (42 // 16))  # full global batches only
    assert (one["table"] is not None) == (objective == "UEO")  # UEO's confidence weights; the others keep none

    assert_metrics_agree(one_metrics, two_metrics)


def test_unreadable_images_are_skipped_alike_on_two_processes(shapes_dir, tmp_path):
    """One unreadable target image (met by the confidence pass of both processes' shares) and one unreadable test
    image: 1 and 2 processes train the same model, list the same two files and evaluate the same samples; with a
    lower max_skipped both processes stop (no hang)."""
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    bad = [(data / name).read_text().splitlines()[3].split()[0] for name in ("target.txt", "test.txt")]
    bad[1] = (data / "test.txt").read_text().splitlines()[-1].split()[0]
    for rel in bad:
        (data / rel).write_bytes(b"")
    extra = ("--data.eval_batch_size=5", "--data.max_skipped=0.05")
    one, one_metrics = fit_and_record(data, tmp_path / "one", 1, *extra)
    two, two_metrics = fit_and_record(data, tmp_path / "two", 2, *extra)
    assert_same_training(one, two, steps=3 * (42 // 16))  # the sampler deals all 42; a step drops the unreadable one
    assert int((one["table"] == 0).sum()) == 1  # the unreadable image's row: zero, never read
    assert one_metrics["target"]["samples"] == two_metrics["target"]["samples"] == 42 - 1
    assert one_metrics["test"]["samples"] == two_metrics["test"]["samples"] == 32 - 1
    (listed_one,) = (tmp_path / "one").rglob("skipped_images.txt")
    (listed_two,) = (tmp_path / "two").rglob("skipped_images.txt")
    assert listed_one.read_text() == listed_two.read_text()
    assert [line.split("\t")[1] for line in listed_one.read_text().splitlines()] == bad  # target, then test

    proc = uft(["fit", *demo_args(data, tmp_path / "stop", *ddp_args(2), "--data.max_skipped=0.01")])
    assert proc.returncode != 0
    assert "uft: error: 1 of the 42 target images cannot be read" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("eval_batch_size", [7, 128], ids=["uneven-batches", "one-batch-shared"])
def test_two_process_evaluation_counts_every_sample_once(shapes_dir, tmp_path, eval_batch_size):
    """`uft test` of one checkpoint on 1 and 2 processes: the same metrics over the same 32 + 42 images, whether
    the batches deal unevenly (32 = 4 x 7 + 4) or a whole split fits in one batch that the processes share."""
    proc = uft(["fit", *demo_args(shapes_dir, tmp_path / "fit", "--trainer.max_epochs=1")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / "fit" / "checkpoints" / "last.ckpt"
    results = {}
    for devices in (1, 2):
        root = tmp_path / f"test{devices}"
        extra = (*ddp_args(devices), f"--data.eval_batch_size={eval_batch_size}")
        proc = uft(["test", *demo_args(shapes_dir, root, *extra), f"--ckpt_path={ckpt}"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert world_size_of(proc) == devices
        (metrics,) = root.rglob("metrics.json")
        results[devices] = json.loads(metrics.read_text())
    assert results[1]["test"]["samples"] == 32 and results[1]["target"]["samples"] == 42
    if eval_batch_size == 7:
        # Each process evaluates whole 1-process batches (BatchShardSampler), at equal thread counts: every image's
        # score comes from the same arithmetic, the gather copies it, and the metrics count and sort the same numbers.
        assert results[2] == results[1]
    else:
        # The one 1-process batch of a split is cut in two (16 + 16, 21 + 21): other matrix shapes may round the
        # last bits otherwise (measured: identical scores here), which can flip a near-tie of two scores.
        assert_metrics_agree(results[1], results[2])


def test_batch_that_does_not_divide_over_processes_is_refused(shapes_dir, tmp_path):
    proc = uft(["fit", *demo_args(shapes_dir, tmp_path, *ddp_args(2), "--data.batch_size=15")])
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("uft: error:")]
    assert len(errors) == 1, proc.stderr  # checked before the second process starts
    assert "data.batch_size=15" in errors[0] and "2 processes" in errors[0]
    assert "Traceback" not in proc.stderr and "Initializing distributed" not in proc.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_dead_rank_ends_the_run(shapes_dir, tmp_path, how):
    """Rank 1 raises, or is killed with SIGKILL, at step 1: the run exits with an error well within the bound and
    leaves no process behind."""
    args = [
        "fit",
        *demo_args(shapes_dir, tmp_path, *ddp_args(2), "--trainer.max_epochs=50"),
        "--trainer.callbacks+=tests.helpers.FailOnRank",
        f"--trainer.callbacks.how={how}",
        f"--trainer.callbacks.pid_dir={tmp_path}",
    ]
    start = time.monotonic()
    proc = uft(args, timeout=120)
    assert proc.returncode != 0
    assert time.monotonic() - start < 120
    assert sorted(p.name for p in tmp_path.glob("rank*.pid")) == ["rank0.pid", "rank1.pid"]  # 2 processes trained
    assert_gone(tmp_path)


def test_sigterm_ends_a_two_process_run(shapes_dir, tmp_path):
    """SIGTERM to the launching process (what `timeout`, `kill` and schedulers send) ends both processes, with the
    conventional exit status 143 rather than Lightning's 0."""
    args = [
        "fit",
        *demo_args(shapes_dir, tmp_path, *ddp_args(2), "--trainer.max_epochs=1000"),
        "--trainer.callbacks+=tests.helpers.SlowSteps",
        f"--trainer.callbacks.pid_dir={tmp_path}",
    ]
    env = run_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uft", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not all((tmp_path / f"rank{r}.pid").exists() for r in range(2)):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run did not start training"
            time.sleep(0.2)
        time.sleep(1.0)  # inside the training loop
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM  # a stopped run does not report success
    assert_gone(tmp_path)


def test_torchrun_launch_trains_the_same_model(shapes_dir, tmp_path):
    """The torchrun command of docs/running.md (one node, 2 CPU processes): the losses and parameters of 1 process."""
    one, _ = fit_and_record(shapes_dir, tmp_path / "one", 1)
    record = tmp_path / "torchrun.pt"
    args = [
        *demo_args(shapes_dir, tmp_path / "torchrun", *ddp_args(2), "--trainer.max_epochs=3"),
        "--trainer.callbacks+=tests.helpers.RecordTraining",
        f"--trainer.callbacks.path={record}",
    ]
    torchrun = Path(sys.executable).parent / "torchrun"
    env = run_env()
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "uft", "fit", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_training(one, torch.load(record, weights_only=True), steps=3 * (42 // 16))


def _gradient_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Each rank: its slice of a batch, logits gathered by gather_batch, the global loss, backward, then the
    gradient averaged over ranks as DDP does. Saves the averaged gradient of each objective."""
    torch.set_num_threads(int(THREADS))  # as the 1-process reference: the comparison is of process counts alone
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size, timeout=timedelta(seconds=60)
    )
    try:
        features, weights, table = _gradient_problem()
        rows = features.shape[0] // world_size
        grads = {}
        for objective in (UEO(), IM(), POUF(diversity_weight=0.3)):
            weights.grad = None
            cosine = gather_batch(features[rank * rows : (rank + 1) * rows] @ weights.T)
            index = gather_batch(torch.arange(rank * rows, (rank + 1) * rows))
            objective(10.0 * cosine, table[index], cosine=cosine).backward()
            dist.all_reduce(weights.grad)
            grads[type(objective).__name__] = weights.grad / world_size
        torch.save(grads, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _gradient_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(8, 6, generator=generator), dim=-1)
    weights = torch.nn.functional.normalize(torch.randn(4, 6, generator=generator), dim=-1).requires_grad_()
    table = torch.rand(8, generator=generator) * 0.5 + 0.3
    return features, weights, table


def test_gathered_global_batch_gives_the_single_process_gradient(tmp_path):
    """With the loss on the gathered batch and DDP's averaging, the 2-process gradient equals the 1-process gradient
    (not twice it), for UEO, IM and POUF, whose batch-level terms (weighted sums, marginal entropy, the softmax over
    the images) all span the global batch."""
    mp.spawn(_gradient_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    features, weights, table = _gradient_problem()
    threads = torch.get_num_threads()
    torch.set_num_threads(int(THREADS))
    try:
        for objective in (UEO(), IM(), POUF(diversity_weight=0.3)):
            weights.grad = None
            cosine = features @ weights.T
            objective(10.0 * cosine, table, cosine=cosine).backward()
            for rank in range(2):
                got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)[type(objective).__name__]
                # Each entry sums 8 rows' products, on 2 processes as two sums of 4 (float32, the order differs):
                # within 7 eps x (sum of |terms|) <= 7 x 1.2e-7 x 0.5 = 4e-7 of the entries' scale (at most 0.5);
                # the logits (10 x cosine) may differ by ulps too. Measured: 3e-8 (2.8e-7 relative). A gradient off
                # by x2 (an unaveraged gather) differs by the gradient itself, up to 0.5.
                torch.testing.assert_close(got, weights.grad, rtol=1e-5, atol=1e-6)
    finally:
        torch.set_num_threads(threads)


def test_processes_started_by_ddp_spawn_are_as_quiet_as_the_command_line(shapes_dir, tmp_path):
    """`strategy: ddp_spawn` starts processes that run none of the command line's code: the callback that hides
    Lightning's noise there (uft.callbacks.QuietSpawnedProcesses) keeps its warnings out of the output."""
    result = uft(["fit", *demo_args(shapes_dir, tmp_path, *ddp_args(2), "--trainer.strategy=ddp_spawn")])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output  # two processes ran, the second one spawned
    assert "in eval mode" not in output and "sync_dist" not in output
