"""Pictures of an evaluation and the console table of the final metrics."""

from __future__ import annotations

import json

import torch

from uft.callbacks import metrics_table
from uft.cli import cli_main
from uft.figures import evaluation_figures, reliability_figure, roc_curve
from uft.metrics import calibration_bins

from .args import demo_args
from .helpers import assert_evaluation_figures


def test_roc_curve_by_hand():
    """Scores 0.9 (known), 0.8 (unknown), 0.7 (known), 0.1 (unknown): accepting from the top."""
    fpr, tpr = roc_curve(torch.tensor([0.8, 0.1, 0.9, 0.7]), torch.tensor([False, False, True, True]))
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]


def test_validate_and_test_write_valid_pictures_and_print_one_table(shapes_dir, tmp_path, capsys):
    for command in ("validate", "test"):
        root = tmp_path / command
        cli_main([command, *demo_args(shapes_dir, root)])
        (folder,) = root.rglob("figures")
        assert_evaluation_figures(folder, min_bytes=5000)
        saved = torch.load(folder.parent / "scores.pt", weights_only=True)
        assert saved["num_known"] == 5 and len(saved["splits"]["test"]["ood"]) == 32
        assert len(saved["class_names"]) == 5 and (folder.parent / "per_class.csv").is_file()  # both commands
        out = capsys.readouterr().out
        assert "DataLoader" not in out and out.count("pacc") == 1  # each metric once, splits as columns
        metrics = json.loads(next(root.rglob("metrics.json")).read_text())
        assert metrics_table({split: metrics[split] for split in ("test", "target")}) in out  # metrics.json's numbers


def test_metrics_table_layout():
    table = metrics_table({"test": {"pacc": 0.5, "auroc": None, "samples": 32.0, "threshold": 0.2049}})
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "test"]
    assert lines[1].split() == ["pacc", "50.0"] and lines[2].split() == ["auroc", "n/a"]
    assert lines[3].split() == ["threshold", "0.2049"] and lines[4].split() == ["samples", "32"]


def test_metrics_table_shows_calibration_and_extra_detection_metrics_before_the_count():
    """ECE, OSCR and the AUPRs in percent, the NLL in nats, after the main rows; the sample count stays last."""
    summary = {"pacc": 0.5, "samples": 32.0, "aupr_in": None, "nll": 1.23456, "oscr": 0.4, "ece": 0.123}
    rows = [line.split() for line in metrics_table({"test": summary}).splitlines()]
    assert rows == [
        ["metric", "test"],
        ["pacc", "50.0"],
        ["ece", "12.3"],
        ["nll", "1.235"],
        ["oscr", "40.0"],
        ["aupr_in", "n/a"],
        ["samples", "32"],
    ]


def test_reliability_diagram_of_each_split_with_known_images():
    """A split without known images has no reliability diagram (nor per-class accuracy); empty bins are left out."""
    gen = torch.Generator().manual_seed(0)
    confidence = 0.5 + 0.5 * torch.rand(20, generator=gen)  # the lower half of the bins stays empty
    labels, preds = torch.randint(0, 3, (20,), generator=gen), torch.randint(0, 3, (20,), generator=gen)
    split = {"ood": torch.rand(20, generator=gen), "threshold": 0.5, "confidence": confidence, "bins": 15}
    results = {
        "test": {**split, "preds": preds, "labels": labels},
        "target": {**split, "preds": preds, "labels": labels + 3},
    }
    figures = evaluation_figures(results, ["a", "b", "c"])
    assert sorted(figures) == ["target_scores", "test_per_class", "test_reliability", "test_scores"]
    single = reliability_figure(confidence, preds == labels, 15, "title")
    top, bottom = single.axes
    filled = int((calibration_bins(confidence, preds == labels, 15)[0] > 0).sum())
    assert filled < 15 and len(bottom.patches) == filled and len(top.patches) == 2 * filled  # accuracy, gap


def test_tensorboard_gets_the_loss_learning_rates_metrics_and_pictures(shapes_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli_main(["fit", *demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=1")])
    (events,) = tmp_path.rglob("events.out.tfevents.*")
    assert (events.parent / "per_class.csv").is_file()  # fit writes the per-class report of its final evaluation
    accumulator = EventAccumulator(str(events.parent), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    scalars, images = set(accumulator.Tags()["scalars"]), set(accumulator.Tags()["images"])
    assert {"train/loss", "train/lr_prompt", "train/lr_visual_norms", "test/auroc", "test/hscore"} <= scalars
    assert {"eval/roc", "eval/test_scores", "eval/test_per_class", "eval/test_reliability"} <= images
