"""The demo's world pipeline: reproducible pretraining, the checkpoint's loading path, the benchmark recipe."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uft.cli import cli_main
from uft.clip import load_clip
from uft.data.datamodule import TargetDataModule
from uft.data.splits import ClassSplit
from uft.errors import InputError
from uft.harness.compare import compare
from uft.harness.pretrain import (
    MODEL,
    compare_to_reference,
    main,
    pretrain,
    sha256_of,
    weights_sha256,
    zero_shot_accuracy,
)
from uft.world import CATEGORIES
from uft.world.benchmark import WorldBenchmark

from ..args import ROOT

SHIPPED = ROOT / "data" / "world" / "uft-world-vit.pt"
RECORD = SHIPPED.with_suffix(".json")


def test_pretraining_is_reproducible_and_loads_through_open_clip(tmp_path):
    """Two runs from one seed write identical checkpoints; the file loads as a local open_clip checkpoint."""
    kwargs = dict(steps=2, batch_size=8, lr=1e-3, seed=3, workers=0, eval_per_class=1)
    accuracy = pretrain(tmp_path / "a.pt", **kwargs)
    pretrain(tmp_path / "b.pt", **kwargs)
    a, b = torch.load(tmp_path / "a.pt", weights_only=True), torch.load(tmp_path / "b.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["token_embedding.weight"].dtype == torch.float16
    zero_rows = (a["token_embedding.weight"] == 0).all(dim=1)
    assert zero_rows.sum() > 40_000 and not zero_rows.all()  # only tokens of captions and names were kept
    assert set(accuracy) == {"photo", "clipart", "painting", "sketch"}
    model, pre = load_clip(MODEL, str(tmp_path / "a.pt"))
    assert pre.size == 48
    torch.testing.assert_close(model.visual.conv1.weight, a["visual.conv1.weight"].float())


def test_benchmark_recipe_makes_data_once_and_refuses_foreign_folders(tmp_path):
    recipe = WorldBenchmark(seed=1, target_per_class=2, test_per_class=1, size=48)
    root = tmp_path / "world"
    recipe.ensure(root)
    assert (root / "classes.txt").read_text().split() == list(CATEGORIES)
    assert len((root / "target.txt").read_text().splitlines()) == 2 * len(CATEGORIES)
    assert json.loads((root / "recipe.json").read_text())["seed"] == 1
    first = (root / "images" / CATEGORIES[0] / "target_0000.png").read_bytes()
    recipe.ensure(root)  # already made: nothing changes
    assert (root / "images" / CATEGORIES[0] / "target_0000.png").read_bytes() == first
    with pytest.raises(InputError, match="not made by this recipe"):
        WorldBenchmark(seed=2, target_per_class=2, test_per_class=1).ensure(root)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="remove it or choose another"):
        recipe.ensure(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_recipe_renders_only_into_a_new_folder_of_an_existing_one_and_says_so(tmp_path, capsys):
    recipe = WorldBenchmark(seed=1, target_per_class=1, test_per_class=1)
    with pytest.raises(InputError, match=rf"parent folder {tmp_path / 'typo'} does not exist"):
        recipe.ensure(tmp_path / "typo" / "world")
    assert list(tmp_path.iterdir()) == []
    recipe.ensure(tmp_path / "world")
    err = capsys.readouterr().err.splitlines()
    assert (
        err[0]
        == f"uft: rendering the world benchmark (48 images of 48x48 pixels, photo, fog) into {tmp_path}/world ..."
    )
    assert err[1].startswith(f"uft: rendered {tmp_path}/world (0.") and err[1].endswith(" MB)")


def test_the_demo_config_runs_from_another_folder(tmp_path, monkeypatch):
    """The demo's shipped weights are found through the checkout; its relative data root is not rendered into a
    folder that does not hold data/world (one error, nothing written); pointed at a folder, it validates."""
    monkeypatch.chdir(tmp_path)
    demo = str(ROOT / "configs" / "demo.yaml")
    with pytest.raises(InputError, match=r"data.root data/world/photo-fog: its parent folder .* does not exist"):
        cli_main(["validate", "-c", demo])
    assert list(tmp_path.iterdir()) == []
    world = tmp_path / "world"
    small = ["--data.recipe.init_args.target_per_class=2", "--data.recipe.init_args.test_per_class=1"]
    cli_main(["validate", "-c", demo, f"--data.root={world}", *small, "--trainer.default_root_dir=runs"])
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert metrics["test"]["samples"] == len(CATEGORIES)


def test_datamodule_makes_the_benchmark_through_its_recipe_and_reads_its_layout(tmp_path, monkeypatch):
    """The recipe's files are the data module's defaults; without a root it renders into its own folder, named by
    its parameters (another seed: another folder, never the first seed's data)."""
    split = ClassSplit(12, "0-7,12-17", "0-23")
    recipe = WorldBenchmark(seed=0, target_per_class=2, test_per_class=1)
    dm = TargetDataModule(root=str(tmp_path / "world"), split=split, recipe=recipe)
    dm.prepare_data()
    dm.setup("validate")
    assert len(dm.target_samples) == 2 * 14 and len(dm.test_samples) == 24
    assert dm.known_class_names == list(CATEGORIES[:12])
    assert dm.image_dir == tmp_path / "world"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "world").mkdir(parents=True)
    seeded = TargetDataModule(split=split, recipe=WorldBenchmark(seed=3, target_per_class=2, test_per_class=1))
    seeded.prepare_data()
    seeded.setup("validate")
    assert seeded.image_dir == Path("data/world/photo-fog-seed3-target_per_class2-test_per_class1")
    assert json.loads((seeded.image_dir / "recipe.json").read_text())["seed"] == 3
    assert WorldBenchmark().default_root() == Path("data/world/photo-fog")  # the demo's


