"""Unreadable images met during a run: skipped, named once, listed, counted, and never trained on; too many of
them stop the run with one message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from uft.callbacks import SkippedImagesFile
from uft.cli import cli_main
from uft.data.datasets import PLACEHOLDER_SIZE, ImageListDataset
from uft.data.lists import Sample
from uft.data.skipped import SkippedImages, unreadable_reason
from uft.errors import InputError
from uft.objectives import UEO

from ..args import demo_args


def _spoil(path: Path, how: str) -> None:
    """Break an image file the ways files break on disk."""
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif how == "text":
        path.write_text("not an image\n")
    elif how == "missing":
        path.unlink()


@pytest.fixture(scope="module")
def many_shapes(tmp_path_factory) -> Path:
    """200 target images (25 per class, classes 0-6 are the target: 175) would be too few for 0.5%: 29 per class
    gives 203 target images, so one bad file is 0.49% and four are 1.97%."""
    from uft.data.synthetic import make_shapes

    return make_shapes(tmp_path_factory.mktemp("many"), {"target": 29, "test": 3}, size=24, seed=3)


def _copy_with_bad(source: Path, out: Path, split: str, hows: list[str]) -> tuple[Path, list[str]]:
    """A copy of the data set with one image of a different target class spoiled per entry of ``hows``."""
    shutil.copytree(source, out)
    lines = (out / f"{split}.txt").read_text().splitlines()
    bad = [lines[i * 29 + 5].split()[0] for i in range(len(hows))]
    for rel, how in zip(bad, hows):
        _spoil(out / rel, how)
    return out, bad


@pytest.mark.parametrize("how", ["empty", "truncated", "text", "missing"])
def test_each_kind_of_bad_file_is_marked_not_raised(tmp_path, how):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("RGB", (40, 30), "red").save(good)
    Image.new("RGB", (40, 30), "blue").save(bad)
    _spoil(bad, how)
    assert unreadable_reason(good) is None
    assert unreadable_reason(bad)
    dataset = ImageListDataset([Sample("good.png", 0), Sample("bad.png", 1)], tmp_path, lambda im: im.size)
    assert dataset[0] == {"image": (40, 30), "index": 0, "readable": True}
    assert dataset[1] == {"image": (PLACEHOLDER_SIZE, PLACEHOLDER_SIZE), "index": 1, "readable": False}


def test_the_record_names_each_file_once_and_enforces_the_share():
    record = SkippedImages(max_share=0.02)
    assert record.add("target", {3: ("a.png", "empty")}, total=100) == [("a.png", "empty")]
    assert record.add("target", {3: ("a.png", "empty"), 7: ("b.png", "x")}, total=100) == [("b.png", "x")]
    assert record.indices("target") == [3, 7] and len(record) == 2
    with pytest.raises(InputError, match=r"3 of the 100 target images cannot be read \(3\.0%.*a\.png \(empty\)"):
        record.add("target", {9: ("c.png", "y")}, total=100)
    restored = SkippedImages()
    restored.load_state_dict(record.state_dict(), {"target": ["?"] * 3 + ["a.png"] + ["?"] * 3 + ["moved.png"]})
    assert restored.indices("target") == [3]  # index 7 now holds another image: dropped
    with pytest.raises(InputError, match="max_skipped"):
        SkippedImages(max_share=1.5)


def _rows_seen_by(monkeypatch) -> list[int]:
    """Rows of every training batch that reaches UEO (gradients on: not the label-free criterion's value of the
    objective at an evaluation), which also asserts that no excluded sample's zero weight arrives."""
    seen: list[int] = []
    original = UEO.forward

    def spy(self, logits, weights=None, cosine=None):
        assert weights is not None and bool((weights > 0).all()), "an unreadable sample reached the objective"
        if torch.is_grad_enabled():
            seen.append(len(logits))
        return original(self, logits, weights, cosine)

    monkeypatch.setattr(UEO, "forward", spy)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["uft.objectives.UEO", "uft.objectives.IM"])
def test_a_half_percent_of_bad_target_images_is_skipped_and_listed(many_shapes, tmp_path, monkeypatch, objective):
    """UEO meets the bad file in its confidence pass, IM in training: either way it is named, listed, never
    trained on, never evaluated, and the run finishes."""
    data, bad = _copy_with_bad(many_shapes, tmp_path / "data", "target", ["truncated"])
    seen = _rows_seen_by(monkeypatch)
    runs = tmp_path / "runs"
    with pytest.warns(UserWarning, match=rf"skipping unreadable image .*{bad[0]} \(target split\)"):
        cli_main(["fit", *demo_args(data, runs, "--trainer.max_epochs=1", f"--model.objective={objective}")])
    listed = (runs / "lightning_logs" / "version_0" / "skipped_images.txt").read_text().splitlines()
    assert [line.split("\t")[:2] for line in listed] == [["target", bad[0]]]
    assert sum(seen) == 12 * 16 - 1  # 12 full batches of 16 from 203 images, one row dropped (IM goes through UEO)
    metrics = json.loads((runs / "lightning_logs" / "version_0" / "metrics.json").read_text())
    assert metrics["target"]["samples"] == 203 - 1


