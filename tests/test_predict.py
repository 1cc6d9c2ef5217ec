"""`uft predict`: a CSV streamed to the log folder, with an unknown decision from the target data's scores; the
OOD score and the threshold rule chosen in the config."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from uft.callbacks import PredictionCSV
from uft.cli import cli_main

from .args import demo_args


class CountRowsOnDisk(Callback):
    """After each prediction batch, the rows already on disk (proves the writer streams)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        writer = next(c for c in trainer.callbacks if isinstance(c, PredictionCSV))
        self.seen.append(len(writer._part.read_text().splitlines()))


@pytest.fixture(scope="module")
def trained(shapes_dir, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("trained")
    cli_main(["fit", *demo_args(shapes_dir, root, "--trainer.max_epochs=1")])
    return root, root / "checkpoints" / "last.ckpt"


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_a_folder_streams_a_csv_with_the_unknown_decision(shapes_dir, trained, tmp_path):
    root, ckpt = trained
    folder = tmp_path / "new_images"
    shutil.copytree(shapes_dir / "images" / "star", folder / "stars")
    shutil.copytree(shapes_dir / "images" / "ring", folder / "rings")
    images = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    counter = CountRowsOnDisk()
    args = demo_args(shapes_dir, tmp_path / "run", f"--data.predict_list={folder}", "--data.eval_batch_size=3")
    cli = cli_main(args, run=False)  # built as `uft predict` builds it, run by hand to watch the writer
    cli.trainer.callbacks.append(counter)
    cli.trainer.predict(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt), return_predictions=False)
    (path,) = (tmp_path / "run").rglob("predictions.csv")
    rows = read_rows(path)
    assert list(rows[0]) == list(PredictionCSV.COLUMNS)
    assert [r["path"] for r in rows] == images and [int(r["index"]) for r in rows] == list(range(len(images)))
    assert counter.seen == [min(3 * (i + 1), len(images)) for i in range(len(counter.seen))]  # written as it went
    threshold = cli.model.predict_threshold
    names = cli.model.hparams.class_names
    for row in rows:
        top5 = row["top5"].split(";")
        assert len(top5) == 5 and set(top5) <= set(names)
        unknown = float(row["score"]) < threshold
        assert (row["pred"] == "unknown") == unknown == (row["pred_id"] == "-1")
        assert unknown or row["pred"] == top5[0] == names[int(row["pred_id"])]  # a known row names its top class
    assert 0 < sum(r["pred"] == "unknown" for r in rows) < len(rows)  # the rule split them (score spread)


def test_predict_defaults_to_the_target_set_and_says_where(shapes_dir, trained, tmp_path, capsys):
    root, ckpt = trained
    cli_main(["predict", *demo_args(shapes_dir, tmp_path / "run"), f"--ckpt_path={ckpt}"])
    (path,) = (tmp_path / "run").rglob("predictions.csv")
    assert len(read_rows(path)) == 42
    assert f"uft: wrote 42 predictions to {path}" in capsys.readouterr().err
    assert not list(path.parent.glob("*.part"))


@pytest.mark.parametrize("score", ["uft.scores.MaxLogit", "uft.scores.Energy"])
def test_evaluation_follows_the_chosen_score_and_reports_the_decision(shapes_dir, trained, tmp_path, score):
    root, ckpt = trained
    msp = json.loads(next(root.rglob("metrics.json")).read_text())
    run = tmp_path / "run"
    args = demo_args(shapes_dir, run, f"--model.ood_score={score}", "--model.unknown_rule=uft.scores.UnknownShare")
    cli_main(["validate", *args, "--model.unknown_rule.share=0.375", f"--ckpt_path={ckpt}"])
    got = json.loads(next(run.rglob("metrics.json")).read_text())
    assert got["test"]["pacc"] == pytest.approx(msp["test"]["pacc"])  # the same model: classification unchanged
    assert got["test"]["auroc"] != msp["test"]["auroc"]  # ranked by another score
    # 12 of the 32 test images are unknown: share 0.375 calls the 12 lowest-scoring unknown.
    assert 0 <= got["test"]["unknown_acc"] <= 1 and 0 <= got["test"]["known_acc"] <= 1
    h = got["test"]["hscore"]
    k, u = got["test"]["known_acc"], got["test"]["unknown_acc"]
    assert h == pytest.approx(2 * k * u / (k + u))


@pytest.mark.parametrize("share", [None, 0.25], ids=["histogram-split", "unknown-share-0.25"])
def test_predict_decides_with_the_threshold_validate_reports(shapes_dir, trained, tmp_path, share):
    """`uft predict` and `uft validate` of one checkpoint apply the unknown rule to the same scores: the target set's
    42 images, dealt in the same evaluation batches, through the same forward pass. So predict's threshold is the
    one validate reports for the target split, and predict calls unknown exactly the images validate does. With
    `UnknownShare`, the count is the one the quantile promises."""
    _, ckpt = trained
    rule = ["--model.unknown_rule=uft.scores.UnknownShare", f"--model.unknown_rule.share={share}"] if share else []
    cli_main(["validate", *demo_args(shapes_dir, tmp_path / "validate", *rule), f"--ckpt_path={ckpt}"])
    reported = json.loads(next((tmp_path / "validate").rglob("metrics.json")).read_text())["target"]
    validated = torch.load(next((tmp_path / "validate").rglob("scores.pt")), weights_only=True)["splits"]["target"]

    cli = cli_main(demo_args(shapes_dir, tmp_path / "predict", *rule), run=False)  # as `uft predict` builds it
    batches = cli.trainer.predict(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt), return_predictions=True)
    index = torch.cat([b["index"] for b in batches])
    scores = torch.cat([b["score"] for b in batches])[index.argsort()]
    threshold = cli.model.predict_threshold
    (path,) = (tmp_path / "predict").rglob("predictions.csv")
    unknown = [int(r["index"]) for r in read_rows(path) if r["pred"] == "unknown"]
    # The same arithmetic on the same images in the same process: the same float32 scores, the same threshold.
    assert torch.equal(scores, validated["ood"]) and validated["threshold"] == threshold
    assert reported["threshold"] == float(torch.tensor(threshold, dtype=torch.float32))  # logged as a float32
    # Both call an image unknown when its score is below the threshold in float64 (OpenSetMetrics; predict casts its
    # float32 score first, so a score within float32 rounding of the threshold is decided alike).
    ood = validated["ood"].double()
    assert unknown == (ood < threshold).nonzero().squeeze(1).tolist()
    assert 0 < len(unknown) < 42
    if share:
        # torch.quantile interpolates linearly at position h = share x (N - 1) between the sorted scores s_f and
        # s_f+1 (f = floor(h)). With s_f < s_f+1 and h not whole the threshold lies strictly between them, so exactly
        # f + 1 images score below it: ceil(share x (N - 1)), here 0.25 x 41 = 10.25 -> 11, not share x N = 10.5
        # rounded. A whole h gives f; a tie s_f = s_f+1 puts the threshold on it: only the images strictly below.
        s = ood.sort().values
        h = share * (len(s) - 1)
        f = int(h)
        assert h != f and s[f] < s[f + 1]  # the case of this data (no tie at the quantile position)
        assert len(unknown) == f + 1 == 11
