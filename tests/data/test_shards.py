"""Target images as litdata shards: `uft data shard` writes the same shards from the same input; a run from shards
reads the same images under the same sample indices as a run from files (same table, same metrics); its training
order depends only on the seed and epoch; a run killed with SIGKILL mid-epoch resumes reading each sample of the
epoch exactly once, with loader workers, on two processes and across an epoch boundary. Runs are subprocesses with
a timeout."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from uft.data.datamodule import TargetDataModule
from uft.data.lists import read_list_file
from uft.data.samplers import GlobalBatchSampler, ResumableLoader
from uft.data.shards import META_FILE, SAMPLES_FILE, ImageShards, parse_size, shard_timeout, write_shards
from uft.data.shards import main as shard_command
from uft.data.skipped import read_rgb
from uft.data.splits import ClassSplit
from uft.data.synthetic import make_shapes
from uft.errors import InputError

from ..args import ROOT, ddp_args, demo_args
from ..helpers import one_line
from ..processes import checkpoint_step, interrupt, limit_file_size, run_env, uft
from ..tolerances import PARAM_ATOL
from .builders import PRE, set_up_module

CHUNK_BYTES = 3000  # the shapes' 48 target images (about 250 bytes each) make 4 shards
SPLIT = ClassSplit(5, "0-6", "0-7")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"), {"target": 6, "test": 4}, size=32, seed=1)


@pytest.fixture(scope="module")
def shards(shapes, tmp_path_factory) -> Path:
    """The shapes' target list as shards, written by the command a user runs."""
    out = tmp_path_factory.mktemp("sharded") / "target"
    proc = uft(["data", "shard", str(shapes / "target.txt"), str(out), f"--chunk-bytes={CHUNK_BYTES}"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("uft: wrote 48 images as 4 shards (") and str(out) in proc.stdout
    return out


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --- writing -------------------------------------------------------------------------------------------------------


def test_shards_hold_the_files_under_their_index_and_are_the_same_every_time(shapes, shards, tmp_path):
    samples = read_list_file(shapes / "target.txt", shapes, 8)
    again = write_shards(samples, shapes, tmp_path / "again", chunk_bytes=CHUNK_BYTES)
    assert (again.count, again.chunks) == (48, 4)
    assert tree_digest(tmp_path / "again") == tree_digest(shards)  # byte-identical, index.json included
    other_seed = write_shards(samples, shapes, tmp_path / "seed1", chunk_bytes=CHUNK_BYTES, seed=1)
    assert tree_digest(other_seed.folder) != tree_digest(shards)  # the seed decides the stored order

    images = ImageShards(str(shards))
    assert images.samples == samples  # the sample list, by global index
    positions, chunks = [], []
    for index, sample in enumerate(samples):
        record = images.record(sample.path)
        assert (record["index"], record["label"], record["path"]) == (index, sample.label, sample.path)
        assert bytes(record["image"]) == (shapes / sample.path).read_bytes()  # stored as the file was
        assert np.array_equal(np.asarray(images.read(sample.path)), np.asarray(read_rgb(shapes / sample.path)))
        positions.append(images._position[sample.path])
        chunks.append(images.chunk_of(sample.path))
    assert sorted(positions) == list(range(48)) and positions != sorted(positions)  # stored shuffled
    assert sorted(set(chunks)) == [0, 1, 2, 3]
    first_shard = {samples[i].label for i in range(48) if chunks[i] == 0}
    assert len(first_shard) >= 4  # a shard mixes classes, though the list is sorted by class


def test_the_shard_command_refuses_what_it_cannot_do_and_writes_nothing(shapes, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    lines = tmp_path / "lines.txt"
    lines.write_text("images/circle/target_000.png 0\nimages/circle/gone.png 0\n")
    cases = {
        "not empty": ([str(shapes / "target.txt"), str(taken)], f"{taken} exists and is not empty"),
        "folder without names": ([str(shapes / "images"), str(tmp_path / "a")], "pass --class-names"),
        "no such source": ([str(tmp_path / "nope.txt"), str(tmp_path / "b")], "source not found"),
        "missing image": ([str(lines), str(tmp_path / "c"), f"--root={shapes}"], "image not found"),
        "no parent": ([str(shapes / "target.txt"), str(tmp_path / "x" / "y")], f"{tmp_path / 'x'} does not exist"),
    }
    for name, (args, message) in cases.items():  # the command's main, in this process (the fixture ran it as one)
        with pytest.raises(SystemExit) as exit_status:
            shard_command(args)
        stderr = capsys.readouterr().err
        assert exit_status.value.code == 2, (name, stderr)
        assert stderr.count("uft: error:") == 1 and message in stderr, (name, stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lines.txt", "taken"]  # nothing written, no leftovers
    assert (taken / "mine.txt").read_text() == "keep me"


def test_a_file_that_vanishes_while_sharding_leaves_no_folder(shapes, tmp_path):
    samples = read_list_file(shapes / "target.txt", shapes, 8)
    copy = tmp_path / "copy"
    shutil.copytree(shapes, copy)
    (copy / samples[30].path).unlink()
    with pytest.raises(InputError, match=f"cannot read {copy / samples[30].path}"):
        write_shards(samples, copy, tmp_path / "out", chunk_bytes=CHUNK_BYTES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


def test_an_image_folder_tree_shards_in_the_order_the_data_module_scans_it(tmp_path):
    data = make_shapes(tmp_path / "tree", {"target": 2}, size=16, seed=3)
    out = tmp_path / "tree-shards"
    shard_command([str(data / "images"), str(out), f"--class-names={data / 'classes.txt'}"])
    from_files = set_up_module(str(data / "images"), str(data / "classes.txt"), ClassSplit(5, "", ""))
    from_shards = set_up_module(None, str(data / "classes.txt"), ClassSplit(5, "", ""), target_shards=str(out))
    assert from_shards.target_samples == from_files.target_samples
    assert len(from_files.target_samples) + len(from_files.test_samples) == 16
    assert from_shards.test_samples == from_files.test_samples  # held out alike, read from the shards


# --- reading --------------------------------------------------------------------------------------------------------


def modules(shapes: Path, shards: Path, **kwargs) -> tuple[TargetDataModule, TargetDataModule]:
    """The same data module over the shapes' files and over their shards (no image root: nothing but the shards
    is read, unless ``test_list`` names files)."""
    common = dict(class_names=str(shapes / "classes.txt"), split=SPLIT, num_workers=0, batch_size=8, **kwargs)
    files = set_up_module(str(shapes), train_list=str(shapes / "target.txt"), **common)
    root = str(shapes) if "test_list" in kwargs else None
    streamed = set_up_module(root, target_shards=str(shards), **common)
    for dm in (files, streamed):
        dm.preprocess, dm.seed = PRE, 0
    return files, streamed


@pytest.mark.parametrize("protocol", ["holdout", "paper"])
def test_the_data_module_reads_the_same_samples_and_pixels_from_shards(shapes, shards, protocol):
    files, streamed = modules(shapes, shards, protocol=protocol)
    assert streamed.target_samples == files.target_samples and len(files.target_samples) > 20
    assert streamed.test_samples == files.test_samples and streamed.eval_splits == files.eval_splits
    assert streamed.target_labels().tolist() == files.target_labels().tolist()
    for a, b in zip(files.confidence_dataloader(), streamed.confidence_dataloader()):
        assert torch.equal(a.images, b.images) and torch.equal(a.index, b.index)
    for loader_a, loader_b in zip(files.test_dataloader(), streamed.test_dataloader()):
        for a, b in zip(loader_a, loader_b):
            assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("images", "labels", "index", "readable"))
    train_a, train_b = files.train_dataloader().dataset, streamed.train_dataloader().dataset
    for key in [(0, 0), (7, 0), (7, 1), (20, 3)]:  # augmentation seeded by (seed, epoch, index), wherever stored
        assert torch.equal(train_a[key]["image"], train_b[key]["image"])


def test_shards_with_a_test_list_of_files(shapes, shards):
    """Evaluation on files beside a target set in shards (the case a config keeps its test list)."""
    files, streamed = modules(shapes, shards, test_list=str(shapes / "test.txt"))
    assert streamed.test_samples == files.test_samples and len(files.test_samples) == 32
    with pytest.raises(InputError, match="data.test_list names image files, which need data.root"):
        set_up_module(None, str(shapes / "classes.txt"), SPLIT, test_list="test.txt", target_shards=str(shards))


def test_a_root_that_is_not_there_is_not_read_beside_shards(shapes, shards, tmp_path):
    """A config's data.root (a cluster path, say) does not matter while nothing names files."""
    dm = set_up_module(
        str(tmp_path / "elsewhere"), str(shapes / "classes.txt"), SPLIT, domain="Art", target_shards=str(shards)
    )
    assert len(dm.target_samples) > 20 and dm.image_dir is None


def test_an_unreadable_image_in_shards_is_skipped_like_a_file(shapes, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(shapes, copy)
    samples = read_list_file(copy / "target.txt", copy, 8)
    broken = copy / samples[3].path
    broken.write_bytes(broken.read_bytes()[:40])  # truncated
    write_shards(samples, copy, tmp_path / "shards", chunk_bytes=CHUNK_BYTES)
    with pytest.warns(UserWarning, match=f"skipping unreadable image {samples[3].path} in the shards at"):
        dm = set_up_module(
            None,
            str(copy / "classes.txt"),
            SPLIT,
            target_shards=str(tmp_path / "shards"),
            verify_images=True,
            max_skipped=0.1,
        )
    assert dm.skipped_indices("target") == [3]
    dm.preprocess = PRE
    dataset = dm.confidence_dataloader().dataset
    assert dataset[3]["index"] == 3 and not dataset[3]["readable"]  # a placeholder, as from files
    assert dataset[4]["index"] == 4 and dataset[4]["readable"]


def test_the_shard_order_keeps_shards_together_and_ignores_the_number_of_processes(shapes, shards):
    _, streamed = modules(shapes, shards)
    groups = ImageShards(str(shards)).order_groups([s.path for s in streamed.target_samples])
    n, batch = len(groups), 8
    orders = []
    for epoch in (0, 1):
        single = GlobalBatchSampler(n, batch, seed=0, groups=groups)
        single.set_epoch(epoch)
        order = [i for i, _ in single]
        assert len(order) == len(set(order)) == (n // batch) * batch
        for world in (2, 4):
            ranks = [
                GlobalBatchSampler(n, batch, seed=0, rank=r, world_size=world, groups=groups) for r in range(world)
            ]
            for sampler in ranks:
                sampler.set_epoch(epoch)
            slices = [[i for i, _ in sampler] for sampler in ranks]
            local = batch // world
            merged = [i for b in range(n // batch) for s in slices for i in s[b * local : (b + 1) * local]]
            assert merged == order  # each process's slices of the one global order
        full = single.global_order()
        runs = [g for k, g in enumerate(groups[i] for i in full) if k == 0 or g != groups[full[k - 1]]]
        assert len(runs) == len(set(runs)) == 4  # one shard after another
        orders.append(full)
    assert orders[0] != orders[1]
    again = GlobalBatchSampler(n, batch, seed=0, groups=groups)
    assert again.global_order() == orders[0]
    assert GlobalBatchSampler(n, batch, seed=1, groups=groups).global_order() != orders[0]


def test_a_mid_epoch_checkpoint_resumes_only_over_the_same_storage(shapes, shards):
    files, streamed = modules(shapes, shards)
    loader_files, loader_shards = files.train_dataloader(), streamed.train_dataloader()
    mid = {**loader_shards.state_dict(), "batches_done": 2}
    loader_shards.load_state_dict(mid)  # the same shards: continues
    assert loader_shards.sampler.skip_batches == 2
    with pytest.raises(InputError, match="over other storage of the target set"):
        loader_files.load_state_dict(mid)
    assert isinstance(loader_files, ResumableLoader)
    end_of_epoch = {**mid, "batches_done": len(files.target_samples) // 8}
    loader_files.load_state_dict(end_of_epoch)  # at an epoch boundary the order starts afresh: allowed
    assert (loader_files.sampler.epoch, loader_files.sampler.skip_batches) == (1, 0)


def test_bad_shards_are_one_clear_error(shapes, shards, tmp_path):
    names = str(shapes / "classes.txt")

    def load(location: Path, root: str | None = None, **kwargs):
        return set_up_module(root, names, SPLIT, target_shards=str(location), **kwargs)

    with pytest.raises(InputError, match="no shard folder at"):
        load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no index.json: not a shard folder written by `uft data shard`"):
        load(tmp_path / "empty")
    cut = tmp_path / "cut"
    shutil.copytree(shards, cut)
    lines = (cut / SAMPLES_FILE).read_text().splitlines()
    (cut / SAMPLES_FILE).write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(InputError, match="lists 47 images, the shards hold 48"):
        load(cut)
    for bad in ("4\t1\tseven\tx.png", "4\t--1\t0\tx.png"):
        (cut / SAMPLES_FILE).write_text("\n".join(lines[:5] + [bad] + lines[6:]) + "\n")
        with pytest.raises(InputError, match=f"{SAMPLES_FILE}:6: cannot parse"):
            load(cut)
    with pytest.raises(InputError, match=f"{SAMPLES_FILE}:32: label 5 is outside the 5 class names"):
        set_up_module(None, ["a", "b", "c", "d", "e"], ClassSplit(5, "", ""), target_shards=str(shards))
    with pytest.raises(InputError, match="data.train_list and data.target_shards both name the target images"):
        load(shards, root=str(shapes), train_list=str(shapes / "target.txt"))


# --- runs (subprocesses) --------------------------------------------------------------------------------------------


def fit_args(shapes: Path, root: Path, *extra: str) -> list[str]:
    return ["fit", *demo_args(shapes, root, *extra)]


@pytest.mark.slow
def test_a_fit_from_shards_equals_the_fit_from_files(shapes, shards, tmp_path):
    """One global batch per epoch (the whole target set), so that the order inside the batch is all that differs:
    the same per-sample table exactly, the same parameters and metrics on the same evaluation files."""
    runs = {}
    for name, source in (("files", []), ("shards", ["--data.train_list=null", f"--data.target_shards={shards}"])):
        root = tmp_path / name
        args = [
            *fit_args(shapes, root, "--data.batch_size=42", *source),
            "--trainer.callbacks+=tests.helpers.RecordTraining",
            f"--trainer.callbacks.path={root / 'record.pt'}",
        ]
        proc = uft(args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (metrics,) = root.rglob("metrics.json")
        runs[name] = torch.load(root / "record.pt", weights_only=True), json.loads(metrics.read_text())
    (files, files_metrics), (streamed, streamed_metrics) = runs["files"], runs["shards"]
    assert torch.equal(files["table"], streamed["table"])  # same weights under the same sample index
    assert files["indices"] != streamed["indices"]  # the batch's order differs ...
    assert [sorted(b) for b in files["indices"]] == [sorted(b) for b in streamed["indices"]]  # ... not its samples
    for name, value in files["params"].items():  # the batch summed in another order: float32 rounding only
        torch.testing.assert_close(streamed["params"][name], value, rtol=0, atol=PARAM_ATOL)
    for split in ("test", "target"):
        # ECE and NLL see the cosines at the logit scale (100): parameters a few ulps apart move them by ~100x more
        # (measured: 1.1e-5) than the rank and accuracy metrics.
        scaled = {"ece", "nll"}
        same = {k: v for k, v in streamed_metrics[split].items() if k not in scaled}
        assert same == pytest.approx({k: v for k, v in files_metrics[split].items() if k not in scaled}, abs=1e-6)
        for name in scaled:
            assert streamed_metrics[split][name] == pytest.approx(files_metrics[split][name], abs=1e-4), name


EPOCHS, BATCH, STEPS_PER_EPOCH = 3, 8, 42 // 8


def batches_by_epoch(log: Path, before_step: int | None = None) -> dict[int, list[int]]:
    """The sample indices read in each epoch, from a tests.helpers.LogBatches file (steps before ``before_step``)."""
    seen: dict[int, list[int]] = {}
    for line in log.read_text().splitlines():
        epoch, step, *indices = (int(x) for x in line.split())
        if before_step is None or step < before_step:
            seen.setdefault(epoch, []).extend(indices)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize(
    "devices, workers, every",
    [(1, 2, 1), (2, 0, 1), (1, 0, STEPS_PER_EPOCH)],
    ids=["two-workers", "two-processes", "at-an-epoch-boundary"],
)
def test_a_run_from_shards_killed_mid_epoch_reads_each_sample_of_the_epoch_once(
    shapes, shards, tmp_path, devices, workers, every
):
    """SIGKILL once rank 0 has finished 7 steps (mid second epoch); with checkpoints every step the run resumes
    in the middle of that epoch, with one every epoch's worth of steps from the end of the first epoch (the
    checkpoint written at the boundary). `--ckpt_path last` continues; counted by global sample index over both
    parts, every epoch reads each sample of its order exactly once, and that order is the sampler's for (seed,
    epoch)."""
    kill_after = 7

    log = tmp_path / "batches.txt"
    args = [
        *fit_args(shapes, tmp_path, *ddp_args(devices), f"--trainer.max_epochs={EPOCHS}"),
        f"--data.batch_size={BATCH}",
        "--data.train_list=null",
        f"--data.target_shards={shards}",
        f"--data.num_workers={workers}",
        f"--checkpoint.every_n_train_steps={every}",
        "--trainer.callbacks+=tests.helpers.LogBatches",
        f"--trainer.callbacks.path={log}",
    ]
    interrupt(args, tmp_path, kill_after, signal.SIGKILL)
    resumed_from = checkpoint_step(tmp_path)  # the step file may run a step ahead of the last checkpoint
    expected = [STEPS_PER_EPOCH] if every == STEPS_PER_EPOCH else [kill_after - 1, kill_after, kill_after + 1]
    assert resumed_from in expected
    before = batches_by_epoch(log, before_step=resumed_from)
    log.rename(tmp_path / "killed.txt")
    proc = uft([*args, "--ckpt_path=last"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = batches_by_epoch(log)
    assert min(after) == resumed_from // STEPS_PER_EPOCH  # continued in the epoch it was killed in
    _, streamed = modules(shapes, shards, test_list=str(shapes / "test.txt"))  # the run's target set: 42 images
    groups = ImageShards(str(shards)).order_groups([s.path for s in streamed.target_samples])
    for epoch in range(EPOCHS):
        seen = before.get(epoch, []) + after.get(epoch, [])
        assert len(seen) == len(set(seen)) == STEPS_PER_EPOCH * BATCH, f"epoch {epoch}"
        sampler = GlobalBatchSampler(len(groups), BATCH, seed=0, groups=groups)
        sampler.set_epoch(epoch)
        assert seen == [i for i, _ in sampler], f"epoch {epoch}"


def test_the_option_is_documented_in_help():
    proc = uft(["fit", "--help"])
    assert proc.returncode == 0, proc.stderr
    assert "--data.target_shards" in proc.stdout and "uft data shard" in proc.stdout


# --- class names and the sample list's digest -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def named_shards(shapes, tmp_path_factory) -> Path:
    """The shapes' target list as shards written with their class names."""
    out = tmp_path_factory.mktemp("named") / "target"
    names = f"--class-names={shapes / 'classes.txt'}"
    shard_command([str(shapes / "target.txt"), str(out), f"--chunk-bytes={CHUNK_BYTES}", names])
    return out


def test_shards_store_their_class_names_and_the_digest_of_their_sample_list(shapes, shards, named_shards):
    names = (shapes / "classes.txt").read_text().split()
    named, unnamed = ImageShards(str(named_shards)), ImageShards(str(shards))
    assert (named.class_names, unnamed.class_names) == (names, None)
    assert named.has_metadata and unnamed.has_metadata
    assert named.digest == unnamed.digest == json.loads((shards / META_FILE).read_text())["samples_sha256"]
    files, with_names = tree_digest(shards), tree_digest(named_shards)
    assert files.pop(META_FILE) != with_names.pop(META_FILE) and files == with_names  # the same chunks and list
    dm = set_up_module(None, str(shapes / "classes.txt"), SPLIT, target_shards=str(named_shards))  # same names
    assert len(dm.target_samples) > 20


def test_shards_are_refused_under_other_class_names(shapes, named_shards, tmp_path):
    names = (shapes / "classes.txt").read_text().split()
    swapped = [*names[:3], names[4], names[3], *names[5:]]
    cases = {
        "another order": (swapped, f"class 3: shards '{names[3]}', configured '{names[4]}' (8 and 8 names)"),
        "one fewer": (names[:7], f"class 7: shards '{names[7]}', configured none (8 and 7 names)"),
        "one more": ([*names, "kite"], "class 8: shards none, configured 'kite' (8 and 9 names)"),
    }
    for configured, message in cases.values():
        with pytest.raises(InputError, match=re.escape(message)):
            set_up_module(None, configured, ClassSplit(5, "", ""), target_shards=str(named_shards))
    # The run a user starts: one line, before any training.
    (tmp_path / "swapped.txt").write_text("\n".join(swapped) + "\n")
    extra = [
        "--data.train_list=null",
        f"--data.target_shards={named_shards}",
        f"--data.class_names={tmp_path}/swapped.txt",
    ]
    proc = uft(fit_args(shapes, tmp_path / "run", *extra), timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count("uft: error:") == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"uft: error: data.target_shards: the shards at {named_shards} were written for other class names than "
        f"data.class_names: class 3: shards '{names[3]}', configured '{names[4]}' (8 and 8 names); configure the "
        "shards' class names, or write the shards again with `uft data shard --class-names`"
    )


def edit_label(shards: Path, copy: Path, index: int) -> tuple[str, int, int]:
    """Copy ``shards`` to ``copy`` with the label of sample ``index`` changed in the sample list; returns its path and
    its old and new label."""
    shutil.copytree(shards, copy)
    lines = (copy / SAMPLES_FILE).read_text().splitlines()
    number, position, label, path = lines[1 + index].split("\t")
    lines[1 + index] = "\t".join([number, position, str((int(label) + 1) % 8), path])
    (copy / SAMPLES_FILE).write_text("\n".join(lines) + "\n")
    return path, int(label), (int(label) + 1) % 8


def test_a_sample_list_edited_after_the_shards_were_written_is_refused(shapes, shards, tmp_path):
    names = str(shapes / "classes.txt")
    path, old, new = edit_label(shards, tmp_path / "edited", 5)
    with pytest.raises(InputError, match="uft_samples.tsv was edited after the shards were written"):
        set_up_module(None, names, SPLIT, target_shards=str(tmp_path / "edited"))
    # Without uft_shards.json (shards of an older uft) the edit is found where the record is read.
    (tmp_path / "edited" / META_FILE).unlink()
    stored_label = rf"sample 5 \({path}\) is stored with label {old}, {SAMPLES_FILE} gives label {new}"
    with pytest.raises(InputError, match=stored_label):
        ImageShards(str(tmp_path / "edited")).record(path)
    with pytest.raises(InputError, match=stored_label):  # verification reads every record
        set_up_module(None, names, SPLIT, target_shards=str(tmp_path / "edited"), verify_images=True)
    # Read by a loader worker, the sample comes back marked unreadable; reporting it names the edit.
    dm = set_up_module(None, names, SPLIT, target_shards=str(tmp_path / "edited"), protocol="paper", num_workers=1)
    dm.preprocess, dm.seed = PRE, 0
    unreadable = [i for batch in dm.confidence_dataloader() for i in batch.unreadable_indices()]
    assert unreadable == [5]
    with pytest.raises(InputError, match=stored_label):
        dm.report_skipped("target", [5])


def test_shards_written_before_the_metadata_file_still_load(shapes, shards, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(shards, old)
    (old / META_FILE).unlink()
    images = ImageShards(str(old))
    assert (images.class_names, images.has_metadata) == (None, False)
    assert images.digest == ImageShards(str(shards)).digest
    with pytest.warns(UserWarning, match="hold no uft_shards.json .*: their class names and sample list cannot be"):
        from_old = set_up_module(None, str(shapes / "classes.txt"), SPLIT, target_shards=str(old))
    with pytest.warns(UserWarning, match="were written without --class-names: their labels are taken to follow"):
        current = set_up_module(None, str(shapes / "classes.txt"), SPLIT, target_shards=str(shards))
    assert from_old.target_samples == current.target_samples
    assert images.unreadable(s.path for s in images.samples) == {}  # every record reads, labels agree


# --- damaged shards -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "deleted"])
def test_a_damaged_chunk_is_one_error_naming_it(shapes, shards, tmp_path, damage):
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    chunk = copy / "chunk-0-1.bin"
    data = chunk.read_bytes()
    if damage == "corrupt":  # the same size, the stored paths no longer text
        assert data.count(b"images/") == 13  # the chunk's records
        chunk.write_bytes(data.replace(b"images/", b"\xff" * 7))
    elif damage == "truncated":
        chunk.write_bytes(data[: len(data) // 2])
    else:
        chunk.unlink()
    expected = {
        "corrupt": r"cannot be read \(record \d+: UnicodeDecodeError: .*\): the chunk is damaged",
        "truncated": f"holds {len(data) // 2} bytes, index.json says {len(data)}: the chunk is truncated or damaged",
        "deleted": "is missing: the shard folder is incomplete",
    }[damage]
    message = f"chunk chunk-0-1.bin of the shards at {re.escape(str(copy))} {expected}"
    images = ImageShards(str(copy))
    in_chunk = {images.chunk_of(s.path): s.path for s in reversed(images.samples)}
    assert bytes(images.record(in_chunk[0])["image"])  # the other chunks read
    start = time.monotonic()
    with pytest.raises(InputError, match=message) as refused:
        images.record(in_chunk[1])
    assert time.monotonic() - start < 1.5  # no waiting for a download (litdata's wait for a local chunk is 2 s)
    assert "\n" not in str(refused.value)
    with pytest.raises(InputError, match=message):
        set_up_module(None, str(shapes / "classes.txt"), SPLIT, target_shards=str(copy), verify_images=True)


REMOTE = """
import sys, time
from uft.data.shards import ImageShards
from uft.errors import InputError

start = time.monotonic()
try:
    ImageShards(sys.argv[1])
except InputError as err:
    print(f"{time.monotonic() - start:.1f}\\t{err}")
"""


@pytest.mark.parametrize("endpoint", ["refuses", "never answers"])
def test_an_unreachable_object_store_is_one_error_within_the_time_limit(endpoint):
    pytest.importorskip("boto3", reason="boto3 (litdata's S3 client) is not installed")
    with socket.socket() as server:  # bound, so that no one else takes the port; listening but never answering
        server.bind(("127.0.0.1", 0))
        if endpoint == "never answers":
            server.listen()
        env = run_env(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.getsockname()[1]}",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
            UFT_SHARD_TIMEOUT="2",
        )
        cmd = [sys.executable, "-c", REMOTE, "s3://uft-test/shards"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    elapsed, message = proc.stdout.rstrip("\n").split("\t")
    assert float(elapsed) < 10, elapsed  # 2 s and the client's start; without a limit over 2 minutes
    assert message == (
        "data.target_shards: no answer for s3://uft-test/shards/index.json within 2 s: is the endpoint reachable "
        "(AWS_ENDPOINT_URL or the storage's own setting)? Wait longer with UFT_SHARD_TIMEOUT=SECONDS"
    )


def test_the_time_limit_is_a_positive_number_of_seconds(monkeypatch):
    monkeypatch.setenv("UFT_SHARD_TIMEOUT", "2.5")
    assert shard_timeout() == 2.5
    monkeypatch.delenv("UFT_SHARD_TIMEOUT")
    assert shard_timeout() == 30
    for bad in ("soon", "0", "-1", "inf"):
        monkeypatch.setenv("UFT_SHARD_TIMEOUT", bad)
        with pytest.raises(InputError, match=f"UFT_SHARD_TIMEOUT={bad!r}: expected a positive number of seconds"):
            shard_timeout()


# --- the command's faults: arguments, the output side, signals -------------------------------------------------------


def refused(args: list[str], capsys) -> str:
    return one_line(shard_command, args, capsys)


def test_chunk_sizes_take_units_and_bad_arguments_are_one_line(shapes, shards, tmp_path, capsys):
    sizes = ["3000", "500kB", "1MB", "64MiB", "1.5 KiB", "2GB"]
    assert [parse_size(s) for s in sizes] == [3000, 500_000, 10**6, 64 << 20, 1536, 2 * 10**9]
    shard_command([str(shapes / "target.txt"), str(tmp_path / "kb"), "--chunk-bytes", "3kB"])
    assert "48 images as 4 shards" in capsys.readouterr().out
    assert tree_digest(tmp_path / "kb") == tree_digest(shards)  # 3kB is 3000 bytes
    target = str(shapes / "target.txt")
    cases = {
        "a unit unknown": (
            [target, str(tmp_path / "a"), "--chunk-bytes=1XB"],
            "--chunk-bytes: '1XB' is not a size: give bytes as an integer or with a unit (500kB, 1MB, 64MiB, 1GB)",
        ),
        "zero": (
            [target, str(tmp_path / "a"), "--chunk-bytes=0"],
            "--chunk-bytes: '0' is not a positive number of bytes",
        ),
        "an unknown option": ([target, str(tmp_path / "a"), "--bogus"], "unrecognized arguments: --bogus"),
        "no out": ([target], "the following arguments are required: out"),
        "a seed that is no number": ([target, str(tmp_path / "a"), "--seed=x"], "--seed: invalid int value: 'x'"),
    }
    for case, (args, message) in cases.items():
        assert refused(args, capsys) == message, case
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kb"]


def test_output_faults_are_one_line_and_leave_nothing_behind(shapes, tmp_path, capsys, monkeypatch):
    target = str(shapes / "target.txt")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    assert refused([target, str(a_file)], capsys) == f"{a_file} is a file: shards go into a new folder"
    message = f"{a_file} is a file, not a folder: write the shards elsewhere"
    assert refused([target, str(a_file / "out")], capsys) == message

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / ".out.partial-x"))

    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "mkdtemp", read_only)
        message = f"cannot create a folder in {tmp_path}: Read-only file system; nothing was written"
        assert refused([target, str(tmp_path / "out")], capsys) == message

    from litdata.streaming.writer import BinaryWriter

    def disk_full(self, raw_data: bytes, filename: str, compress: bool | None = None) -> None:
        Path(self._cache_dir, filename).write_bytes(raw_data[:100])  # what fitted
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    with monkeypatch.context() as patch:
        patch.setattr(BinaryWriter, "write_chunk_to_file", disk_full)
        message = f"cannot write the shards to {tmp_path / 'out'}: No space left on device (chunk-0-0.bin); nothing"
        assert (
            refused([target, str(tmp_path / "out"), f"--chunk-bytes={CHUNK_BYTES}"], capsys) == message + " was written"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"] and a_file.read_text() == "keep me"


def test_a_full_disk_while_sharding_is_one_line_and_leaves_nothing(shapes, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "uft", "data", "shard", str(shapes / "target.txt"), str(out), "--chunk-bytes=3000"]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size(2000)
    )
    assert proc.returncode == 2 and proc.stderr == (
        f"uft: error: cannot write the shards to {out}: File too large; nothing was written\n"
    )
    assert list(tmp_path.iterdir()) == []


SLOW_SHARD = """
import sys, time
from pathlib import Path

read_bytes = Path.read_bytes
reads = 0


def slow_read_bytes(self):  # a slow source (a network file system, say): the signal lands mid-write
    # Past the first chunk's images (about 12) the source stalls, so the command is still writing when the signal
    # comes however late a loaded machine lets the test send it (a steady 0.1 s let it finish first in CI).
    global reads
    reads += 1
    time.sleep(0.1 if reads <= 20 else 60)
    return read_bytes(self)


Path.read_bytes = slow_read_bytes
from uft.data.shards import main

main(sys.argv[1:])
"""


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_an_interrupted_shard_command_leaves_nothing_behind(shapes, tmp_path, capsys, stop):
    """SIGTERM and Ctrl-C remove the partial folder on the way out; after SIGKILL, which cannot be caught, the next
    run removes it (its writer is gone), and leaves alone those of a writer still running or on another host."""
    out, host = tmp_path / "target", socket.gethostname()
    args = [str(shapes / "target.txt"), str(out), f"--chunk-bytes={CHUNK_BYTES}"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SHARD, *args],
        cwd=ROOT,
        env=run_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # A terminal's Ctrl-C reaches a command that handles SIGINT. A test runner started in the background by a
        # shell without job control inherits SIGINT ignored (POSIX), and so would the command: nothing to test.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline, partial = time.monotonic() + 120, None
        while partial is None or not any(partial.glob("chunk-*.bin")):  # a chunk written, more to come
            assert proc.poll() is None and time.monotonic() < deadline, proc.returncode
            partial = next(tmp_path.glob(".target.partial-*"), None)
            time.sleep(0.02)
        assert partial.name.startswith(f".target.partial-{proc.pid}@{host}-")
        proc.send_signal(stop)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)
    if stop != signal.SIGKILL:
        name = "Ctrl-C" if stop == signal.SIGINT else "SIGTERM"
        assert proc.returncode == 128 + stop
        assert stderr.decode() == f"uft: error: stopped by {name}; nothing was written to {out}\n"
        assert list(tmp_path.iterdir()) == []
        return
    assert proc.returncode == -signal.SIGKILL and partial.is_dir()  # nothing could clean up
    running = tmp_path / f".target.partial-{os.getpid()}@{host}-abc"
    elsewhere = tmp_path / f".target.partial-{proc.pid}@another-host-abc"
    for folder in (running, elsewhere):
        folder.mkdir()
    shard_command(args)
    captured = capsys.readouterr()
    assert captured.err == f"uft: removed {partial}, left by `uft data shard` process {proc.pid}, which is gone\n"
    assert captured.out.startswith("uft: wrote 48 images")
    assert sorted(tmp_path.iterdir()) == sorted([out, running, elsewhere])
