"""Tests of the data layer: class splits, list files and folders, the held-out split, datasets, the datamodule, and
bad input as the CLI reports it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from uft.clip import ImagePreprocess
from uft.data import lists
from uft.data.datamodule import TargetDataModule
from uft.data.datasets import ImageListDataset
from uft.data.lists import (
    Sample,
    holdout_mask,
    read_class_names,
    read_list_file,
    scan_image_folder,
)
from uft.data.recipes import DataLayout
from uft.data.samplers import GlobalBatchSampler
from uft.data.splits import ClassSplit, parse_class_ids
from uft.data.synthetic import SHAPES, make_shapes
from uft.errors import InputError

from ..conftest import ROOT, demo_args

PRE = ImagePreprocess(size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
OFFICE_HOME = [f"class_{i:02d}" for i in range(65)]


def write_png(path: Path, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    """A tiny 8x8 PNG at ``path`` (whatever its suffix), parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, format="PNG")
    return path


@pytest.fixture
def shapes(tmp_path) -> Path:
    """Generated shapes: 8 classes, 3 target and 2 test images per class, 16x16."""
    return make_shapes(tmp_path / "shapes", {"target": 3, "test": 2}, size=16)


def make_dm(data: Path, split: ClassSplit, **kwargs) -> TargetDataModule:
    """A datamodule over ``data`` (list files by default), no worker processes."""
    layout = DataLayout.of(data)
    args = {
        "root": str(data),
        "class_names": str(layout.class_names),
        "split": split,
        "train_list": str(layout.target_list),
        "test_list": str(layout.test_list),
        "num_workers": 0,
        "batch_size": 4,
        "eval_batch_size": 5,
    }
    args.update(kwargs)
    return TargetDataModule(**args)


def labels_of(samples: list[Sample]) -> set[int]:
    return {s.label for s in samples}


# --- parse_class_ids / ClassSplit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0-34,50-59", list(range(35)) + list(range(50, 60))),
        ("3", [3]),
        ("5, 1", [1, 5]),
        ("0-3,2-5", [0, 1, 2, 3, 4, 5]),
        ("", list(range(65))),
        ("  ", list(range(65))),
    ],
)
def test_parse_class_ids(spec, expected):
    """Inclusive ranges and single ids, sorted and deduplicated; an empty spec means every class."""
    assert parse_class_ids(spec, 65) == expected


@pytest.mark.parametrize(("spec", "part"), [("5-2", "5-2"), ("a-b", "a-b"), ("0-4,x", "x"), ("0-3-5", "0-3-5")])
def test_parse_class_ids_rejects_bad_spec(spec, part):
    """A reversed or non-numeric range is an InputError naming the bad part and the whole spec."""
    with pytest.raises(InputError) as err:
        parse_class_ids(spec, 65)
    assert repr(part) in str(err.value)
    assert repr(spec) in str(err.value)


@pytest.mark.parametrize(
    ("num_known", "target", "test", "expected_target"),
    [
        (50, "0-49", "0-64", list(range(50))),  # closed
        (50, "0-34", "0-64", list(range(35))),  # partial
        (50, "0-59", "0-64", list(range(60))),  # open
        (50, "0-34,50-59", "0-64", list(range(35)) + list(range(50, 60))),  # open-partial
    ],
)
def test_class_split_office_home(num_known, target, test, expected_target):
    """The Office-Home settings resolve to the right target ids and all 65 test ids."""
    target_ids, test_ids = ClassSplit(num_known, target, test).resolve(65, "classes.txt")
    assert target_ids == expected_target
    assert test_ids == list(range(65))


@pytest.mark.parametrize("num_known", [66, 0])
def test_class_split_num_known_out_of_range(num_known):
    """num_known outside 1..number of names is an InputError naming the value and the source of the names."""
    with pytest.raises(InputError) as err:
        ClassSplit(num_known).resolve(65, "oh/classes.txt")
    assert f"num_known={num_known}" in str(err.value)
    assert "oh/classes.txt" in str(err.value)


@pytest.mark.parametrize(("field", "spec", "bad_id"), [("target_classes", "0-65", 65), ("test_classes", "3,70", 70)])
def test_class_split_id_beyond_names(field, spec, bad_id):
    """A class id past the last name is an InputError naming the field, the id and the source."""
    with pytest.raises(InputError) as err:
        ClassSplit(50, **{field: spec}).resolve(65, "oh/classes.txt")
    message = str(err.value)
    assert f"split.{field}" in message and f"class id {bad_id}" in message and "oh/classes.txt" in message


