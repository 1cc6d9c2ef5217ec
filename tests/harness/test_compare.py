"""Every method config end to end through the CLI, the comparison runner, and the refusals of special methods."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from uft.cli import cli_main
from uft.errors import InputError
from uft.harness.compare import compare

from ..conftest import ROOT, demo_args
from ..helpers import assert_evaluation_figures

METHODS = sorted((ROOT / "configs" / "method").glob("*.yaml"))


BASE = str(ROOT / "tests" / "tiny.yaml")


def overrides(data: Path) -> list[str]:
    """demo_args without the config and root dir: what the runner passes to every run."""
    return [a for a in demo_args(data, Path("unused"))[2:] if not a.startswith("--trainer.default_root_dir")]


@pytest.mark.slow
def test_runner_runs_every_method_config_and_writes_tables(shapes_dir, tmp_path):
    extra = [*overrides(shapes_dir), "--trainer.max_epochs=1"]
    rows = compare([BASE], METHODS, tmp_path, extra)
    names = [r.method for r in rows]
    assert sorted(names) == sorted(m.stem for m in METHODS)
    assert names[:2] == ["zeroshot", "zeroshot_ensemble"]  # zero-shot rows first
    for row in rows:
        for split in ("test", "target"):
            assert 0.0 <= row.metrics[split]["pacc"] <= 1.0 and 0.0 <= row.metrics[split]["auroc"] <= 1.0
        trained = (tmp_path / row.method / "checkpoints" / "last.ckpt").is_file()
        assert trained == row.trained == (not row.method.startswith("zeroshot"))
    assert [r.uses_labels for r in rows].count(True) == 1
    markdown = (tmp_path / "comparison.md").read_text()
    assert "ueo_oracle (oracle: uses labels)" in markdown and markdown.count("\n") == len(rows) + 2
    with (tmp_path / "comparison.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["method"] for r in table] == names
    ueo = next(r for r in rows if r.method == "ueo")
    assert float(table[names.index("ueo")]["test/auroc"]) == pytest.approx(ueo.metrics["test"]["auroc"], abs=1e-6)


@pytest.mark.slow
def test_trained_rows_differ_from_zero_shot(shapes_dir, tmp_path):
    """The runner's trained row is the trained model's (its test metrics are not the zero-shot ones)."""
    method_dir = ROOT / "configs" / "method"
    extra = [*overrides(shapes_dir), "--model.prompt_lr=0.5", "--model.visual_lr=0.5"]
    rows = compare([BASE], [method_dir / "ent.yaml", method_dir / "zeroshot.yaml"], tmp_path, extra)
    assert rows[0].metrics != rows[1].metrics


def test_zero_shot_is_what_the_built_model_says_not_what_a_file_says(shapes_dir, tmp_path):
    """An objective switched off on the command line (or in a base config) makes a method zero-shot: tested, not
    trained."""
    extra = [*overrides(shapes_dir), "--model.objective=null"]
    (row,) = compare([BASE], [ROOT / "configs" / "method" / "ueo.yaml"], tmp_path, extra)
    assert not row.trained and not (tmp_path / "ueo" / "checkpoints").exists()
    assert row.metrics["test"]["samples"] == 32


@pytest.mark.slow
def test_rerun_into_the_same_folder_tests_the_new_checkpoint(shapes_dir, tmp_path):
    """A second comparison into the same folder trains afresh and reports its own training, not the first run's
    checkpoint; the folder keeps one last.ckpt."""
    ent = [ROOT / "configs" / "method" / "ent.yaml"]
    slow = compare([BASE], ent, tmp_path, [*overrides(shapes_dir), "--model.prompt_lr=1e-6", "--model.visual_lr=1e-6"])
    fast = compare([BASE], ent, tmp_path, [*overrides(shapes_dir), "--model.prompt_lr=0.5", "--model.visual_lr=0.5"])
    assert [p.name for p in (tmp_path / "ent" / "checkpoints").iterdir()] == ["last.ckpt"]
    assert slow[0].metrics != fast[0].metrics


def test_oracle_refuses_unlabeled_target_data(shapes_dir, tmp_path):
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("\n".join(line.split()[0] for line in (shapes_dir / "target.txt").read_text().splitlines()))
    args = [
        *demo_args(shapes_dir, tmp_path),
        "-c",
        str(ROOT / "configs" / "method" / "ueo_oracle.yaml"),
        f"--data.train_list={unlabeled}",
    ]
    with pytest.raises(InputError, match="UEOOracle reads the labels of the target data"):
        cli_main(["fit", *args])
    assert not list(tmp_path.rglob("*.ckpt"))


def test_zero_shot_configs_refuse_to_train(shapes_dir, tmp_path):
    method_dir = ROOT / "configs" / "method"
    for name in ("zeroshot", "zeroshot_ensemble"):
        with pytest.raises(InputError, match="objective is not set"):
            cli_main(["fit", *demo_args(shapes_dir, tmp_path), "-c", str(method_dir / f"{name}.yaml")])
    templates_and_objective = ["-c", str(method_dir / "zeroshot_ensemble.yaml"), "-c", str(method_dir / "ueo.yaml")]
    with pytest.raises(InputError, match="evaluation-only"):
        cli_main(["fit", *demo_args(shapes_dir, tmp_path), *templates_and_objective])


@pytest.mark.slow
def test_runner_console_is_short_and_draws_one_picture(shapes_dir, tmp_path):
    """The runner as a user runs it: one line per method, then the table; no Lightning banners, tips, summaries
    or per-dataloader columns; a ROC picture of every method that PIL opens."""
    import subprocess
    import sys

    from PIL import Image

    methods = [str(ROOT / "configs" / "method" / f"{m}.yaml") for m in ("zeroshot", "ueo", "im")]
    cmd = [sys.executable, "-m", "uft.harness.compare", "-c", BASE, "--out", str(tmp_path), "--methods", *methods]
    proc = subprocess.run(
        [*cmd, *overrides(shapes_dir), "--trainer.max_epochs=1"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = (proc.stdout + proc.stderr).splitlines()
    assert len(output) <= 60, "\n".join(output)
    for noise in ("DataLoader 1", "DataLoader 0", "Tip:", "GPU available", "| Name", "Test metric", "Traceback"):
        assert not any(noise in line for line in output), noise
    assert sum(line.startswith("uft compare: ") for line in output) == 3
    with Image.open(tmp_path / "roc_test.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > 200
    for method in ("zeroshot", "ueo"):
        (figures,) = (tmp_path / method).rglob("figures")
        assert_evaluation_figures(figures)
