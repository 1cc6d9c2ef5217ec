"""The target pool as a pure function of the data arguments: the protocols on a list file, without a data module."""

from __future__ import annotations

import pytest

from uft.data.datasets import ImageFiles
from uft.data.lists import UNLABELED, read_list_file
from uft.data.splits import ClassSplit
from uft.data.synthetic import SHAPES
from uft.data.target_pool import TargetPool, resolve_target_pool
from uft.errors import InputError


def _pool(shapes, protocol: str, **kwargs) -> TargetPool:
    split, listed = ClassSplit(5, "0-6", "0-7"), str(shapes / "target.txt")
    return resolve_target_pool(list(SHAPES), split, root=str(shapes), train_list=listed, protocol=protocol, **kwargs)


def test_holdout_holds_a_share_out_of_the_list_and_restricts_the_rest(shapes):
    everything = read_list_file(shapes / "target.txt", shapes, 8)
    pool = _pool(shapes, "holdout", holdout_fraction=0.3)
    assert pool.test_samples and not set(pool.test_samples) & set(pool.target_samples)
    assert set(pool.test_samples) <= set(everything)  # every class: the test split is not restricted here
    assert set(pool.target_samples) == {s for s in everything if s.label <= 6} - set(pool.test_samples)
    assert pool.target_labeled
    assert pool.predict_samples == pool.target_samples  # the default prediction set
    assert isinstance(pool.images["target"], ImageFiles) and pool.images["test"] is pool.images["target"]
    assert pool.image_dir == shapes
    assert _pool(shapes, "holdout", holdout_fraction=0.3).splits() == pool.splits()  # a function of its arguments
    assert _pool(shapes, "holdout", holdout_seed=1).test_samples != pool.test_samples


def test_paper_tests_on_the_whole_list_and_trains_on_the_target_classes(shapes):
    everything = read_list_file(shapes / "target.txt", shapes, 8)
    pool = _pool(shapes, "paper")
    assert pool.test_samples == everything and len(everything) == 8 * 3
    assert pool.target_samples == [s for s in everything if s.label <= 6]
    assert pool.splits() == {"target": pool.target_samples, "test": pool.test_samples, "predict": pool.target_samples}


def test_a_test_list_and_a_predict_list(shapes):
    pool = _pool(shapes, "holdout", test_list=str(shapes / "test.txt"), predict_list=str(shapes / "test.txt"))
    assert len(pool.test_samples) == 8 * 2 and len(pool.target_samples) == 7 * 3
    assert [s.path for s in pool.predict_samples] == [s.path for s in pool.test_samples]
    assert all(s.label == UNLABELED for s in pool.predict_samples)  # labels are not read


def test_an_empty_target_set_is_an_error(shapes):
    lines = [line for line in (shapes / "target.txt").read_text().splitlines() if line.endswith(" 0")]
    (shapes / "only_circles.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="empty target set: no image of target classes '5-6'"):
        resolve_target_pool(
            list(SHAPES), ClassSplit(5, "5-6"), root=str(shapes), train_list=str(shapes / "only_circles.txt")
        )
