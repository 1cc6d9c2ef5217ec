"""The preflight (:mod:`uft.preflight`): accuracy near chance or predictions piled onto one class are a warning
that names the likely causes, or with ``--data.strict_preflight true`` an error; on the demo's world CLIP, a
class-name file in another order than the list labels (tim-learn/UEO#1) warns and the right one does not."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from uft.cli import cli_main, main
from uft.data.splits import ClassSplit
from uft.errors import InputError
from uft.evaluation import SplitEvaluation
from uft.preflight import (
    MIN_IMAGES,
    SPREAD_IMAGES,
    check_evaluation,
    check_zero_shot,
    near_chance,
    piled,
    settle,
    spread,
)
from uft.scores import MSP, HistogramSplit
from uft.world import CATEGORIES

from .args import ROOT, demo_args
from .data.builders import PRE, make_dm
from .helpers import one_line

NAMES = ["circle", "square", "triangle", "cross"]


def _predictions(correct: int, wrong: int, num_known: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions and labels of ``correct`` + ``wrong`` known-class images (labels cycling over the classes)."""
    labels = torch.arange(correct + wrong) % num_known
    preds = labels.clone()
    preds[correct:] = (labels[correct:] + 1) % num_known
    return preds, labels


# ---------------------------------------------------------------------------------------------------- the findings


@pytest.mark.parametrize(
    ("num_known", "correct", "warns"),
    [(4, 10, False), (4, 9, True), (5, 8, False), (5, 7, True), (10, 4, False), (10, 3, True)],
)
def test_accuracy_below_twice_chance_is_a_finding_and_at_twice_chance_is_not(num_known, correct, warns):
    """20 known-class images: twice chance is 2/K exactly (K=4: 10 right is 50%, no finding; 9 is one)."""
    preds, labels = _predictions(correct, 20 - correct, num_known)
    finding = near_chance(preds, labels, num_known, "zero-shot accuracy on the target set")
    assert (finding is not None) == warns
    if warns:
        chance, limit = 100 / num_known, 200 / num_known
        assert finding.startswith(f"zero-shot accuracy on the target set is {100 * correct / 20:.1f}% ({correct} of 20")
        assert f"{num_known} known classes (1/{num_known} = {chance:.1f}%; below 2 times that, {limit:.1f}%" in finding
        for cause in ("order of the class names", "class-name file is this data set's", "intended domain"):
            assert cause in finding


def test_unknown_class_images_do_not_count_in_the_accuracy():
    """10 of 20 known-class images right (twice chance for K=4) beside 100 unknown-class images, which no known-class
    prediction can match: counted, they would bring the accuracy to 8%."""
    preds, labels = _predictions(10, 10)
    preds = torch.cat([preds, torch.zeros(100, dtype=torch.long)])
    labels = torch.cat([labels, torch.full((100,), 4)])
    assert near_chance(preds, labels, 4, "accuracy") is None
    wrong = torch.cat([(labels[:20] + 1) % 4, preds[20:]])  # every known-class image wrong: counted as 0 of 20
    assert "is 0.0% (0 of 20 known-class images)" in near_chance(wrong, labels, 4, "accuracy")


def test_too_few_images_or_classes_say_nothing():
    preds, labels = _predictions(0, MIN_IMAGES - 1)
    assert near_chance(preds, labels, 4, "accuracy") is None  # too few images
    assert near_chance(*_predictions(0, MIN_IMAGES), 4, "accuracy") is not None
    assert near_chance(*_predictions(0, MIN_IMAGES, 3), 3, "accuracy") is None  # twice chance would be 67%
    assert piled(torch.zeros(MIN_IMAGES - 1, dtype=torch.long), NAMES, "predictions") is None
    assert piled(torch.zeros(MIN_IMAGES, dtype=torch.long), NAMES[:3], "predictions") is None


def test_one_class_over_half_of_the_predictions_is_a_pile():
    preds = torch.tensor([2] * 11 + [0, 1, 3] * 3)
    finding = piled(preds, NAMES, "zero-shot predictions on the target set")
    assert finding.startswith("zero-shot predictions on the target set pile onto one class: 'triangle' takes 55.0%")
    assert "of the 20 images (more than 50.0%, with 4 known classes)" in finding
    assert "class-name file" in finding and "intended domain" in finding
    assert piled(torch.tensor([2] * 10 + [0, 1] * 5), NAMES, "predictions") is None  # exactly half


