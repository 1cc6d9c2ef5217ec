"""The datamodule: target and test sets from list files or a folder (class restriction, hold-out, protocols), and
its loaders."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from uft.data import lists
from uft.data.batch import Batch
from uft.data.contract import TargetData
from uft.data.datamodule import TargetDataModule
from uft.data.lists import Sample, read_list_file
from uft.data.splits import ClassSplit
from uft.data.synthetic import SHAPES, GeneratedShapes
from uft.errors import InputError

from .builders import make_dm, set_up_module


def labels_of(samples: list[Sample]) -> set[int]:
    return {s.label for s in samples}


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


def test_train_loader_batches(dm):
    """The train loader yields full batches (images [B,3,16,16], index) of distinct target indices; the 21 - 5 * 4
    = 1 index that does not fill a batch is left out of that epoch only."""
    loader = dm.train_dataloader()
    seen = []
    for batch in loader:
        assert isinstance(batch, Batch) and batch.labels is None  # training never sees a label
        assert batch.images.shape == (4, 3, 16, 16) and batch.images.dtype == torch.float32
        assert batch.all_readable and batch.readable.all()
        seen += batch.index.tolist()
    assert len(seen) == len(set(seen)) == 20 and set(seen) <= set(range(21))
    assert seen != sorted(seen)  # shuffled
    later = set()
    for epoch in range(1, 6):
        loader.sampler.set_epoch(epoch)
        later |= {i for batch in loader for i in batch.index.tolist()}
    assert later == set(range(21))  # over epochs, every sample is used


def test_eval_and_unlabeled_loaders(dm):
    """Eval loaders yield (image, label, index) with the true labels; the unlabeled target loader (image, index)."""
    loaders = dm.val_dataloader()
    assert len(loaders) == len(dm.eval_splits) == 2
    for loader, samples in zip(loaders, [dm.test_samples, dm.target_samples], strict=True):
        labels, indices = [], []
        for batch in loader:
            assert batch.images.shape == (len(batch), 3, 16, 16)
            labels += batch.labels.tolist()
            indices += batch.index.tolist()
        assert indices == list(range(len(samples)))
        assert labels == [s.label for s in samples]
    assert len(dm.test_dataloader()) == 2
    batch = next(iter(dm.confidence_dataloader()))
    assert batch.labels is None and batch.images.shape == (5, 3, 16, 16)
    assert batch.index.tolist() == [0, 1, 2, 3, 4]
    again = next(iter(dm.predict_dataloader())).images
    assert torch.equal(batch.images, again)  # evaluation transform: no randomness


def test_paper_protocol_tests_on_the_whole_domain(shapes_dir):
    """`paper`: the test split is every image of the domain (all classes), the target set its images of the target
    classes; `holdout`: disjoint, a hash-chosen share held out."""
    common = dict(
        root=str(shapes_dir),
        class_names=str(shapes_dir / "classes.txt"),
        split=ClassSplit(5, "0-6", "0-7"),
        train_list=str(shapes_dir / "target.txt"),
    )
    paper = set_up_module(**common, protocol="paper")
    everything = read_list_file(shapes_dir / "target.txt", shapes_dir, 8)
    assert paper.test_samples == everything and len(everything) == 48
    assert paper.target_samples == [s for s in everything if s.label <= 6]
    holdout = set_up_module(**common, protocol="holdout")
    assert not set(holdout.test_samples) & set(holdout.target_samples)
    assert 0 < len(holdout.test_samples) < 48


def test_the_constructor_reads_nothing_prepare_data_renders_and_setup_reads(tmp_path):
    """Lightning's phases: constructed with a recipe, nothing is rendered yet and the known class names are already
    there (the CLI gives them to the model); `prepare_data` renders, `setup` reads the lists."""
    root = tmp_path / "shapes"
    dm = TargetDataModule(
        root=str(root),
        split=ClassSplit(5, "0-6", "0-7"),
        recipe=GeneratedShapes(size=16, target_per_class=3),
        batch_size=8,
    )
    assert not root.exists()
    assert dm.known_class_names == list(SHAPES[:5])
    assert not isinstance(dm, TargetData)  # the samples are not read yet: no property raises but AttributeError
    with pytest.raises(AttributeError, match="setup"):
        len(dm.target_samples)
    with contextlib.redirect_stderr(io.StringIO()):  # the recipe says where it renders
        dm.prepare_data()
    assert (root / "target.txt").is_file()
    dm.setup("fit")
    assert isinstance(dm, TargetData)
    assert len(dm.target_samples) == 7 * 3 and len(dm.test_samples) == 8 * 12 and dm.image_dir == root
    pool = dm.pool
    dm.setup("test")
    assert dm.pool is pool  # read once


def test_a_data_module_without_labels_or_test_list_refuses_to_evaluate_at_setup(shapes):
    paths = [line.rsplit(" ", 1)[0] for line in (shapes / "target.txt").read_text().splitlines()]
    (shapes / "unlabeled.txt").write_text("\n".join(paths) + "\n")
    dm = make_dm(shapes, ClassSplit(5), train_list=str(shapes / "unlabeled.txt"), test_list=None, stage="fit")
    assert dm.eval_splits == []
    for stage in ("validate", "test"):
        with pytest.raises(InputError, match="nothing to evaluate: the target data has no labels"):
            dm.setup(stage)