def test_shipped_checkpoint_is_the_one_its_record_describes():
    """The shipped file is the recorded one, and recomputing its zero-shot accuracy gives the recorded numbers."""
    record = json.loads(RECORD.read_text())
    assert sha256_of(SHIPPED) == record["sha256"] and SHIPPED.stat().st_size == record["bytes"]
    assert weights_sha256(SHIPPED) == record["weights_sha256"]
    model, preprocess = load_clip(MODEL, str(SHIPPED))
    accuracy = zero_shot_accuracy(model, preprocess, per_class=record["eval_per_class"], seed=record["seed"])
    assert compare_to_reference(accuracy, RECORD, tolerance=0.005) == []


def test_reference_check_names_every_style_off_by_more_than_a_point(tmp_path):
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"zero_shot_accuracy": {"photo": 0.5, "sketch": 0.2, "clipart": 0.9}}))
    lines = compare_to_reference({"photo": 0.509, "sketch": 0.25}, record)
    assert len(lines) == 2 and lines[0].startswith("sketch: 0.250 here, 0.200 in") and lines[1].startswith("clipart")


def test_pretraining_command_never_overwrites(tmp_path):
    """Neither an existing checkpoint nor an existing record beside it (such as the reference) is overwritten."""
    existing = tmp_path / "mine.pt"
    existing.write_bytes(b"keep me")
    record = tmp_path / "record.json"
    record.write_text("{}")
    with pytest.raises(SystemExit, match="mine.pt already exists"):
        main(["--out", str(existing)])
    with pytest.raises(SystemExit, match="record.json already exists"):
        main(["--out", str(tmp_path / "record.pt"), "--reference", str(record)])
    with pytest.raises(SystemExit, match="no such file"):
        main(["--out", str(tmp_path / "new.pt"), "--reference", str(tmp_path / "missing.json")])
    assert existing.read_bytes() == b"keep me" and record.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.pt", "record.json"]


@pytest.mark.slow
def test_ueo_improves_the_shipped_clip_on_the_demo_world(tmp_path):
    """End-to-end learning: `configs/demo.yaml` as shipped (open-partial, seed 0), on a fresh rendering folder.
    UEO's last-epoch model recognises the known classes of the test split better than zero-shot and separates
    the unknown ones better; and it is UEO that trained (IM would score alike on this world): its per-sample
    confidence weights rank the target set's known-class images above its unknown ones."""
    from sklearn.metrics import roc_auc_score

    from uft.data.lists import read_list_file
    from uft.data.splits import parse_class_ids

    record = tmp_path / "record.pt"
    data = [f"--data.root={tmp_path / 'world'}", f"--model.pretrained={SHIPPED}"]
    recorded = ["--trainer.callbacks+=tests.helpers.RecordTraining", f"--trainer.callbacks.path={record}"]
    methods = [ROOT / "configs" / "method" / f"{name}.yaml" for name in ("zeroshot", "ueo")]
    zero_shot, ueo = (
        row.metrics["test"]
        for row in compare([str(ROOT / "configs" / "demo.yaml")], methods, tmp_path, [*data, *recorded])
    )
    # Measured (any thread count): zero-shot PACC 52.6, AUROC 54.7; UEO 69.5, 61.3. Targets of the demo (issues 4, 20).
    assert 0.35 <= zero_shot["pacc"] <= 0.75 and zero_shot["auroc"] > 0.52  # informative but imperfect
    assert ueo["pacc"] >= zero_shot["pacc"] + 0.05 and ueo["auroc"] >= zero_shot["auroc"] + 0.05
    table = torch.load(record, weights_only=True)["table"]  # only the trained run records one; IM keeps none
    target = set(parse_class_ids("0-7,12-17", 24))  # the open-partial setting's target classes
    labels = [s.label for s in read_list_file(tmp_path / "world" / "target.txt", tmp_path / "world", 24)]
    labels = torch.tensor([label for label in labels if label in target])
    assert table.shape == labels.shape and table.std() > 0
    # Measured: 0.597 (the zero-shot target AUROC of the same scores is 59.7).
    assert roc_auc_score((labels < 12).numpy(), table.numpy()) > 0.55


@pytest.mark.slow
def test_the_demo_table_does_not_move_with_the_thread_count(tmp_path):
    """The demo's UEO row through the comparison runner with 1 and with 2 torch threads (OMP_NUM_THREADS), each in
    its own process: every metric within 0.3 points. Float rounding differs between the two (other reduction
    orders); at the demo's operating point it stays in the last digits of the parameters instead of growing into
    points (SGD at 0.3, the earlier operating point, moved test PACC by 4 points). Measured: identical to the
    digit."""
    world = tmp_path / "world"  # the first run renders the demo's world into it, the second reads it
    rows = {}
    for threads in (1, 2):
        out = tmp_path / f"threads{threads}"
        configs = ["-c", str(ROOT / "configs/demo.yaml"), "--methods", str(ROOT / "configs/method/ueo.yaml")]
        cmd = [sys.executable, "-m", "uft.harness.compare", *configs, "--out", str(out), f"--data.root={world}"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with (out / "comparison.csv").open() as handle:
            (rows[threads],) = list(csv.DictReader(handle))
    metrics = [key for key in rows[1] if "/" in key]
    assert len(metrics) == 20 and all(rows[1][key] for key in metrics)  # every metric defined in open-partial
    for key in metrics:
        assert abs(float(rows[1][key]) - float(rows[2][key])) <= 0.003, (key, rows[1][key], rows[2][key])
