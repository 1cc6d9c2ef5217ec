"""The glue between CLIP, the objective, the per-sample table and the metrics, end to end through the CLI.

Each test compares what the module feeds a part (the objective's inputs, the table, the evaluation metrics) with an
independent computation: open_clip's own ``encode_image`` / ``encode_text`` on the zero-shot prompt text
``"a photo of a <class name>."`` (the module's prompt at initialisation: ``tiny.yaml`` keeps the default
``ctx_init``, and :class:`uft.prompts.PromptLearner` starts the context from that text's token embeddings), open_clip's
evaluation preprocessing, the list files read here, and the formulas of :mod:`tests.reference`.

The images are resized to 48 x 40 (the tiny CLIP takes 32 x 32): the evaluation transform's resize and centre crop
both change them, and the training transform's random crop gives other pixels.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from uft.cli import cli_main
from uft.metrics import DECISION_NAMES, EXTRA_NAMES, METRIC_NAMES

from .args import TINY, demo_args
from .helpers import RecordingUEO, RecordTrainingInputs
from .reference import confidence_ref, extra_metrics_ref, open_set_metrics_ref

KNOWN = 5  # known classes 0-4 of the 8 shapes; 5-7 are unknown
TARGET_CLASSES = range(0, 7)
TEST_CLASSES = range(0, 8)
OPEN_SPLIT = ["--data.split.num_known=5", "--data.split.target_classes=0-6", "--data.split.test_classes=0-7"]
LOGIT_SCALE = 37.0  # not the default 100: the configured scale must be the one used
TAU = 0.5  # not UEO's default 1: the table must come from the objective's own `prepare`
IMAGE_SIZE = (48, 40)  # width, height: not square and not the model's 32


# ---------------------------------------------------------------------------------------------------- references


@pytest.fixture(scope="module")
def wide_shapes_dir(shapes_dir, tmp_path_factory) -> Path:
    """A copy of ``shapes_dir`` with every image resized to 48 x 40 pixels."""
    folder = tmp_path_factory.mktemp("wide") / "shapes"
    shutil.copytree(shapes_dir, folder)
    for png in folder.rglob("*.png"):
        with Image.open(png) as image:
            image.convert("RGB").resize(IMAGE_SIZE, Image.BICUBIC).save(png)
    return folder


def listed(data: Path, list_name: str, classes: range) -> tuple[list[Path], torch.Tensor]:
    """The images of a list file whose label is in ``classes``, in file order, and their labels.

    Args:
        data: the data folder (``list_name`` and the image paths are relative to it).
        list_name: ``target.txt`` or ``test.txt``.
        classes: the class ids kept.
    """
    rows = [line.rsplit(None, 1) for line in (data / list_name).read_text().splitlines() if line.strip()]
    kept = [(data / path, int(label)) for path, label in rows if int(label) in classes]
    return [path for path, _ in kept], torch.tensor([label for _, label in kept])


def known_names(data: Path) -> list[str]:
    """The names of the known classes, from ``classes.txt``; none holds an underscore (which prompts would write as a
    space), so ``"a photo of a <name>."`` is the module's prompt text.

    Args:
        data: the data folder.
    """
    names = (data / "classes.txt").read_text().split()[:KNOWN]
    assert not any("_" in name for name in names)
    return names


def eval_images(clip: torch.nn.Module, paths: list[Path]) -> torch.Tensor:
    """The images as open_clip's own evaluation preprocessing of ``clip`` makes them (resize, centre crop,
    normalisation), stacked.

    Args:
        clip: the open_clip model.
        paths: the image files.
    """
    preprocess = image_transform_v2(PreprocessCfg(**clip.visual.preprocess_cfg), is_train=False)
    pictures = []
    for path in paths:
        with Image.open(path) as image:
            pictures.append(preprocess(image.convert("RGB")))
    return torch.stack(pictures)


@torch.no_grad()
def zero_shot_cosine(clip: torch.nn.Module, names: list[str], images: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (N, K) of the images to ``"a photo of a <name>."``, with open_clip's ``encode_image`` and
    ``encode_text`` on the tokenized prompts (both normalised).

    Args:
        clip: the open_clip model.
        names: the K class names.
        images: preprocessed images (N, 3, H, W).
    """
    tokens = open_clip.get_tokenizer(TINY)([f"a photo of a {name}." for name in names])
    text = clip.encode_text(tokens, normalize=True)
    return clip.encode_image(images, normalize=True) @ text.T


