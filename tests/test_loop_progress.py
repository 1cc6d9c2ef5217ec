"""The loop counters of a checkpoint follow its training loader's place (uft.loop_progress), on plain dicts in the
shapes Lightning 2.6 writes."""

from __future__ import annotations

import copy

import pytest

from uft.loop_progress import align_progress, batches_per_epoch, finished


def counters(ready: int, started: int, processed: int, completed: int) -> dict:
    return {"ready": ready, "started": started, "processed": processed, "completed": completed}


def checkpoint(epochs: dict, batches: dict, total: dict, epoch: int, done: int, last: bool, step: int) -> dict:
    """A checkpoint's loop state as Lightning writes it, with the loader's place (42 samples in batches of 8)."""
    loader = {"epoch": epoch, "batches_done": done, "batch_size": 8, "num_samples": 42, "layout": None}
    fit = {
        "state_dict": {"combined_loader": [loader]},
        "epoch_progress": {"total": dict(epochs), "current": dict(epochs)},
        "epoch_loop.batch_progress": {"total": total, "current": batches, "is_last_batch": last},
        "epoch_loop.state_dict": {"_batches_that_stepped": step - 1},
    }
    return {"global_step": step, "loops": {"fit_loop": fit}}


def test_a_save_at_an_epochs_last_step_becomes_the_start_of_the_next_epoch():
    """Saved after the 5th and last step of epoch 0 (Lightning: epoch 0 not yet processed, the last batch not yet
    completed): the next epoch is 1 with nothing done, in both records, in the shape of a save at the epoch's end."""
    saved = checkpoint(counters(1, 1, 0, 0), counters(5, 5, 5, 4), counters(5, 5, 5, 4), 0, 5, True, 5)
    assert align_progress(saved, 5) is not None
    fit = saved["loops"]["fit_loop"]
    loader = fit["state_dict"]["combined_loader"][0]
    assert (loader["epoch"], loader["batches_done"]) == (1, 0)
    assert fit["epoch_progress"]["total"] == fit["epoch_progress"]["current"] == counters(1, 1, 1, 0)
    assert fit["epoch_loop.batch_progress"]["total"] == counters(5, 5, 5, 5)
    assert fit["epoch_loop.state_dict"]["_batches_that_stepped"] == 5
    assert finished(saved, 5, max_epochs=1, max_steps=-1) and not finished(saved, 5, max_epochs=2, max_steps=-1)


def test_counters_that_read_epoch_not_begun_inside_an_epoch_are_repaired():
    """The shape a resumed run wrote before this fix, one step into epoch 1: Lightning's epochs read 1 begun and
    1 done, so epoch 1 would start again; aligned, epoch 1 is begun, with 1 batch done."""
    saved = checkpoint(counters(1, 1, 1, 1), counters(1, 1, 1, 0), counters(6, 6, 6, 4), 1, 1, False, 6)
    message = align_progress(saved, 5)
    assert (
        message
        == "epochs ready/started/processed/completed 1/1/1/1, while the loader was at epoch 1 with 1 batches done"
    )
    fit = saved["loops"]["fit_loop"]
    assert fit["epoch_progress"]["total"] == fit["epoch_progress"]["current"] == counters(2, 2, 1, 1)
    assert fit["epoch_loop.batch_progress"]["current"] == counters(1, 1, 1, 0)
    assert fit["epoch_loop.batch_progress"]["total"] == counters(6, 6, 6, 5)
    assert not finished(saved, 5, max_epochs=2, max_steps=-1) and finished(saved, 5, max_epochs=2, max_steps=6)


def test_counters_that_agree_are_left_alone():
    saved = checkpoint(counters(2, 2, 1, 1), counters(3, 3, 3, 2), counters(8, 8, 8, 7), 1, 3, False, 8)
    before = copy.deepcopy(saved)
    assert align_progress(saved, 5) is None
    assert saved == before
    assert align_progress({"loops": {}}, 5) is None  # not a fit's checkpoint: nothing to align


@pytest.mark.parametrize("limit, expected", [(None, 5), (2, 2), (9, 5), (0.5, 2), (1.0, 5)])
def test_batches_per_epoch_follows_lightnings_limit(limit, expected):
    assert batches_per_epoch(5, limit) == expected


def test_an_epoch_cut_by_limit_train_batches_ends_where_the_limit_ends_it():
    """Two batches an epoch (limit_train_batches=2): the loader's place after 2 is the next epoch's start."""
    saved = checkpoint(counters(1, 1, 0, 0), counters(2, 2, 2, 1), counters(2, 2, 2, 1), 0, 2, True, 2)
    align_progress(saved, batches_per_epoch(5, 2))
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["epoch"] == 1
