"""Grids of runs and label-free model selection over them (uft.harness.grid; the runner's --grid)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from scipy.stats import spearmanr

from uft.errors import InputError
from uft.harness import compare as runner
from uft.harness.compare import Row, main
from uft.harness.grid import Candidate, GridPoint, method_selection, parse_grid, pick, selection_report, spearman

from ..args import ROOT
from .test_compare import BASE, overrides

METHOD = ROOT / "configs" / "method"


def test_a_grid_is_the_product_of_its_axes_in_the_given_order():
    points = parse_grid(["model.prompt_lr=0.01,0.1", "--model.visual_lr=1e-3, 1e-2 ,3e-2"])
    assert len(points) == 6
    assert points[0].args == ["--model.prompt_lr=0.01", "--model.visual_lr=1e-3"]
    assert points[1].name == "prompt_lr=0.01,visual_lr=1e-2" and points[-1].name == "prompt_lr=0.1,visual_lr=3e-2"
    assert len({p.folder for p in points}) == 6 and all("/" not in p.folder for p in points)
    assert GridPoint((("data.root", "/a/b"),)).folder == "root=_a_b"
    assert parse_grid(None) == parse_grid([]) == []


@pytest.mark.parametrize(
    ("specs", "fragment"),
    [
        (["model.prompt_lr"], "expected KEY=V1,V2"),
        (["model.prompt_lr=0.1,"], "expected KEY=V1,V2"),
        (["=0.1"], "expected KEY=V1,V2"),
        (["model.prompt_lr=0.1", "model.prompt_lr=0.2"], "gives model.prompt_lr twice"),
        (["model.prompt_lr=0.1,0.1"], "repeats a value"),
        (["data.root=/a/b,_a_b"], "two runs would share a folder"),
    ],
)
def test_a_bad_grid_is_one_message(specs, fragment):
    with pytest.raises(InputError, match=fragment):
        parse_grid(specs)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([0.1, 0.4, 0.2, 0.9, 0.5], [1.0, 3.0, 2.0, 5.0, 4.0]),
        ([1.0, 1.0, 2.0, 3.0, 3.0, 0.5], [0.2, 0.1, 0.4, 0.3, 0.9, 0.0]),  # ties on one side
        ([3.0, 1.0, 2.0, 2.0], [1.0, 2.0, 2.0, 3.0]),  # ties on both
    ],
)
def test_spearman_matches_scipy(x, y):
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_is_undefined_for_a_constant_side_or_two_pairs():
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(spearman([1.0, 2.0], [1.0, 2.0]))


def _candidates() -> list[Candidate]:
    """Four runs whose test HM order is d > b > c > a; entropy (lower is better) agrees exactly, snd (higher is
    better) is reversed, the objective is missing on one run."""
    table = {
        "a": (0.50, 0.9, 1.0, None),
        "b": (0.70, 0.3, 3.0, 0.2),
        "c": (0.60, 0.5, 2.0, 0.1),
        "d": (0.80, 0.1, 0.5, 0.4),
    }
    return [
        Candidate("ueo", point, {"entropy": e, "snd": s, "objective": o}, {"pacc": hm + 0.05, "auroc": hm, "hm": hm})
        for point, (hm, e, s, o) in table.items()
    ]


def test_each_criterion_picks_in_its_direction_and_is_judged_against_test_hm():
    candidates = _candidates()
    assert pick(candidates, "entropy").point == "d"  # the lowest entropy
    assert pick(candidates, "snd").point == "b"  # the highest density
    assert pick(candidates, "objective").point == "c"  # the lowest of the three runs that have one
    assert pick(candidates, "im") is None  # no run logged it
    rows = {row["choice"]: row for row in method_selection(candidates)}
    assert set(rows) == {"objective", "entropy", "snd", "best test hm (labels)", "median of the grid"}
    assert rows["entropy"]["rho"] == pytest.approx(1.0) and rows["entropy"]["hm_lost"] == pytest.approx(0.0)
    hm = [c.test["hm"] for c in candidates]
    assert rows["snd"]["rho"] == pytest.approx(spearmanr([1.0, 3.0, 2.0, 0.5], hm).statistic)
    assert rows["snd"]["hm_lost"] == pytest.approx(0.10)
    assert rows["objective"]["rho"] == pytest.approx(spearmanr([-0.2, -0.1, -0.4], [0.7, 0.6, 0.8]).statistic)
    assert rows["best test hm (labels)"]["point"] == "d"
    assert rows["median of the grid"]["hm"] == pytest.approx(0.65)
    report = selection_report(candidates)
    assert report.startswith("**ueo** (4 runs)") and "| entropy | d | 85.0 | 80.0 | 80.0 | +1.00 | 0.0 |" in report


def _grid_run(base, method, out, extra, seed=None):
    """A run whose criteria and test HM follow its prompt rate (a method without objective: zero-shot)."""
    rate = next((float(a.partition("=")[2]) for a in extra if a.startswith("--model.prompt_lr=")), 0.0)
    trained = method.stem != "zeroshot"
    metrics = {"test": {"hm": 0.5 + rate}, "selection": {"entropy": 1.0 - rate, "snd": rate, "objective": -rate}}
    (out / method.stem).mkdir(parents=True)
    return Row(method.stem, False, metrics, out / method.stem, trained=trained)


def test_the_runner_runs_a_method_per_point_and_zero_shot_once(shapes_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "run_method", _grid_run)
    out = tmp_path / "out"
    methods = [str(METHOD / "zeroshot.yaml"), str(METHOD / "ueo.yaml"), str(METHOD / "im.yaml")]
    grid = ["--grid", "model.prompt_lr=0.1,0.3", "--grid", "model.visual_lr=1,2"]
    main(["-c", BASE, "--out", str(out), "--methods", *methods, *grid, *overrides(shapes_dir)])
    folders = sorted(str(p.relative_to(out)) for p in out.glob("*/*") if p.is_dir())
    points = ["prompt_lr=0.1,visual_lr=1", "prompt_lr=0.1,visual_lr=2", "prompt_lr=0.3,visual_lr=1"]
    points.append("prompt_lr=0.3,visual_lr=2")
    assert folders == sorted([f"{points[0]}/zeroshot", *(f"{p}/{m}" for p in points for m in ("ueo", "im"))])
    with (out / "selection.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [(r["method"], r["point"]) for r in table] == [(m, p) for m in ("ueo", "im") for p in points]
    assert float(table[2]["selection/entropy"]) == pytest.approx(0.7) and float(table[2]["test/hm"]) == 0.8
    report = (out / "selection.md").read_text()
    assert report.count("(4 runs)") == 2 and "zeroshot" not in report
    assert f"| entropy | {points[2]} |" in report  # the first of two equally good runs
    assert "| ueo [prompt_lr=0.1,visual_lr=1] |" in (out / "comparison.md").read_text()
    assert "written: " in capsys.readouterr().out


def test_the_runner_refuses_a_grid_with_seeds_in_one_line(shapes_dir, tmp_path, capsys):
    args = ["--methods", str(METHOD / "ueo.yaml"), "--grid", "model.prompt_lr=0.1,0.2", "--seeds", "0", "1"]
    with pytest.raises(SystemExit):
        main(["-c", BASE, "--out", str(tmp_path / "out"), *args, *overrides(shapes_dir)])
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith("uft: error: --grid and --seeds") and not (tmp_path / "out").exists()


def test_a_grid_value_that_the_config_refuses_stops_the_runner_before_any_run(shapes_dir, tmp_path, capsys):
    args = ["--methods", str(METHOD / "ueo.yaml"), "--grid", "model.tune=both,sideways"]
    with pytest.raises(SystemExit):
        main(["-c", BASE, "--out", str(tmp_path / "out"), *args, *overrides(shapes_dir)])
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith("uft: error: method ueo") and "sideways" in err
    assert not list(Path(tmp_path / "out").glob("*/*"))


def test_a_real_grid_logs_the_criteria_of_each_trained_run(shapes_dir, tmp_path):
    """Two UEO runs at different rates: each row holds the criteria of its own final model, the objective included
    (the confidence table comes back with the checkpoint that the runner tests)."""
    rows = runner.compare(
        [BASE],
        [METHOD / "ueo.yaml"],
        tmp_path,
        [*overrides(shapes_dir), "--trainer.max_epochs=1"],
        grid=parse_grid(["model.prompt_lr=0.001,0.5"]),
    )
    assert [r.point for r in rows] == ["prompt_lr=0.001", "prompt_lr=0.5"]
    for row in rows:
        assert all(row.metrics["selection"][n] is not None for n in ("objective", "entropy", "im", "snd"))
    assert abs(rows[0].metrics["selection"]["entropy"] - rows[1].metrics["selection"]["entropy"]) > 1e-3
    assert (tmp_path / "selection.md").read_text().startswith("**ueo** (2 runs)")