def metrics_json(cli) -> dict:
    """The ``metrics.json`` a run wrote into its log folder."""
    return json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())


# ---------------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def recorded_fit(wide_shapes_dir, tmp_path_factory):
    """One epoch of UEO training (2 steps, no validation) with a recording objective and a callback that keeps the
    zero-shot CLIP and every batch: the CLI object and that callback."""
    args = demo_args(
        wide_shapes_dir,
        tmp_path_factory.mktemp("fit"),
        *OPEN_SPLIT,
        "--model.objective=tests.helpers.RecordingUEO",
        f"--model.objective.init_args.tau={TAU}",
        f"--model.logit_scale={LOGIT_SCALE}",
        "--trainer.max_epochs=1",
        "--trainer.limit_val_batches=0",
        "--trainer.callbacks+=tests.helpers.RecordTrainingInputs",
    )
    cli = cli_main(["fit", *args])
    (recorder,) = [c for c in cli.trainer.callbacks if isinstance(c, RecordTrainingInputs)]
    return cli, recorder


@pytest.mark.slow
def test_training_step_feeds_the_objective_scaled_zero_shot_cosines_and_the_batch_rows(recorded_fit, wide_shapes_dir):
    """The objective gets ``logit_scale * cos`` and ``cosine=cos`` with ``cos`` the cosine between open_clip's
    ``encode_image`` of the batch and ``encode_text`` of the zero-shot prompts (first step: the weights are still the
    zero-shot ones), and at every step the table rows of the batch's own sample indices."""
    cli, recorder = recorded_fit
    objective = cli.model.objective
    assert isinstance(objective, RecordingUEO) and objective.tau == TAU
    assert len(objective.calls) == len(recorder.batches) == 2  # 42 target images, global batch 16

    images = recorder.batches[0].images
    expected = zero_shot_cosine(recorder.clip, known_names(wide_shapes_dir), images)
    logits, table, cosine = objective.calls[0]
    assert cosine.shape == (16, KNOWN)
    torch.testing.assert_close(cosine, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, LOGIT_SCALE * expected, rtol=0, atol=LOGIT_SCALE * 1e-5)

    full_table = cli.model.target_table
    assert full_table.shape == (42,)
    for batch, (_, table, _) in zip(recorder.batches, objective.calls):
        assert not torch.equal(batch.index, torch.arange(len(batch)))  # shuffled: position and sample index differ
        assert torch.equal(table, full_table[batch.index])


