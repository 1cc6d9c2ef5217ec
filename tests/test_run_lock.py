"""One live fit per run folder (uft.run_lock): the lock refuses a second fit while its owner runs, and is taken over
from a process that is gone or from an earlier part of the same SLURM job."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from uft.errors import InputError
from uft.run_lock import LOCK_FILE, RunLock


def write_lock(folder, **owner) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = {"pid": os.getpid(), "host": socket.gethostname(), "started": None, "time": time.time(), "slurm_job": None}
    (folder / LOCK_FILE).write_text(json.dumps({**base, **owner}))


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_the_lock_is_held_while_the_run_lasts_and_then_gone(tmp_path):
    with RunLock(tmp_path) as lock:
        owner = json.loads((tmp_path / LOCK_FILE).read_text())
        assert (owner["pid"], owner["host"], lock.taken_over) == (os.getpid(), socket.gethostname(), None)
    assert not (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path, holder=False):  # another rank of the same run: rank 0 holds it for all
        assert not (tmp_path / LOCK_FILE).exists()


def test_a_live_owner_is_refused_a_dead_one_taken_over(tmp_path):
    write_lock(tmp_path)  # this very process: alive
    with pytest.raises(InputError, match=rf"{tmp_path} is in use by a fit that is still running \(pid {os.getpid()} "):
        RunLock(tmp_path).acquire()
    pid = dead_pid()
    write_lock(tmp_path, pid=pid)
    with RunLock(tmp_path) as lock:
        assert lock.taken_over["pid"] == pid
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_another_host_is_refused_and_the_same_slurm_job_takes_over(tmp_path, monkeypatch):
    write_lock(tmp_path, host="node-that-is-not-here")
    with pytest.raises(InputError, match=r"on another host .*node-that-is-not-here.*cannot be checked from here"):
        RunLock(tmp_path).acquire()
    write_lock(tmp_path, host="node-that-is-not-here", slurm_job="4242")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # the job requeued onto another node
    with RunLock(tmp_path) as lock:
        assert lock.taken_over["slurm_job"] == "4242"


def test_a_lock_being_written_is_not_taken(tmp_path):
    tmp_path.joinpath(LOCK_FILE).write_text("")  # created, not yet written: a fit starting at this moment
    with pytest.raises(InputError, match="in use by a fit that is starting"):
        RunLock(tmp_path).acquire()