# --- read_class_names ---------------------------------------------------------------------------------------------


def test_read_class_names_list_and_file(tmp_path):
    """A list is taken as is (source 'class_names'); a file gives one stripped name per non-blank line."""
    assert read_class_names(["b", "a"]) == (["b", "a"], "class_names")
    file = tmp_path / "classes.txt"
    file.write_text("Alarm_Clock\n  Real thing  \n\nzebra\n")
    assert read_class_names(str(file)) == (["Alarm_Clock", "Real thing", "zebra"], str(file))


def test_read_class_names_errors(tmp_path):
    """Missing, empty and duplicated name files are InputErrors naming the file (and the repeated names)."""
    missing = tmp_path / "nope.txt"
    with pytest.raises(InputError, match="nope.txt"):
        read_class_names(str(missing))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(InputError) as err:
        read_class_names(str(empty))
    assert str(empty) in str(err.value)
    dup = tmp_path / "dup.txt"
    dup.write_text("cat\ndog\ncat\n")
    with pytest.raises(InputError) as err:
        read_class_names(str(dup))
    assert str(dup) in str(err.value) and "cat" in str(err.value) and "dog" not in str(err.value)
    with pytest.raises(InputError, match="class_names"):
        read_class_names([])
    with pytest.raises(InputError, match="x"):
        read_class_names(["x", "y", "x"])


# --- read_list_file -----------------------------------------------------------------------------------------------


@pytest.fixture
def real_world(tmp_path) -> Path:
    """An image dir with three images under a folder whose name holds a space."""
    images = tmp_path / "OfficeHome"
    for name in ("x", "y", "z"):
        write_png(images / "Real World" / "Alarm_Clock" / f"{name}.jpg")
    return images


def test_read_list_file_labeled_unlabeled_and_spaces(real_world, tmp_path):
    """Labeled and path-only lines, paths with spaces; comment and blank lines are skipped."""
    listing = tmp_path / "list.txt"
    listing.write_text(
        "# a comment\n"
        "Real World/Alarm_Clock/x.jpg 0\n"
        "\n"
        "   \n"
        "  # indented comment\n"
        "Real World/Alarm_Clock/y.jpg  2\n"
        "Real World/Alarm_Clock/z.jpg\n"
    )
    assert read_list_file(listing, real_world, num_classes=3) == [
        Sample("Real World/Alarm_Clock/x.jpg", 0),
        Sample("Real World/Alarm_Clock/y.jpg", 2),
        Sample("Real World/Alarm_Clock/z.jpg", lists.UNLABELED),
    ]


def test_read_list_file_relative_to_image_dir(real_world, tmp_path, monkeypatch):
    """A relative list-file path that does not exist from the working directory is looked up in the image dir."""
    (real_world / "inner.txt").write_text("Real World/Alarm_Clock/x.jpg 1\n")
    monkeypatch.chdir(tmp_path)
    assert read_list_file("inner.txt", real_world, num_classes=3) == [Sample("Real World/Alarm_Clock/x.jpg", 1)]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("Real World/Alarm_Clock/x.jpg zero", "cannot parse"),
        ("just some words", "cannot parse"),
        ("7", "cannot parse"),
        ("Real World/Alarm_Clock/x.jpg 3", "label 3 is outside the 3 class names"),
        ("Real World/Alarm_Clock/x.jpg -1", "label -1 is outside"),
        ("Real World/Alarm_Clock/missing.jpg 0", "image not found"),
        ("Real World/Alarm_Clock/missing.jpg", "image not found"),
    ],
)
def test_read_list_file_bad_line(real_world, tmp_path, line, fragment):
    """A bad line is an InputError whose message starts with '<file>:<line number>' and says what is wrong."""
    listing = tmp_path / "list.txt"
    listing.write_text(f"# header\nReal World/Alarm_Clock/x.jpg 0\n{line}\nReal World/Alarm_Clock/y.jpg 1\n")
    with pytest.raises(InputError) as err:
        read_list_file(listing, real_world, num_classes=3)
    assert str(err.value).startswith(f"{listing}:3: ")
    assert fragment in str(err.value)


def test_read_list_file_double_minus_label(real_world, tmp_path):
    """A label such as '--1' is an InputError naming the line, not a traceback."""
    listing = tmp_path / "list.txt"
    listing.write_text("Real World/Alarm_Clock/x.jpg --1\n")
    with pytest.raises(InputError, match=":1:"):
        read_list_file(listing, real_world, num_classes=3)


