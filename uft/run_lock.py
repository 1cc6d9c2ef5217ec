"""One live run per run folder: a lock file naming its owner, taken before a fit writes anything.

Two fits into one folder would both write ``last.ckpt`` (the last writer wins) and the same logs, and neither would
know. The first takes ``<checkpoint folder>/run.lock`` (created exclusively: of two fits starting at once, one gets
it) holding its process id, host, start time and SLURM job; the second is refused while that process lives. A lock
left by a process that no longer runs (killed with SIGKILL, a lost node) is taken over with a line saying so, as is
one of the same SLURM job (a requeued job resumes on another node). On several processes, rank 0 holds it for all.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from uft.errors import InputError

LOCK_FILE = "run.lock"


def _started(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc``), to tell it from a later process that got
    the same id; ``None`` where ``/proc`` does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def process_runs(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc to ask: it answered the signal
    return state not in ("Z", "X")


def _alive(owner: dict) -> bool:
    """Whether the process that wrote ``owner`` still runs (it must be on this host to tell), and is not a later
    process that got the same id."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or not process_runs(pid):
        return False
    started = _started(pid)
    return started is None or owner.get("started") in (None, started)


def describe_owner(owner: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("time", 0)))
    job = f", SLURM job {owner['slurm_job']}" if owner.get("slurm_job") else ""
    return f"pid {owner.get('pid')} on {owner.get('host')}{job}, since {when}"


class RunLock:
    """The lock of one run folder, held from ``acquire`` to ``release`` (or as a context manager).

    Args:
        folder: the folder the run writes its checkpoints to.
        holder: whether this process takes the lock (rank 0 does, for all processes of the run).
    """

    def __init__(self, folder: str | os.PathLike, holder: bool = True) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.holder = holder
        self.taken_over: dict | None = None  # the stale owner this lock replaced
        self._held = False

    def _owner(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _started(os.getpid()),
            "time": time.time(),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
        }

    def acquire(self) -> None:
        if not self.holder:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock removed, then created by us or by a fit starting at the same moment
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._clear_stale()
                continue
            with os.fdopen(handle, "w") as out:
                json.dump(self._owner(), out)
            self._held = True
            return
        raise InputError(f"{self.path}: cannot take the run folder's lock (another fit keeps taking it)")

    def _clear_stale(self) -> None:
        """Removes the lock when its owner is gone; refuses when it runs."""
        try:
            owner = json.loads(self.path.read_text() or "{}")
        except FileNotFoundError:
            return  # released meanwhile
        except (OSError, ValueError):
            owner = {}  # unreadable: being written right now, or by a process killed while writing it
        if not owner and time.time() - self._mtime() < 10:
            raise InputError(f"{self.path.parent} is in use by a fit that is starting: give this run another folder")
        me = self._owner()
        same_job = owner.get("slurm_job") is not None and owner.get("slurm_job") == me["slurm_job"]
        if owner.get("host") == me["host"] and _alive(owner) and not same_job:
            raise InputError(
                f"{self.path.parent} is in use by a fit that is still running ({describe_owner(owner)}): wait for "
                "it to end, or give this run another --trainer.default_root_dir"
            )
        if owner.get("host") not in (None, me["host"]) and not same_job:
            raise InputError(
                f"{self.path.parent} is in use by a fit on another host ({describe_owner(owner)}), which cannot be "
                f"checked from here: if that run has ended, delete {self.path}"
            )
        self.path.unlink(missing_ok=True)
        self.taken_over = owner

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