@pytest.mark.slow
def test_confidence_table_is_ueo_prepare_of_zero_shot_cosines_on_eval_transformed_images(recorded_fit, wide_shapes_dir):
    """The table built before the first step is ``max_k softmax_k(cos_ik / tau)`` of the zero-shot cosines of the
    target images (the list's images of the target classes, in list order) under open_clip's evaluation
    preprocessing."""
    cli, recorder = recorded_fit
    paths, _ = listed(wide_shapes_dir, "target.txt", TARGET_CLASSES)
    cosine = zero_shot_cosine(recorder.clip, known_names(wide_shapes_dir), eval_images(recorder.clip, paths))
    expected = confidence_ref(cosine.double().numpy(), TAU)
    assert cli.model.target_table.shape == (len(paths),)
    np.testing.assert_allclose(cli.model.target_table.double().numpy(), expected, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- evaluation


def test_validation_metrics_are_those_of_plain_zero_shot_cosines(wide_shapes_dir, tmp_path):
    """``uft validate`` writes, for each split, the metrics of the temperature-1 cosines of the split's images
    (open_clip's evaluation preprocessing) to the zero-shot prompts: accuracy per class and overall, AUROC / FPR95
    by the maximum softmax probability at temperature 1, their harmonic mean, OSCR and the AUPRs by that score, ECE
    and NLL of the probabilities at the configured training scale, and the sample count; and, per sample, the
    labels, predictions and scores behind them."""
    scale = f"--model.logit_scale={LOGIT_SCALE}"
    cli = cli_main(["validate", *demo_args(wide_shapes_dir, tmp_path, *OPEN_SPLIT, scale)])
    written = metrics_json(cli)
    assert set(written) == {"test", "target", "selection"}  # selection: the label-free criteria
    clip, names = cli.model.clip, known_names(wide_shapes_dir)
    for split, list_name, classes in (("test", "test.txt", TEST_CLASSES), ("target", "target.txt", TARGET_CLASSES)):
        paths, labels = listed(wide_shapes_dir, list_name, classes)
        cosine = zero_shot_cosine(clip, names, eval_images(clip, paths))
        expected = open_set_metrics_ref(cosine, labels, KNOWN)
        assert written[split]["samples"] == len(labels)
        # Per sample, in sample order (one process evaluates in order): the score the detection metrics ranked.
        scored = cli.model.evaluation.results[split]
        assert torch.equal(scored["labels"], labels)
        assert torch.equal(scored["preds"], cosine.argmax(dim=1))
        msp = torch.softmax(cosine.double(), dim=1).max(dim=1).values
        torch.testing.assert_close(scored["ood"].double(), msp, rtol=0, atol=1e-6)
        assert {name: written[split][name] for name in expected} == pytest.approx(expected, rel=0, abs=1e-6), split
        extras = extra_metrics_ref(cosine, labels, KNOWN, LOGIT_SCALE)
        # Logged as float32: the NLL (nats, unbounded) to its relative precision.
        assert {name: written[split][name] for name in extras} == pytest.approx(extras, rel=1e-6, abs=1e-6), split


@pytest.mark.slow
def test_closed_setting_writes_null_detection_metrics(shapes_dir, tmp_path, capsys):
    """With every target and test class known (no unknown image), fit and its evaluation log NaN for the detection
    metrics (auroc, fpr95, hm, unknown_acc, hscore, oscr, aupr_in, aupr_out), which metrics.json writes as ``null``
    and the printed table as ``n/a``; the accuracies, the calibration, the threshold and the counts stay numbers."""
    closed = ["--data.split.num_known=5", "--data.split.target_classes=0-4", "--data.split.test_classes=0-4"]
    cli = cli_main(["fit", *demo_args(shapes_dir, tmp_path, *closed, "--trainer.max_epochs=1")])
    undefined = {"auroc", "fpr95", "hm", "unknown_acc", "hscore", "oscr", "aupr_in", "aupr_out"}
    defined = {*METRIC_NAMES, *DECISION_NAMES, *EXTRA_NAMES} - undefined
    written = metrics_json(cli)
    assert set(written) == {"train", "test", "target", "selection"}
    assert written["test"]["samples"] == 4 * KNOWN and written["target"]["samples"] == 6 * KNOWN
    for split in ("test", "target"):
        assert set(written[split]) == {*METRIC_NAMES, *DECISION_NAMES, *EXTRA_NAMES, "samples"}
        assert {name for name, value in written[split].items() if value is None} == undefined, split
        assert all(isinstance(written[split][name], float) for name in defined), split
        assert all(math.isnan(cli.trainer.callback_metrics[f"{split}/{name}"]) for name in undefined), split

    printed = capsys.readouterr().out
    rows = {cells[0]: cells[1:] for cells in map(str.split, printed.splitlines()) if cells}
    assert rows["metric"] == ["test", "target"]
    for name in undefined:
        assert rows[name] == ["n/a", "n/a"], name
    for name in defined:
        assert "n/a" not in rows[name], name