def test_read_list_file_empty_or_missing(real_world, tmp_path):
    """A list with only comments and blanks, or no list at all, is an InputError naming the file."""
    listing = tmp_path / "empty.txt"
    listing.write_text("# nothing here\n\n")
    with pytest.raises(InputError) as err:
        read_list_file(listing, real_world, num_classes=3)
    assert str(listing) in str(err.value) and "no images" in str(err.value)
    with pytest.raises(InputError, match="list file not found: .*absent.txt"):
        read_list_file(tmp_path / "absent.txt", real_world, num_classes=3)


# --- resolve_domain -----------------------------------------------------------------------------------------------

SPELLINGS = ["Real World", "Real_World", "RealWorld"]


@pytest.mark.parametrize("on_disk", SPELLINGS)
@pytest.mark.parametrize("asked", SPELLINGS)
def test_resolve_domain_spellings(tmp_path, on_disk, asked):
    """Each spelling of 'Real World' resolves to whichever spelling exists on disk."""
    (tmp_path / on_disk).mkdir()
    (tmp_path / "Art").mkdir()
    assert lists.resolve_domain(tmp_path, asked) == tmp_path / on_disk


def test_resolve_domain_no_domain_and_errors(tmp_path):
    """No domain gives the root; a missing root or unknown domain is an InputError naming it (and the folders)."""
    for name in ("Art", "Real World"):
        (tmp_path / name).mkdir()
    assert lists.resolve_domain(tmp_path, None) == tmp_path
    with pytest.raises(InputError) as err:
        lists.resolve_domain(tmp_path / "missing_root", "Art")
    assert str(tmp_path / "missing_root") in str(err.value)
    with pytest.raises(InputError) as err:
        lists.resolve_domain(tmp_path, "Clipart")
    message = str(err.value)
    assert "'Clipart'" in message and str(tmp_path) in message and "Art, Real World" in message


# --- scan_image_folder --------------------------------------------------------------------------------------------


def test_scan_image_folder_ids_by_name(tmp_path):
    """Class ids come from the class-name list by name, not from the order of the folders; non-images are skipped."""
    write_png(tmp_path / "a_cls" / "1.png")
    write_png(tmp_path / "a_cls" / "2.png")
    write_png(tmp_path / "b_cls" / "1.png")
    (tmp_path / "b_cls" / "notes.txt").write_text("not an image")
    samples = scan_image_folder(tmp_path, ["b_cls", "a_cls"])
    assert sorted(samples, key=lambda s: s.path) == [
        Sample("a_cls/1.png", 1),
        Sample("a_cls/2.png", 1),
        Sample("b_cls/1.png", 0),
    ]


def test_scan_image_folder_unknown_folder(tmp_path):
    """A folder that is not a class name is an InputError naming the folder."""
    write_png(tmp_path / "a_cls" / "1.png")
    write_png(tmp_path / "stray" / "1.png")
    with pytest.raises(InputError) as err:
        scan_image_folder(tmp_path, ["a_cls", "b_cls"])
    assert str(tmp_path / "stray") in str(err.value)


# --- holdout_mask -------------------------------------------------------------------------------------------------


def fake_samples(n: int, start: int = 0) -> list[Sample]:
    return [Sample(f"cls_{i % 7}/img_{i:05d}.jpg", i % 7) for i in range(start, start + n)]


def test_holdout_mask_deterministic_and_fraction():
    """The same samples and seed give the same mask; about `fraction` of 1000 samples is held out."""
    samples = fake_samples(1000)
    mask = holdout_mask(samples, 0.3, seed=0)
    assert mask == holdout_mask(list(samples), 0.3, seed=0)
    assert 0.25 <= sum(mask) / len(mask) <= 0.35
    assert not any(holdout_mask(samples, 0.0, seed=0))
    assert all(holdout_mask(samples, 1.0, seed=0))


def test_holdout_mask_stable_under_additions_and_order():
    """Adding samples or reordering them does not change the decision for any existing sample."""
    samples = fake_samples(1000)
    mask = holdout_mask(samples, 0.3, seed=0)
    grown = fake_samples(300, start=5000)[:150] + samples + fake_samples(300, start=5000)[150:]
    grown_mask = holdout_mask(grown, 0.3, seed=0)
    assert grown_mask[150:1150] == mask
    assert holdout_mask(samples[::-1], 0.3, seed=0) == mask[::-1]


