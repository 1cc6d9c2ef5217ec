"""One truth about where a run is: the training loader's place, with Lightning's loop counters derived from it.

A checkpoint holds two records of the run's position: Lightning's loop progress (epochs ready, started, processed,
completed; batches of the epoch) and the training loader's own place (``epoch``, ``batches_done``, from
:class:`~uft.data.samplers.ResumableLoader`). The loader's place decides which batches come next; Lightning's
counters decide whether an epoch is restarted, continued or skipped. Lightning 2.6 keeps its "restarted in the middle
of an epoch" state for the rest of a resumed run, so the epochs after it start without counting themselves as
started: a second interruption then saves counters that read "epoch not begun" while the loader is in the middle of
it, and the next resume trains that epoch's first batches again (measured: 16 steps instead of 15). A checkpoint
saved at an epoch's last batch takes another path with the same result.

:func:`align_progress` writes the counters that the loader's place implies into a checkpoint (every save, and every
load, so that checkpoints of earlier versions are repaired): a place at the end of an epoch becomes the start of the
next epoch in both records, and a place inside an epoch becomes Lightning's own shape of a save after a training
step. These are the two shapes Lightning resumes exactly (tests/test_resume.py exercises them). Only the entries
named here are touched; the rest of the loop state is Lightning's.
"""

from __future__ import annotations

from typing import Any

LOOPS_KEY = "loops"  # Lightning's key of the loop state in a checkpoint
EPOCH_END_KEY = "uft_epoch_end"  # saved after the epoch's end (its evaluation included), not after a step


def finished(checkpoint: dict, epoch_batches: int, max_epochs: int | None, max_steps: int | None) -> bool:
    """Whether the run saved in ``checkpoint`` has no training step left under these limits (as the trainer reads
    them: ``max_epochs`` ``None`` or -1 and ``max_steps`` -1 are no limit)."""
    if max_steps is not None and max_steps >= 0 and checkpoint.get("global_step", 0) >= max_steps:
        return True
    state = loader_state(checkpoint)
    if state is None or max_epochs is None or max_epochs < 0:
        return False
    epoch, done = place(state, epoch_batches)
    return epoch >= max_epochs and done == 0


def batches_per_epoch(full: int, limit: int | float | None) -> int:
    """The training batches an epoch runs: the loader's ``full`` count cut by ``trainer.limit_train_batches``
    (a whole number of batches, or a fraction of them), as Lightning cuts it."""
    if limit is None:
        return full
    if isinstance(limit, int):
        return min(full, limit)
    return int(full * limit)


def saved_epoch_batches(state: dict, limit: int | float | None) -> int:
    """The training batches an epoch of a saved run has: its loader's (``state``, :func:`loader_state`: full global
    batches of its target set), cut by ``limit`` (``trainer.limit_train_batches``)."""
    return batches_per_epoch(state["num_samples"] // state["batch_size"], limit)


def loader_state(checkpoint: dict) -> dict | None:
    """The training loader's place saved in ``checkpoint`` (``None`` when it holds none: not a uft fit)."""
    fit = checkpoint.get(LOOPS_KEY, {}).get("fit_loop", {})
    states = fit.get("state_dict", {}).get("combined_loader")
    if not states or not isinstance(states[0], dict) or "batches_done" not in states[0]:
        return None
    return states[0]


def place(state: dict, epoch_batches: int) -> tuple[int, int]:
    """``(epoch, batches done in it)`` of the next training batch: a place at the end of an epoch is the start of
    the next one."""
    epoch, done = state["epoch"], state["batches_done"]
    return (epoch + 1, 0) if done >= epoch_batches else (epoch, done)


def expected_counters(epoch: int, done: int) -> tuple[dict[str, int], dict[str, int] | None]:
    """Lightning's epoch counters for the place ``(epoch, done)``, and its batch counters of that epoch (``None``
    at an epoch's start, where Lightning starts them afresh).

    At the start of epoch ``E`` (``done == 0``), the shape of a save at the end of epoch ``E - 1``: ``E`` epochs
    ready, started and processed, ``E - 1`` completed (Lightning completes it on resume and begins epoch ``E``).
    Inside epoch ``E``, the shape of a save after training step ``done``: ``E + 1`` ready and started, ``E``
    processed and completed; ``done`` batches ready, started and processed, ``done - 1`` completed (completed after
    the save)."""
    if done == 0:
        return {"ready": epoch, "started": epoch, "processed": epoch, "completed": max(epoch - 1, 0)}, None
    epochs = {"ready": epoch + 1, "started": epoch + 1, "processed": epoch, "completed": epoch}
    return epochs, {"ready": done, "started": done, "processed": done, "completed": done - 1}


def align_progress(checkpoint: dict, epoch_batches: int) -> str | None:
    """Make the loop counters of ``checkpoint`` those its loader's place implies (see the module docstring), and
    move a loader place at the end of an epoch to the start of the next. ``epoch_batches``: the training batches
    an epoch runs (:func:`batches_per_epoch`). Returns what disagreed, for a message; ``None`` when the counters
    already agreed (or the checkpoint holds no loader place)."""
    state = loader_state(checkpoint)
    if state is None:
        return None
    fit: dict[str, Any] = checkpoint[LOOPS_KEY]["fit_loop"]
    epoch, done = place(state, epoch_batches)
    state["epoch"], state["batches_done"] = epoch, done
    epochs, batches = expected_counters(epoch, done)
    progress = fit["epoch_progress"]
    found = dict(progress["total"])
    disagreed = any(progress[part].get(key) != value for part in ("total", "current") for key, value in epochs.items())
    for part in ("total", "current"):
        progress[part].update(epochs)
    batch_progress = fit["epoch_loop.batch_progress"]
    # All batches fetched so far were trained; the last one is counted as completed only after the save, inside an
    # epoch (Lightning completes it on resume).
    total = batch_progress["total"]
    totals = {
        "started": total["ready"],
        "processed": total["ready"],
        "completed": total["ready"] - (batches is not None),
    }
    disagreed = disagreed or total != {**total, **totals}
    total.update(totals)
    if batches is None:
        # The step that ended the epoch was saved before Lightning counted it as stepped (it adds it on resume only
        # when it continues the epoch); logged steps continue from the optimiser's count.
        fit["epoch_loop.state_dict"]["_batches_that_stepped"] = checkpoint.get("global_step", 0)
    else:
        disagreed = disagreed or batch_progress["current"] != {**batch_progress["current"], **batches}
        batch_progress["current"].update(batches)
        batch_progress["is_last_batch"] = False
    if not disagreed:
        return None
    return (
        f"epochs ready/started/processed/completed {found.get('ready')}/{found.get('started')}/"
        f"{found.get('processed')}/{found.get('completed')}, while the loader was at epoch {epoch} with {done} "
        "batches done"
    )