def test_a_finding_is_a_warning_or_with_strict_one_error_line():
    warned = []
    settle([None, "A", "B"], False, warned.append)
    assert [w.split(";")[0] for w in warned] == ["uft: preflight: A", "uft: preflight: B"]
    assert "this is a warning (--data.strict_preflight true makes it an error)" in warned[0]
    with pytest.raises(InputError) as raised:
        settle([None, "A", "B"], True, warned.append)
    assert str(raised.value) == "preflight: A (data.strict_preflight is set: this is an error)"
    assert len(warned) == 2
    settle([None], True, warned.append)  # nothing found: nothing said
    assert len(warned) == 2


def _data(labels: torch.Tensor | None, strict: bool = False) -> SimpleNamespace:
    """What :func:`check_zero_shot` reads of a :class:`~uft.data.contract.TargetData`."""
    return SimpleNamespace(target_labeled=labels is not None, target_labels=lambda: labels, strict_preflight=strict)


def test_unreadable_images_rows_are_left_out_of_the_zero_shot_check():
    """20 readable images all right and 30 unreadable ones (NaN rows, whose argmax would be class 0, labeled 1):
    counted, they would bring the accuracy to 40%, below twice chance (50%)."""
    labels = torch.cat([torch.arange(20) % 4, torch.ones(30, dtype=torch.long)])
    cosine = torch.nn.functional.one_hot(labels, 4).float()
    cosine[20:] = float("nan")
    warned = []
    assert check_zero_shot(cosine, _data(labels), NAMES, warned.append) is cosine
    assert warned == []
    cosine[20:] = torch.nn.functional.one_hot(torch.zeros(30, dtype=torch.long), 4).float()  # now read, and wrong
    check_zero_shot(cosine, _data(labels), NAMES, warned.append)
    assert len(warned) == 1 and "is 40.0% (20 of 50 known-class images)" in warned[0]


def test_the_zero_shot_check_of_unlabeled_data_looks_for_a_pile_and_strict_makes_it_an_error():
    cosine = torch.nn.functional.one_hot(torch.tensor([3] * 15 + [0, 1, 2] * 3), 4).float()
    warned = []
    check_zero_shot(cosine, _data(None), NAMES, warned.append)
    assert len(warned) == 1 and "'cross' takes 62.5% of the 24 images" in warned[0]
    with pytest.raises(InputError, match="'cross' takes 62.5%"):
        check_zero_shot(cosine, _data(None, strict=True), NAMES, warned.append)
    # Labels, when there are: the accuracy decides (here 100%), not the pile.
    check_zero_shot(cosine, _data(cosine.argmax(dim=1)), NAMES, warned.append)
    assert len(warned) == 1


def test_the_evaluation_check_looks_at_the_splits_just_computed(shapes_dir):
    """A split's results from an earlier evaluation (kept for pictures) are not looked at again; strict where the
    data is a TargetData that says so."""
    evaluation = SplitEvaluation(4, MSP(), HistogramSplit())
    wrong, right = _predictions(0, 20), _predictions(20, 0)
    evaluation.results = {
        "test": dict(zip(("preds", "labels"), right)),
        "target": dict(zip(("preds", "labels"), wrong)),
    }
    warned = []
    check_evaluation(evaluation, ["test"], None, warned.append)
    assert warned == []
    check_evaluation(evaluation, ["test", "target", "target.segment"], None, warned.append)
    assert len(warned) == 1 and "the evaluated model's accuracy on the target split is 0.0%" in warned[0]
    data = make_dm(shapes_dir, ClassSplit(5, "0-6", "0-7"), strict_preflight=True)
    with pytest.raises(InputError, match="on the target split"):
        check_evaluation(evaluation, ["target"], data, warned.append)
    check_evaluation(evaluation, ["target"], SimpleNamespace(strict_preflight=True), warned.append)  # not TargetData
    assert len(warned) == 2


@pytest.mark.parametrize(
    ("num_samples", "every", "count"), [(0, 1, 0), (42, 1, 42), (512, 1, 512), (513, 2, 257), (100_000, 196, 511)]
)
def test_a_run_without_a_pass_looks_at_a_spread_subset_of_at_most_512_images(num_samples, every, count):
    assert spread(num_samples) == (every, count) and count <= SPREAD_IMAGES
    assert len(range(0, num_samples, every)) == count


def test_the_spread_subset_is_every_nth_target_image_by_position(shapes_dir):
    """The loader of the subset: the target samples 0, 3, 6, ... indexed 0, 1, 2, ... (the rows of its table)."""
    dm = make_dm(shapes_dir, ClassSplit(5, "0-6", "0-7"))
    dm.preprocess = PRE
    loader = dm.confidence_dataloader(3)
    assert loader.dataset.samples == dm.target_samples[::3]
    assert torch.cat([batch.index for batch in loader]).tolist() == list(range(14))
    assert not dm.strict_preflight


