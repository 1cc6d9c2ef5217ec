"""Runs started as processes: `uft` as a subprocess with a timeout (so a hang fails the test) and the same threads
per process, a free port for torch.distributed, a run signalled mid-training (SIGKILL, SIGTERM, Ctrl-C, SIGUSR1),
the check that every process of a run is gone, and the step its last checkpoint holds."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .args import ROOT

RUN_TIMEOUT = 300  # seconds; a run here takes 10-20 s, a hang would otherwise block CI
# Threads per process in every run. Unset, Lightning gives a 1-process run all cores' threads and each of 2 processes
# half of them (docs/notes: threads per process): a 1-vs-2-process comparison would also compare thread counts,
# whose float results may differ in the last bits. Fixed for every run, it compares the process count alone.
THREADS = "1"


def run_env(**extra: str) -> dict[str, str]:
    """The environment of a run started here: this checkout's uft, the CPU, THREADS threads in each process."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": THREADS, **extra}


def uft(args: list[str], timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    env = run_env()
    cmd = [sys.executable, "-m", "uft", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A TCP port on localhost that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_gone(pid_dir: Path, within: float = 30.0) -> None:
    """Every process that wrote a pid file has exited (within ``within`` seconds)."""
    pids = [int(p.read_text()) for p in pid_dir.glob("rank*.pid")]
    assert pids, "no process reached training"
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids), "a process of the run is still alive"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def interrupt(
    args: list[str], root: Path, after_steps: int, signum: int, evaluating: bool = False, **env_extra: str
) -> int:
    """Start a slowed-down fit, send ``signum`` once rank 0 has finished ``after_steps`` steps (with
    ``evaluating``: and started the evaluation after them; SIGKILL goes to every process, as when a job is killed),
    wait for all processes to end; return the exit status."""
    slow = ["--trainer.callbacks+=tests.helpers.SlowSteps", "--trainer.callbacks.seconds=0.3"]
    if evaluating:
        slow.append("--trainer.callbacks.eval_seconds=0.3")
    env = run_env(**env_extra)
    cmd = [sys.executable, "-m", "uft", *args, *slow, f"--trainer.callbacks.pid_dir={root}"]
    root.mkdir(parents=True, exist_ok=True)
    for marker in ("steps", "evaluating"):  # of an earlier part of the run
        (root / marker).unlink(missing_ok=True)
    with (root / "interrupted.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            while steps_done(root) < after_steps or (evaluating and not (root / "evaluating").exists()):
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


def steps_done(root: Path) -> int:
    """Steps rank 0 reported finished (tests.helpers.SlowSteps writes the file atomically)."""
    steps = root / "steps"
    text = steps.read_text() if steps.exists() else ""
    return int(text) if text.strip() else -1


def checkpoint_step(root: Path) -> int:
    return torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]


def limit_file_size(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` for a child whose files cannot grow past ``limit`` bytes: a full disk without one (writes
    past it fail with EFBIG instead of killing the child by SIGXFSZ)."""

    def in_child() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return in_child
