"""Target images as litdata shards: `uft data shard` writes the same shards from the same input; a run from shards
reads the same images under the same sample indices as a run from files (same table, same metrics); its training
order depends only on the seed and epoch; a run killed with SIGKILL mid-epoch resumes reading each sample of the
epoch exactly once, with loader workers, on two processes and across an epoch boundary. Runs are subprocesses with
a timeout."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from uft.data.datamodule import TargetDataModule
from uft.data.lists import read_list_file
from uft.data.samplers import GlobalBatchSampler, ResumableLoader
from uft.data.shards import SAMPLES_FILE, ImageShards, write_shards
from uft.data.shards import main as shard_command
from uft.data.skipped import read_rgb
from uft.data.splits import ClassSplit
from uft.data.synthetic import make_shapes
from uft.errors import InputError

from ..conftest import demo_args
from ..test_distributed import PARAM_ATOL, uft
from .test_data import PRE

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
    from_files = TargetDataModule(str(data / "images"), str(data / "classes.txt"), ClassSplit(5, "", ""))
    from_shards = TargetDataModule(None, str(data / "classes.txt"), ClassSplit(5, "", ""), target_shards=str(out))
    assert from_shards.target_samples == from_files.target_samples
    assert len(from_files.target_samples) + len(from_files.test_samples) == 16
    assert from_shards.test_samples == from_files.test_samples  # held out alike, read from the shards


# --- reading --------------------------------------------------------------------------------------------------------


def modules(shapes: Path, shards: Path, **kwargs) -> tuple[TargetDataModule, TargetDataModule]:
    """The same data module over the shapes' files and over their shards (no image root: nothing but the shards
    is read, unless ``test_list`` names files)."""
    common = dict(class_names=str(shapes / "classes.txt"), split=SPLIT, num_workers=0, batch_size=8, **kwargs)
    files = TargetDataModule(str(shapes), train_list=str(shapes / "target.txt"), **common)
    root = str(shapes) if "test_list" in kwargs else None
    streamed = TargetDataModule(root, target_shards=str(shards), **common)
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
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for loader_a, loader_b in zip(files.test_dataloader(), streamed.test_dataloader()):
        for a, b in zip(loader_a, loader_b):
            assert all(torch.equal(x, y) for x, y in zip(a, b))
    train_a, train_b = files.train_dataloader().dataset, streamed.train_dataloader().dataset
    for key in [(0, 0), (7, 0), (7, 1), (20, 3)]:  # augmentation seeded by (seed, epoch, index), wherever stored
        assert torch.equal(train_a[key][0], train_b[key][0])


def test_shards_with_a_test_list_of_files(shapes, shards):
    """Evaluation on files beside a target set in shards (the case a config keeps its test list)."""
    files, streamed = modules(shapes, shards, test_list=str(shapes / "test.txt"))
    assert streamed.test_samples == files.test_samples and len(files.test_samples) == 32
    with pytest.raises(InputError, match="data.test_list names image files, which need data.root"):
        TargetDataModule(None, str(shapes / "classes.txt"), SPLIT, test_list="test.txt", target_shards=str(shards))


def test_a_root_that_is_not_there_is_not_read_beside_shards(shapes, shards, tmp_path):
    """A config's data.root (a cluster path, say) does not matter while nothing names files."""
    dm = TargetDataModule(
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
        dm = TargetDataModule(
            None,
            str(copy / "classes.txt"),
            SPLIT,
            target_shards=str(tmp_path / "shards"),
            verify_images=True,
            max_skipped=0.1,
        )
    assert dm.skipped_indices("target") == [3]
    dm.preprocess = PRE
    assert dm.confidence_dataloader().dataset[3][1] == -1 - 3  # marked, as from files
    assert dm.confidence_dataloader().dataset[4][1] == 4


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
        return TargetDataModule(root, names, SPLIT, target_shards=str(location), **kwargs)

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
        TargetDataModule(None, ["a", "b", "c", "d", "e"], ClassSplit(5, "", ""), target_shards=str(shards))
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
        assert streamed_metrics[split] == pytest.approx(files_metrics[split], abs=1e-6)


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
    from ..test_distributed import ddp_args
    from ..test_resume import checkpoint_step, interrupt

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