# ---------------------------------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A small rendering of the demo's world (8 target and 2 test images per category), and two class-name files:
    the world's own order, and the same names sorted (the order the list labels do not follow)."""
    folder = tmp_path_factory.mktemp("preflight")
    (folder / "right.txt").write_text("\n".join(CATEGORIES) + "\n")
    (folder / "sorted.txt").write_text("\n".join(sorted(CATEGORIES)) + "\n")
    return folder


def _world_args(world: Path, names: str, run: Path, *extra: str) -> list[str]:
    """The demo (the shipped world CLIP, UEO, open-partial: 12 known categories) on the small rendering, with the
    class-name file ``names``: one training step."""
    shipped = ROOT / "data" / "world" / "uft-world-vit.pt"
    small = ["--data.recipe.init_args.target_per_class=8", "--data.recipe.init_args.test_per_class=2"]
    trainer = ["--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--trainer.max_epochs=1"]
    trainer += ["--trainer.log_every_n_steps=1"]
    trainer += ["--trainer.limit_train_batches=1", f"--trainer.default_root_dir={run}"]
    data = [f"--data.root={world / 'world'}", f"--data.class_names={world / names}", "--data.batch_size=16"]
    return ["-c", str(ROOT / "configs" / "demo.yaml"), *small, *data, f"--model.pretrained={shipped}", *trainer, *extra]


NO_EVALUATION = "--trainer.limit_val_batches=0"  # a fit's evaluation is not looked at: it only takes time


def _preflight_warnings(command: list[str]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli_main(command, print_table=False)
    return [str(w.message) for w in caught if "preflight" in str(w.message)]


def test_a_class_name_file_in_another_order_than_the_labels_warns_and_the_right_one_does_not(world, tmp_path):
    """The UEO#1 case: zero-shot, the world CLIP is right on 45% of the known-class target images (chance: 8.3%)
    with the world's own class-name file, and on 0% with the same names sorted. The second run warns before its
    first step (UEO's confidence pass), naming the numbers and the causes; the first does not."""
    assert _preflight_warnings(["fit", *_world_args(world, "right.txt", tmp_path / "right", NO_EVALUATION)]) == []
    (message,) = _preflight_warnings(["fit", *_world_args(world, "sorted.txt", tmp_path / "sorted", NO_EVALUATION)])
    assert message.startswith("uft: preflight: zero-shot accuracy on the target set is 0.0% (0 of 64 known-class")
    assert "12 known classes (1/12 = 8.3%; below 2 times that, 16.7%" in message
    assert "order of the class names" in message and "--data.strict_preflight true" in message
    assert (tmp_path / "sorted" / "checkpoints" / "last.ckpt").exists()  # a warning: the run went on


def test_strict_preflight_stops_a_fit_before_its_first_step(world, tmp_path, capsys, monkeypatch):
    """ENT makes no pass over the target set: the preflight's own, over a spread subset, finds the sorted names;
    strict, the fit ends with one error line before any step (no checkpoint)."""

    def uft(args: list[str]) -> None:
        monkeypatch.setattr(sys, "argv", ["uft", *args])
        main()

    extra = ["--model.objective=uft.objectives.ENT", "--data.strict_preflight=true", NO_EVALUATION]
    message = one_line(uft, ["fit", *_world_args(world, "sorted.txt", tmp_path / "run", *extra)], capsys)
    assert message.startswith("preflight: zero-shot accuracy on the target set is 0.0% (0 of 64 known-class")
    assert message.endswith("(data.strict_preflight is set: this is an error)")
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_strict_preflight_stops_validate_before_metrics_json(world, tmp_path, capsys, monkeypatch):
    """Zero-shot `uft validate` with the sorted names: its evaluation's accuracy is near chance; strict, one error
    line and no metrics.json (the run folder holds the config Lightning wrote before). The right names pass."""

    def uft(args: list[str]) -> None:
        monkeypatch.setattr(sys, "argv", ["uft", *args])
        main()

    zero_shot = ["--model.objective=null", "--data.strict_preflight=true"]
    message = one_line(uft, ["validate", *_world_args(world, "sorted.txt", tmp_path / "run", *zero_shot)], capsys)
    assert message.startswith("preflight: the evaluated model's accuracy on the ")
    assert not list((tmp_path / "run").rglob("metrics.json"))
    cli_main(["validate", *_world_args(world, "right.txt", tmp_path / "right", *zero_shot)], print_table=False)
    assert list((tmp_path / "right").rglob("metrics.json"))


def test_strict_preflight_parses_from_the_command_line(shapes_dir, tmp_path):
    assert cli_main(demo_args(shapes_dir, tmp_path), run=False).datamodule.strict_preflight is False
    strict = demo_args(shapes_dir, tmp_path, "--data.strict_preflight=true")
    assert cli_main(strict, run=False).datamodule.strict_preflight is True