def test_holdout_mask_seed_matters():
    """Different seeds hold out different samples."""
    samples = fake_samples(1000)
    assert holdout_mask(samples, 0.3, seed=0) != holdout_mask(samples, 0.3, seed=1)


# --- TargetDataModule ---------------------------------------------------------------------------------------------


def test_datamodule_list_files_restrict_classes(shapes):
    """Target set holds only split.target_classes, test set only test_classes; known names are the first K."""
    dm = make_dm(shapes, ClassSplit(num_known=5, target_classes="0-6", test_classes="0-5"))
    assert labels_of(dm.target_samples) == set(range(7))
    assert len(dm.target_samples) == 7 * 3
    assert labels_of(dm.test_samples) == set(range(6))
    assert len(dm.test_samples) == 6 * 2
    assert all(s.path.split("/")[1] == SHAPES[s.label] for s in dm.target_samples + dm.test_samples)
    assert dm.known_class_names == list(SHAPES[:5])
    assert dm.eval_splits == ["test", "target"]


def test_datamodule_unlabeled_train_list(shapes):
    """A path-only train list keeps every target image whatever target_classes says, and has no 'target' split."""
    paths = [line.rsplit(" ", 1)[0] for line in (shapes / "target.txt").read_text().splitlines()]
    (shapes / "unlabeled.txt").write_text("\n".join(paths) + "\n")
    dm = make_dm(shapes, ClassSplit(5, "0-2"), train_list=str(shapes / "unlabeled.txt"))
    assert [s.path for s in dm.target_samples] == paths
    assert labels_of(dm.target_samples) == {lists.UNLABELED}
    assert dm.eval_splits == ["test"]


def test_datamodule_folder_holdout(shapes):
    """Folder mode without a test list: held-out test and target sets are disjoint and together cover the pool."""
    dm = make_dm(shapes, ClassSplit(5), domain="images", train_list=None, test_list=None, holdout_fraction=0.3)
    assert dm.image_dir == shapes / "images"
    pool = {str(p.relative_to(shapes / "images")) for p in (shapes / "images").rglob("*.png")}
    target, test = {s.path for s in dm.target_samples}, {s.path for s in dm.test_samples}
    assert target and test
    assert not target & test
    assert target | test == pool
    assert all(s.path.split("/")[0] == SHAPES[s.label] for s in dm.target_samples + dm.test_samples)
    assert dm.eval_splits == ["test", "target"]


def test_datamodule_folder_holdout_then_restricts(shapes):
    """In folder mode the class restriction applies after the hold-out: no held-out image leaks into the target."""
    split = ClassSplit(5, target_classes="0-4", test_classes="0-7")
    dm = make_dm(shapes, split, domain="images", train_list=None, test_list=None)
    everything = make_dm(shapes, ClassSplit(5), domain="images", train_list=None, test_list=None)
    assert dm.test_samples == everything.test_samples
    assert dm.target_samples == [s for s in everything.target_samples if s.label < 5]


