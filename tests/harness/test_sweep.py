"""The benchmark sweep on a generated Office-Home tree with the tiny CLIP: runs, skips finished runs, gathers."""

from __future__ import annotations

import csv
import json

import pytest

from uft.data.check import check
from uft.harness.sweep import main, plan, slurm_script

from ..data.test_data_check import fake_tree

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


def test_slurm_script_has_one_task_per_run():
    runs = plan("officehome", ["Art", "Clipart"], ["closed", "open"], ["zeroshot", "ueo", "im"])
    assert len(runs) == 12 and runs[0] == ("Art", "closed", "zeroshot") and runs[-1] == ("Clipart", "open", "im")
    script = slurm_script(["officehome", "/data/oh", "--out", "runs/s"], len(runs))
    assert "#SBATCH --array=0-11" in script
    assert (
        '--only "$SLURM_ARRAY_TASK_ID"' in script and "-m uft.harness.sweep officehome /data/oh --out runs/s" in script
    )