def test_two_percent_of_bad_target_images_stops_the_run(many_shapes, tmp_path):
    data, bad = _copy_with_bad(many_shapes, tmp_path / "data", "target", ["empty", "truncated", "text", "missing"])
    # A missing image is found when the list is read: the other three are met by the run.
    (data / "target.txt").write_text(
        "".join(line + "\n" for line in (data / "target.txt").read_text().splitlines() if bad[3] not in line)
    )
    runs = tmp_path / "runs"
    with pytest.raises(InputError, match=r"^3 of the 202 target images cannot be read \(1\.5%.*max_skipped=0\.01"):
        cli_main(["fit", *demo_args(data, runs, "--trainer.max_epochs=1", "--model.objective=uft.objectives.IM")])
    listed = (runs / "lightning_logs" / "version_0" / "skipped_images.txt").read_text()
    assert all(rel in listed for rel in bad[:3])


def test_a_bad_test_image_is_skipped_in_evaluation(many_shapes, tmp_path):
    data, bad = _copy_with_bad(many_shapes, tmp_path / "data", "test", ["text"])
    runs = tmp_path / "runs"
    args = demo_args(data, runs, "--data.max_skipped=0.05")
    with pytest.warns(UserWarning, match=rf"{bad[0]} \(test split\)"):
        cli_main(["validate", *args])
    metrics = json.loads((runs / "lightning_logs" / "version_0" / "metrics.json").read_text())
    assert metrics["test"]["samples"] == 8 * 3 - 1
    with pytest.raises(InputError, match=r"1 of the 24 test images cannot be read"):
        cli_main(["validate", *args, "--data.max_skipped=0.01"])


def test_verify_images_reports_before_the_model_is_set_up(many_shapes, tmp_path, monkeypatch):
    """The data's setup decodes every image; Lightning runs it before the model's setup and the first batch (the
    model itself, CLIP loaded, is built before: the CLI gives it the data's class names)."""
    data, bad = _copy_with_bad(many_shapes, tmp_path / "data", "target", ["empty", "text", "truncated"])

    def no_model(*args, **kwargs):
        raise AssertionError("the model was set up before the images were checked")

    monkeypatch.setattr("uft.module.UFTModule.setup", no_model)
    args = demo_args(data, tmp_path / "runs", "--data.verify_images=true")
    with pytest.raises(InputError, match=r"3 of the 203 target images cannot be read"):
        cli_main(["fit", *args])
    with pytest.warns(UserWarning, match=rf"{bad[0]}"), pytest.raises(AssertionError, match="model was set up"):
        cli_main(["fit", *args, "--data.max_skipped=0.02"])  # under the share: warned, then the run goes on


def test_the_skipped_file_is_written_by_its_callback_when_too_many_stop_the_run(many_shapes, tmp_path, monkeypatch):
    """Too many unreadable images met by the pass over the target set stop the run; the callback has listed them
    on the way (the data module writes no file). Found by verify_images, they stop the run before it writes
    anything."""
    data, bad = _copy_with_bad(many_shapes, tmp_path / "data", "target", ["empty", "text", "truncated"])
    too_many = r"3 of the 203 target images cannot be read"
    for hook in ("setup", "on_exception"):
        monkeypatch.setattr(SkippedImagesFile, hook, lambda *_, **__: None)
    with pytest.raises(InputError, match=too_many):
        cli_main(["fit", *demo_args(data, tmp_path / "without")])
    assert not list((tmp_path / "without").rglob("skipped_images.txt"))  # the data module writes no file
    monkeypatch.undo()
    with pytest.raises(InputError, match=too_many):
        cli_main(["fit", *demo_args(data, tmp_path / "verified", "--data.verify_images=true")])
    assert not (tmp_path / "verified").exists()  # refused before the run: no run folder
    with pytest.raises(InputError, match=too_many):
        cli_main(["fit", *demo_args(data, tmp_path / "runs")])
    (listed,) = (tmp_path / "runs").rglob("skipped_images.txt")
    assert sorted(line.split("\t")[1] for line in listed.read_text().splitlines()) == sorted(bad)