def test_datamodule_empty_target_set(shapes):
    """Target classes with no image in the train list raise an InputError mentioning 'empty target set'."""
    lines = [line for line in (shapes / "target.txt").read_text().splitlines() if line.endswith(" 0")]
    (shapes / "only_circles.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="empty target set"):
        make_dm(shapes, ClassSplit(5, "5-6"), train_list=str(shapes / "only_circles.txt"))


def test_datamodule_unlabeled_test_list(shapes):
    """A test list with path-only lines is an InputError, not silently shorter."""
    lines = (shapes / "test.txt").read_text().splitlines()
    lines[0] = lines[0].rsplit(" ", 1)[0]
    (shapes / "test_partial.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="label on every line"):
        make_dm(shapes, ClassSplit(5), test_list=str(shapes / "test_partial.txt"))


# --- datasets and loaders -----------------------------------------------------------------------------------------


@pytest.fixture
def dm(shapes) -> TargetDataModule:
    """A datamodule with preprocessing and seed set by hand, as setup would from the trainer."""
    module = make_dm(shapes, ClassSplit(5, "0-6", "0-7"))
    module.preprocess = PRE
    module.seed = 0
    return module


def test_train_loader_batches(dm):
    """The train loader yields full batches (images [B,3,16,16], index) of distinct target indices; the 21 - 5 * 4
    = 1 index that does not fill a batch is left out of that epoch only."""
    loader = dm.train_dataloader()
    seen = []
    for batch in loader:
        assert len(batch) == 2
        images, index = batch
        assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
        seen += index.tolist()
    assert len(seen) == len(set(seen)) == 20 and set(seen) <= set(range(21))
    assert seen != sorted(seen)  # shuffled
    later = set()
    for epoch in range(1, 6):
        loader.sampler.set_epoch(epoch)
        later |= {i for _, index in loader for i in index.tolist()}
    assert later == set(range(21))  # over epochs, every sample is used


def test_epoch_sampler_order():
    """The order depends only on (seed, epoch): equal for equal pairs, different across epochs and seeds."""

    def order(seed, epoch):
        sampler = GlobalBatchSampler(50, 10, seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    first = order(0, 0)
    assert sorted(i for i, _ in first) == list(range(50))
    assert all(e == 0 for _, e in first)
    torch.manual_seed(123)  # the global random state plays no part
    assert order(0, 0) == first
    assert [i for i, _ in order(0, 1)] != [i for i, _ in first]
    assert all(e == 1 for _, e in order(0, 1))
    assert [i for i, _ in order(1, 0)] != [i for i, _ in first]
    assert [i for i, _ in GlobalBatchSampler(50, 10, 0, shuffle=False)] == list(range(50))


def test_train_items_seeded(dm):
    """A train item for (i, epoch) is bit-identical when fetched twice, whatever the global seed; epochs differ."""
    dataset = dm.train_dataloader().dataset
    assert isinstance(dataset, ImageListDataset)
    n = len(dataset)
    torch.manual_seed(1)
    first = [dataset[(i, 0)] for i in range(n)]
    torch.manual_seed(2)
    again = [dataset[(i, 0)] for i in range(n)]
    for (a, ia), (b, ib) in zip(first, again, strict=True):
        assert ia == ib
        assert torch.equal(a, b)
    other_epoch = [dataset[(i, 1)][0] for i in range(n)]
    assert sum(not torch.equal(a, b) for (a, _), b in zip(first, other_epoch, strict=True)) > n // 2


def test_train_item_leaves_global_rng_alone(dm):
    """Fetching a train item does not change the global torch random state."""
    dataset = dm.train_dataloader().dataset
    torch.manual_seed(7)
    state = torch.get_rng_state()
    dataset[(3, 2)]
    assert torch.equal(torch.get_rng_state(), state)


def test_eval_and_unlabeled_loaders(dm):
    """Eval loaders yield (image, label, index) with the true labels; the unlabeled target loader (image, index)."""
    loaders = dm.val_dataloader()
    assert len(loaders) == len(dm.eval_splits) == 2
    for loader, samples in zip(loaders, [dm.test_samples, dm.target_samples], strict=True):
        labels, indices = [], []
        for images, label, index in loader:
            assert images.shape == (len(index), 3, 16, 16)
            labels += label.tolist()
            indices += index.tolist()
        assert indices == list(range(len(samples)))
        assert labels == [s.label for s in samples]
    assert len(dm.test_dataloader()) == 2
    batch = next(iter(dm.confidence_dataloader()))
    assert len(batch) == 2
    images, index = batch
    assert images.shape == (5, 3, 16, 16)
    assert index.tolist() == [0, 1, 2, 3, 4]
    again = next(iter(dm.predict_dataloader()))[0]
    assert torch.equal(images, again)  # evaluation transform: no randomness


# --- bad input through the CLI ------------------------------------------------------------------------------------


def _write_list(tmp_path: Path, name: str, lineno: int, line: str, data: Path) -> Path:
    """A copy of the shapes target list with line ``lineno`` replaced by ``line``."""
    lines = (data / "target.txt").read_text().splitlines()
    lines[lineno - 1] = line
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _bad_line(name: str, lineno: int, line: str, message: str):
    """The case ``name``: a list file whose line ``lineno`` is ``line``; the error names the file and the line
    and says ``message``."""

    def case(tmp_path, data):
        listing = _write_list(tmp_path, f"{name}.txt", lineno, line, data)
        return [f"--data.train_list={listing}"], [f"{listing}:{lineno}:", message]

    case.__name__ = f"_case_{name}"
    return case


_case_unparsable_line = _bad_line("unparsable_line", 3, "images/circle/target_002.png zero", "cannot parse")
_case_label_out_of_range = _bad_line("label_out_of_range", 2, "images/circle/target_001.png 8", "label 8")
_OUTSIDE = "lies outside the image folder"
_case_path_outside_root = _bad_line("path_outside_root", 2, "../../../etc/passwd 0", f"../../../etc/passwd {_OUTSIDE}")
_case_absolute_path = _bad_line("absolute_path", 4, "/etc/passwd 0", f"/etc/passwd {_OUTSIDE}")
_case_two_labels = _bad_line("two_labels", 3, "images/circle/target_002.png 1 2", "expected one label after the path")


def _case_missing_root(tmp_path, data):
    root = tmp_path / "no_such_root"
    return [f"--data.root={root}"], ["image root not found", str(root)]


def _case_num_known_too_large(tmp_path, data):
    return ["--data.split.num_known=9"], ["split.num_known=9", "classes.txt", "8 classes"]


def _case_empty_target_set(tmp_path, data):
    lines = [line for line in (data / "target.txt").read_text().splitlines() if line.endswith(" 0")]
    listing = tmp_path / "circles.txt"
    listing.write_text("\n".join(lines) + "\n")
    return [f"--data.train_list={listing}", "--data.split.target_classes=5-6"], ["empty target set", "5-6"]


def _case_missing_checkpoint(tmp_path, data):
    return [f"--ckpt_path={tmp_path / 'nope.ckpt'}"], [f"checkpoint not found: {tmp_path / 'nope.ckpt'}"]


def _case_garbage_checkpoint(tmp_path, data):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(bytes(range(256)) * 64)
    return [f"--ckpt_path={garbage}"], [f"checkpoint {garbage} cannot be read"]


def _case_text_as_weights(tmp_path, data):
    text = tmp_path / "weights.pt"
    text.write_text("these are not weights\n")
    return [f"--model.pretrained={text}"], [f"pretrained weights file {text} cannot be read as uft-tiny-vit weights"]


def _case_class_path_typo(tmp_path, data):
    return ["--model.objective=uft.objectives.UEOO"], [
        "model.objective: uft.objectives.UEOO does not exist; did you mean uft.objectives.UEO",
    ]


def _case_negative_learning_rate(tmp_path, data):
    return ["--model.prompt_lr=-0.1"], ["model.prompt_lr must be a positive learning rate, got -0.1"]


def _case_batch_size_zero(tmp_path, data):
    return ["--data.batch_size=0"], ["data.batch_size must be a positive number of images, got 0"]


def _case_nothing_to_train(tmp_path, data):
    return ["--trainer.max_epochs=0"], ["nothing to train", "max_epochs"]


def _case_diverged(tmp_path, data):
    return ["--model.prompt_lr=1e30", "--model.visual_lr=1e30"], ["training diverged at step 1: the loss is nan"]


def _case_negative_workers(tmp_path, data):
    return ["--data.num_workers=-1"], ["data.num_workers must be 0 or more, got -1"]


def _case_max_skipped_out_of_range(tmp_path, data):
    return ["--data.max_skipped=2"], ["data.max_skipped must be a share in [0, 1], got 2"]


def _spoiled_copy(tmp_path: Path, data: Path) -> list[str]:
    """A copy of the data with one unreadable target image (1 of 42: more than the default 1%)."""
    copy = tmp_path / "spoiled"
    shutil.copytree(data, copy)
    rel = (copy / "target.txt").read_text().splitlines()[4].split()[0]
    (copy / rel).write_bytes((copy / rel).read_bytes()[:40])  # truncated
    return [f"--data.root={copy}", f"--data.train_list={copy / 'target.txt'}", f"--data.test_list={copy / 'test.txt'}"]


def _case_unreadable_images(tmp_path, data):
    return _spoiled_copy(tmp_path, data), ["1 of the 42 target images cannot be read (2.4%", "target_004.png"]


def _case_unreadable_images_verified(tmp_path, data):
    return [*_spoiled_copy(tmp_path, data), "--data.verify_images=true"], ["1 of the 42 target images cannot be read"]


def _case_recipe_root_typo(tmp_path, data):
    root = tmp_path / "wolrd" / "photo-fog"
    return [f"--data.root={root}", "--data.recipe=uft.world.benchmark.WorldBenchmark"], [
        f"data.root {root}: its parent folder {root.parent} does not exist"
    ]


def _case_missing_weights(tmp_path, data):
    return [f"--model.pretrained={tmp_path / 'w.pt'}"], [f"pretrained checkpoint file not found: {tmp_path / 'w.pt'}"]


def _trained_checkpoint(tmp_path: Path, data: Path) -> Path:
    """A checkpoint of the tiny config after one epoch (5 known classes of 8)."""
    from uft.cli import cli_main

    cli_main(["fit", *demo_args(data, tmp_path / "trained", "--trainer.max_epochs=1")])
    return tmp_path / "trained" / "checkpoints" / "last.ckpt"


def _changed_target_list(tmp_path: Path, data: Path, change) -> list[str]:
    """A checkpoint trained on the shapes target list, and a copy of that list of the same size that ``change``
    altered: resuming the checkpoint on it must be refused."""
    ckpt = _trained_checkpoint(tmp_path, data)
    lines = (data / "target.txt").read_text().splitlines()
    listing = tmp_path / "changed.txt"
    listing.write_text("\n".join(change(lines)) + "\n")
    return [f"--data.train_list={listing}", f"--ckpt_path={ckpt}"]


_OTHER_LIST = "the target list differs from the one the checkpoint was trained on, first at sample"


def _case_target_list_reordered(tmp_path, data):
    args = _changed_target_list(tmp_path, data, lambda lines: [lines[1], lines[0], *lines[2:]])
    return args, [f"{_OTHER_LIST} 0: now images/circle/target_001.png (label 0)"]


def _case_target_image_replaced(tmp_path, data):
    test_image = "images/circle/test_000.png 0"  # another image of the same class
    args = _changed_target_list(tmp_path, data, lambda lines: [*lines[:3], test_image, *lines[4:]])
    return args, [f"{_OTHER_LIST} 3: now images/circle/test_000.png (label 0)", "or start afresh with --fresh"]


def _case_target_label_edited(tmp_path, data):
    args = _changed_target_list(tmp_path, data, lambda lines: [*lines[:2], lines[2].replace(" 0", " 1"), *lines[3:]])
    return args, [f"{_OTHER_LIST} 2: now images/circle/target_002.png (label 1)"]


def _case_fsdp_strategy(tmp_path, data):
    return ["--trainer.strategy=fsdp"], ["trainer.strategy=fsdp is not supported", "ddp or ddp_spawn"]


def _case_deepspeed_strategy(tmp_path, data):
    return ["--trainer.strategy=deepspeed_stage_2"], ["trainer.strategy=deepspeed_stage_2 is not supported"]


def _case_root_dir_is_a_file(tmp_path, data):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    return [f"--trainer.default_root_dir={afile}"], [f"trainer.default_root_dir {afile} is a file, not a folder"]


def _case_predict_into_a_folder_under_a_file(tmp_path, data):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    return "predict", [f"--trainer.default_root_dir={afile / 'run'}"], ["a file is in the way"]


def _case_checkpoint_of_another_model(tmp_path, data):
    ckpt = _trained_checkpoint(tmp_path, data)
    return (
        "test",
        [f"--ckpt_path={ckpt}", "--model.model_name=uft-world-vit"],
        [
            "the checkpoint does not fit this configuration (model_name: checkpoint 'uft-tiny-vit', configured "
            "'uft-world-vit')"
        ],
    )


def _case_checkpoint_of_other_classes(tmp_path, data):
    ckpt = _trained_checkpoint(tmp_path, data)
    return (
        "test",
        [f"--ckpt_path={ckpt}", "--data.split.num_known=4"],
        ["class_names: checkpoint ['circle', 'square', 'triangle', 'cross', 'ring'], configured ['circle', 'square',"],
    )


def _case_truncated_checkpoint(tmp_path, data):
    ckpt = _trained_checkpoint(tmp_path, data)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    return "test", [f"--ckpt_path={cut}"], [f"checkpoint {cut} cannot be read (truncated, or not a checkpoint file)"]


def _case_zero_byte_checkpoint(tmp_path, data):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    return "test", [f"--ckpt_path={empty}"], [f"checkpoint {empty} cannot be read"]


def _case_foreign_checkpoint(tmp_path, data):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    return "test", [f"--ckpt_path={foreign}"], [f"{foreign} is not a uft checkpoint"]


def _case_nothing_to_validate(tmp_path, data):
    return "validate", ["--trainer.limit_val_batches=0"], ["nothing to evaluate: trainer.limit_val_batches is 0"]


def _case_unlabeled_data_without_test_list(tmp_path, data):
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("".join(line.split()[0] + "\n" for line in (data / "target.txt").read_text().splitlines()))
    return (
        "test",
        [f"--data.train_list={unlabeled}", "--data.test_list=null"],
        ["nothing to evaluate: the target data has no labels and there is no data.test_list"],
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        _case_missing_root,
        _case_unparsable_line,
        _case_label_out_of_range,
        _case_num_known_too_large,
        _case_empty_target_set,
        _case_path_outside_root,
        _case_absolute_path,
        _case_two_labels,
        _case_missing_checkpoint,
        _case_garbage_checkpoint,
        _case_text_as_weights,
        _case_class_path_typo,
        _case_negative_learning_rate,
        _case_batch_size_zero,
        _case_nothing_to_train,
        _case_diverged,
        _case_negative_workers,
        _case_max_skipped_out_of_range,
        _case_unreadable_images,
        _case_unreadable_images_verified,
        _case_recipe_root_typo,
        _case_missing_weights,
        _case_checkpoint_of_another_model,
        _case_target_list_reordered,
        _case_fsdp_strategy,
        _case_root_dir_is_a_file,
        _case_predict_into_a_folder_under_a_file,
        _case_deepspeed_strategy,
        _case_target_image_replaced,
        _case_target_label_edited,
        _case_checkpoint_of_other_classes,
        _case_truncated_checkpoint,
        _case_zero_byte_checkpoint,
        _case_foreign_checkpoint,
        _case_nothing_to_validate,
        _case_unlabeled_data_without_test_list,
    ],
    ids=lambda f: f.__name__[len("_case_") :],
)
def test_cli_bad_input(tmp_path, case, shapes_dir):
    """`uft fit` (or the case's command) on bad input exits 2 with one 'uft: error:' line naming the problem, no
    traceback, no checkpoint (a diverged run: none with non-finite values), and every file it was given unchanged."""
    *command, extra, fragments = case(tmp_path, shapes_dir)
    given = [*shapes_dir.rglob("*"), *(p for p in tmp_path.rglob("*") if "run" not in p.relative_to(tmp_path).parts)]
    before = {p: p.read_bytes() for p in given if p.is_file()}
    cmd = [sys.executable, "-m", "uft", *(command or ["fit"]), *demo_args(shapes_dir, tmp_path / "run")]
    proc = subprocess.run(cmd + extra, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("uft: error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    assert "Traceback" not in proc.stderr + proc.stdout and "usage:" not in proc.stderr
    for ckpt in (tmp_path / "run").rglob("*.ckpt"):  # the run writes none, or (diverged) only a finite one
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        assert case is _case_diverged and all(torch.isfinite(v).all() for v in state.values())
    assert {p: p.read_bytes() for p in given if p.is_file()} == before


def test_read_list_file_accepts_tab_separated_labels(real_world, tmp_path):
    """Tabs separate the label as well as spaces do."""
    listing = tmp_path / "tabs.txt"
    listing.write_text("Real World/Alarm_Clock/x.jpg\t1\n")
    assert read_list_file(listing, real_world, num_classes=3)[0].label == 1


def test_list_and_class_files_with_a_byte_order_mark(shapes_dir, tmp_path):
    """Files saved by editors that write a UTF-8 byte-order mark read as if it were not there."""
    listing = tmp_path / "bom.txt"
    listing.write_text("\ufeff" + (shapes_dir / "target.txt").read_text(), encoding="utf-8")
    names = tmp_path / "names.txt"
    names.write_text("\ufeff" + (shapes_dir / "classes.txt").read_text(), encoding="utf-8")
    assert read_list_file(listing, shapes_dir, 8) == read_list_file(shapes_dir / "target.txt", shapes_dir, 8)
    assert read_class_names(str(names))[0] == read_class_names(str(shapes_dir / "classes.txt"))[0]


def test_class_names_differing_only_by_case_warn():
    with pytest.warns(UserWarning, match="HOUSE, house differ only by case"):
        assert read_class_names(["house", "HOUSE", "tree"])[0] == ["house", "HOUSE", "tree"]


def test_paper_protocol_tests_on_the_whole_domain(shapes_dir):
    """`paper`: the test split is every image of the domain (all classes), the target set its images of the target
    classes; `holdout`: disjoint, a hash-chosen share held out."""
    common = dict(
        root=str(shapes_dir),
        class_names=str(shapes_dir / "classes.txt"),
        split=ClassSplit(5, "0-6", "0-7"),
        train_list=str(shapes_dir / "target.txt"),
    )
    paper = TargetDataModule(**common, protocol="paper")
    everything = read_list_file(shapes_dir / "target.txt", shapes_dir, 8)
    assert paper.test_samples == everything and len(everything) == 48
    assert paper.target_samples == [s for s in everything if s.label <= 6]
    holdout = TargetDataModule(**common, protocol="holdout")
    assert not set(holdout.test_samples) & set(holdout.target_samples)
    assert 0 < len(holdout.test_samples) < 48
