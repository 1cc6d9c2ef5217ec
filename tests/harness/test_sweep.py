"""The benchmark sweep on a generated Office-Home tree with the tiny CLIP: runs, skips finished runs, gathers."""

from __future__ import annotations

import csv
import json

import pytest

from uft.data.check import check
from uft.harness.sweep import main, plan, slurm_script

from ..data.builders import fake_tree

TINY = [
    "--model.model_name=uft-tiny-vit",
    "--model.pretrained=null",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.max_epochs=1",
    "--data.batch_size=16",
    "--data.eval_batch_size=64",
    "--data.num_workers=0",
]


@pytest.mark.slow
def test_sweep_runs_domains_settings_methods_then_skips_and_gathers(tmp_path, capsys):
    root = fake_tree(tmp_path / "officehome", "officehome", per_class=2)
    check("officehome", root, verify=False)
    out = tmp_path / "sweep"
    args = ["officehome", str(root), "--out", str(out), "--domains", "Art", "Clipart"]
    args += ["--settings", "closed", "open", "--methods", "zeroshot", "ent", *TINY]
    main(args)
    results = sorted(out.rglob("result.json"))
    assert len(results) == 2 * 2 * 2
    first = json.loads((out / "Art" / "open" / "ent" / "result.json").read_text())
    assert first["metrics"]["test"]["samples"] == 2 * 65  # the paper protocol: the whole domain, every class
    with open(out / "runs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and {r["domain"] for r in rows} == {"Art", "Clipart"}
    table = (out / "table.md").read_text().splitlines()
    assert table[0].startswith("| method | closed PACC | closed AUROC | closed HM | open PACC")
    assert [line.split(" | ")[0] for line in table[2:]] == ["| zeroshot", "| ent"]
    art = [float(r["test/pacc"]) for r in rows if r["method"] == "ent" and r["setting"] == "closed"]
    assert f"{100 * sum(art) / 2:.1f}" in table[3]

    stamps = {p: p.stat().st_mtime_ns for p in results}
    capsys.readouterr()
    main(args)  # everything finished: nothing runs again
    assert {p: p.stat().st_mtime_ns for p in results} == stamps
    assert "uft compare:" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "99"], "--only 99: the plan has 8 runs, indices 0 to 7"),
        (["--only", "-1"], "--only -1: the plan has 8 runs, indices 0 to 7"),  # not the last run
        (["--only", "x"], "argument --only: invalid int value: 'x'"),
        (["--only", "0", "--slurm"], "--slurm writes one task per index of the plan; leave out --only"),
        (["--methods", "ueo", "ueoo", "--slurm"], "unknown method 'ueoo': expected names in "),
        (["--domains", "Art", "Artt", "--slurm"], "unknown domain 'Artt' of officehome: expected one of Art, Clipart,"),
        (["--domains", "Art", "art", "--slurm"], "--domains names Art more than once"),
        (["--settings", "closed", "shut", "--slurm"], "argument --settings: invalid choice: 'shut'"),
        (
            ["--model.objective.class_path=uft.objectives.UEOO", "--slurm"],
            "method zeroshot (",  # every run's configuration is parsed before a task exists
        ),
    ],
)
def test_sweep_refuses_bad_input_in_one_line_before_running_or_writing_a_script(tmp_path, capsys, args, message):
    base = ["officehome", str(tmp_path), "--out", str(tmp_path / "out"), "--domains", "Art", "Clipart"]
    with pytest.raises(SystemExit) as stop:
        main([*base, "--settings", "closed", "open", "--methods", "zeroshot", "ueo", *args])
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1, captured.err
    assert captured.err.startswith("uft: error: ") and message in captured.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["officehom", "data", "--out", "out"], "argument dataset: invalid choice: 'officehom' (choose from"),
        (["officehome", "missing", "--out", "out"], "dataset root not found: missing"),
        (["officehome", "."], "the following arguments are required: --out"),
        (["officehome", ".", "--out", "taken.txt"], "--out taken.txt is a file: pass a folder"),
    ],
)
def test_sweep_refuses_a_bad_dataset_root_or_out_in_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.txt").write_text("mine\n")
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"uft: error: {message}")
    assert (tmp_path / "taken.txt").read_text() == "mine\n"


def test_sweep_runs_from_any_folder(tmp_path, monkeypatch):
    """Configs and class names are the checkout's; the dataset and --out are the user's, relative to the current
    folder."""
    fake_tree(tmp_path / "officehome", "officehome")
    check("officehome", tmp_path / "officehome", verify=False)
    monkeypatch.chdir(tmp_path)
    main(
        ["officehome", "officehome", "--out", "sweep", "--domains", "real_world", "--settings", "open"]
        + ["--methods", "zeroshot", "--only", "0", *TINY]
    )
    result = json.loads((tmp_path / "sweep" / "Real_World" / "open" / "zeroshot" / "result.json").read_text())
    assert result["domain"] == "Real World" and result["metrics"]["test"]["samples"] == 65


def test_slurm_script_has_one_task_per_run():
    runs = plan("officehome", ["Art", "Clipart"], ["closed", "open"], ["zeroshot", "ueo", "im"])
    assert len(runs) == 12
    assert runs[0] == ("Art", "closed", "zeroshot", None)
    assert runs[-1] == ("Clipart", "open", "im", None)
    script = slurm_script(["officehome", "/data/oh", "--out", "runs/s"], len(runs))
    assert "#SBATCH --array=0-11" in script
    assert (
        '--only "$SLURM_ARRAY_TASK_ID"' in script and "-m uft.harness.sweep officehome /data/oh --out runs/s" in script
    )


@pytest.mark.slow
def test_sweep_over_a_grid_runs_each_point_zero_shot_once_and_reports_the_selection(tmp_path, capsys):
    root = fake_tree(tmp_path / "officehome", "officehome", per_class=2)
    check("officehome", root, verify=False)
    out = tmp_path / "sweep"
    args = ["officehome", str(root), "--out", str(out), "--domains", "Art", "--settings", "open"]
    args += ["--methods", "zeroshot", "ent", "--grid", "model.prompt_lr=0.001,0.5", *TINY]
    main(args)
    results = sorted(str(p.relative_to(out / "Art" / "open")) for p in out.rglob("result.json"))
    assert results == [
        "prompt_lr=0.001/ent/result.json",
        "prompt_lr=0.001/zeroshot/result.json",
        "prompt_lr=0.5/ent/result.json",
    ]
    with open(out / "runs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["point"]) for r in rows] == [
        ("zeroshot", "prompt_lr=0.001"),
        ("ent", "prompt_lr=0.001"),
        ("ent", "prompt_lr=0.5"),
    ]
    assert all(r["selection/snd"] for r in rows) and rows[1]["selection/entropy"] != rows[2]["selection/entropy"]
    table = (out / "table.md").read_text()
    assert "| ent [prompt_lr=0.5] |" in table and table.count("| zeroshot") == 1
    assert (out / "selection.md").read_text().startswith("**ent, Art, open** (2 runs)")
    assert "selection.md" in capsys.readouterr().out


def test_a_grid_multiplies_the_plan():
    from uft.harness.grid import parse_grid

    runs = plan("officehome", ["Art"], ["closed", "open"], ["ueo"], parse_grid(["model.prompt_lr=1,2,3"]))
    assert len(runs) == 6 and [r[3].name for r in runs[:3]] == ["prompt_lr=1", "prompt_lr=2", "prompt_lr=3"]
