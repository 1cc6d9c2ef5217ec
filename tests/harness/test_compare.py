"""Every method config end to end through the CLI, the comparison runner, and the refusals of special methods."""

from __future__ import annotations

import csv
import errno
import os
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch

from uft.cli import cli_main
from uft.errors import InputError
from uft.harness import compare as runner
from uft.harness.compare import (
    Row,
    columns,
    compare,
    csv_columns,
    difference_table,
    main,
    markdown_table,
    seed_table,
    spread_table,
    write_csv,
)
from uft.harness.spread import difference_cell, mean, paired_differences, positive_count, spread_cell
from uft.metrics import EXTRA_NAMES

from ..args import ROOT, TINY, demo_args
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
    for name in ("roc_test.png", "per_class_changes_test.png"):
        with Image.open(tmp_path / name) as picture:
            assert picture.format == "PNG" and picture.size[0] > 200
    for method in ("zeroshot", "ueo"):
        (figures,) = (tmp_path / method).rglob("figures")
        assert_evaluation_figures(figures)


# --- several training seeds --------------------------------------------------------------------------------------


def cells(table: str, *first: str) -> dict[str, str]:
    """The cells of the Markdown table row whose first cells are ``first``, by column head."""
    lines = table.splitlines()
    head = lines[0].strip("| ").split(" | ")
    body = [line.strip("| ").split(" | ") for line in lines[2:]]
    (row,) = [row for row in body if row[: len(first)] == [*first]]
    return dict(zip(head, row, strict=True))


def test_spread_over_seeds_mean_sample_std_paired_differences_and_positive_counts():
    assert mean([0.5, None, 0.7]) == pytest.approx(0.6) and mean([None]) is None
    assert spread_cell([0.5, 0.6, 0.7]) == "60.0 ± 10.0"  # sample std (n - 1): the population one is 8.2
    assert spread_cell([0.5, None, 0.7]) == "60.0 ± 14.1 (n=2)"  # undefined in one seed: left out, and said
    assert spread_cell([0.42]) == "42.0" and spread_cell([None, None]) == "n/a"
    assert paired_differences([0.6, 0.7, None], [0.5, 0.72, 0.4]) == pytest.approx([0.1, -0.02])
    assert positive_count([0.1, -0.02, 0.0]) == 1  # a tie is not an improvement
    assert difference_cell([0.12, 0.10, 0.14]) == "+12.0 ± 2.0 (3/3)"
    assert difference_cell([-0.05]) == "-5.0 (0/1)" and difference_cell([]) == "n/a"
    assert difference_cell([0.083, -0.083 - 1e-12]) == "+0.0 ± 11.7 (1/2)"  # no "-0.0" from rounding
    with pytest.raises(ValueError, match="one reference per seed"):
        paired_differences([0.1, 0.2], [0.1])

    def row(method: str, seed: int | None, pacc: float, fpr95: float | None, **kwargs) -> Row:
        return Row(method, False, {"test": {"pacc": pacc, "fpr95": fpr95}}, seed=seed, **kwargs)

    zero_shot = row("zeroshot", None, 0.40, 0.50, trained=False, seed_free=True)
    ueo = [row("ueo", s, p, f) for s, p, f in [(0, 0.50, 0.40), (1, 0.54, 0.30), (2, 0.52, 0.35)]]
    im = [row("im", s, p, f) for s, p, f in [(0, 0.48, 0.45), (1, 0.55, None), (2, 0.50, 0.32)]]
    rows = [zero_shot, *ueo, *im]

    spread = spread_table(rows)
    assert cells(spread, "zeroshot")["test PACC"] == "40.0"  # one run stands for every seed: no spread
    assert cells(spread, "ueo")["test PACC"] == "52.0 ± 2.0" and cells(spread, "ueo")["test FPR95"] == "35.0 ± 5.0"
    assert cells(spread, "im")["test FPR95"] == "38.5 ± 9.2 (n=2)" and cells(spread, "im")["target PACC"] == "n/a"
    per_seed = seed_table(rows)
    assert len(per_seed.splitlines()) == 2 + 7 and cells(per_seed, "zeroshot", "any")["test PACC"] == "40.0"
    assert cells(per_seed, "im", "1")["test FPR95"] == "n/a"

    differences = difference_table(rows)
    pairs = [line.strip("| ").split(" | ")[:2] for line in differences.splitlines()[2:]]
    # never a method minus itself, and zero-shot is not paired: it is not trained
    assert pairs == [["ueo", "zeroshot"], ["im", "zeroshot"], ["im", "ueo"]]
    assert cells(differences, "ueo", "zeroshot")["test PACC"] == "+12.0 ± 2.0 (3/3)"
    assert cells(differences, "ueo", "zeroshot")["test FPR95"] == "-15.0 ± 5.0 (0/3)"  # positive: higher FPR95
    assert cells(differences, "im", "ueo")["test PACC"] == "-1.0 ± 1.7 (1/3)"  # -2, +1, -2: paired seed by seed
    assert cells(differences, "im", "ueo")["test FPR95"] == "+1.0 ± 5.7 (1/2)"  # seed 1 undefined for im
    assert difference_table([zero_shot]) == ""


def test_csv_adds_calibration_and_extra_detection_metrics_after_the_table_columns(tmp_path):
    """comparison.csv: the tables' columns first (unchanged positions), then ECE, NLL, OSCR and the AUPRs of the same
    splits, raw (the NLL in nats), empty where undefined; the Markdown table keeps the five main metrics."""
    values = {"pacc": 0.5, "ece": 0.1234567, "nll": 2.5, "oscr": 0.4, "aupr_in": None}
    rows = [Row("ueo", False, {"test": values, "target": values})]
    extra = [(split, metric) for split in ("test", "target") for metric in EXTRA_NAMES]
    assert csv_columns(rows) == [*columns(rows), *extra]
    write_csv(rows, tmp_path / "comparison.csv")
    with (tmp_path / "comparison.csv").open() as handle:
        (line,) = csv.DictReader(handle)
    assert list(line) == ["method", "uses_labels", *(f"{split}/{metric}" for split, metric in csv_columns(rows))]
    assert line["test/ece"] == "0.123457" and line["target/nll"] == "2.500000" and line["test/oscr"] == "0.400000"
    assert line["test/aupr_in"] == "" and line["target/aupr_out"] == ""
    assert not any(name.upper() in markdown_table(rows) for name in EXTRA_NAMES)
    # A stream's comparison: the extra metrics of its splits too.
    stream = [Row("ueo", False, {"online": values, "online.a": values, "test": values})]
    assert csv_columns(stream)[len(columns(stream)) :] == [
        (split, metric) for split in ("online", "online.a", "test") for metric in EXTRA_NAMES
    ]


def test_seeds_of_zero_shot_on_random_weights_run_per_seed(shapes_dir, tmp_path):
    """Random weights (pretrained empty) are the seed's draw, so even zero-shot depends on the seed; --seeds with
    a --seed_everything of its own is refused before anything runs."""
    zero_shot = [ROOT / "configs" / "method" / "zeroshot.yaml"]
    rows = compare([BASE], zero_shot, tmp_path, overrides(shapes_dir), seeds=[0, 1])
    assert [(r.seed, r.seed_free, r.trained) for r in rows] == [(0, False, False), (1, False, False)]
    assert all((tmp_path / f"seed{s}" / "zeroshot").is_dir() for s in (0, 1))
    with pytest.raises(InputError, match="pass one or the other"):
        compare([BASE], zero_shot, tmp_path / "refused", ["--seed_everything=3"], seeds=[0, 1])
    assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_runner_over_seeds_trains_each_seed_and_tests_zero_shot_once(shapes_dir, tmp_path):
    """Two training seeds on loaded weights: two trained runs per method whose parameters differ (the seed reached
    the run), one zero-shot run standing for both, and the three tables and the per-(method, seed) CSV."""
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model(TINY).state_dict(), weights)
    methods = [ROOT / "configs" / "method" / f"{m}.yaml" for m in ("zeroshot", "ueo", "im")]
    extra = [*overrides(shapes_dir), "--trainer.max_epochs=1", f"--model.pretrained={weights}"]
    out = tmp_path / "out"
    rows = compare([BASE], methods, out, extra, seeds=[0, 1])
    assert [(r.method, r.seed) for r in rows] == [("zeroshot", None), ("ueo", 0), ("ueo", 1), ("im", 0), ("im", 1)]
    assert rows[0].seed_free and not (out / "seed1" / "zeroshot").exists()
    for method in ("ueo", "im"):
        first, second = (
            torch.load(out / f"seed{s}" / method / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
            for s in (0, 1)
        )
        assert first.keys() == second.keys()
        assert any(not torch.equal(first[k], second[k]) for k in first), method
    markdown = (out / "comparison.md").read_text()
    for section in ("## Mean ± standard deviation over seeds", "## Per seed", "## Paired differences"):
        assert section in markdown
    assert "zeroshot: no training on loaded weights, run once" in markdown
    assert "| ueo | zeroshot |" in markdown and "| im | ueo |" in markdown and "| ueo | ueo |" not in markdown
    with (out / "comparison.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [(r["method"], r["seed"]) for r in table] == [
        ("zeroshot", ""),
        ("ueo", "0"),
        ("ueo", "1"),
        ("im", "0"),
        ("im", "1"),
    ]
    assert all((out / f"seed{s}" / "roc_test.png").is_file() for s in (0, 1))


# --- refused before the first run, in one line ---------------------------------------------------------------------

METHOD = ROOT / "configs" / "method"


def _case_class_path_typo(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  objective:\n    class_path: uft.objectives.UEOO\n")
    return ["--methods", str(METHOD / "zeroshot.yaml"), str(typo)], [
        f"method typo ({typo}): model.objective: uft.objectives.UEOO does not exist; did you mean uft.objectives.UEO"
    ]


def _case_yaml_syntax(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  objective: [null\n")
    return ["--methods", str(METHOD / "zeroshot.yaml"), str(broken)], [f"method broken: {broken}:3:"]


def _case_tab_in_a_base_config(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("trainer:\n\tmax_epochs: 1\n")
    # the base config's own mistake: no method is named
    return ["-c", str(base), "--methods", str(METHOD / "zeroshot.yaml")], [f"error: {base}:2:1: a tab (YAML indents"]


def _case_missing_method_file(tmp_path):
    return ["--methods", str(METHOD / "zeroshot.yaml"), "nope.yaml"], ["config file not found: nope.yaml"]


def _case_two_methods_one_name(tmp_path):
    copy = tmp_path / "ueo.yaml"
    copy.write_text((METHOD / "ueo.yaml").read_text())
    return ["--methods", str(METHOD / "ueo.yaml"), str(copy)], [f"methods {METHOD / 'ueo.yaml'} and {copy} have one"]


def _case_out_is_a_file(tmp_path):
    (tmp_path / "out").write_text("mine\n")
    return ["--methods", str(METHOD / "zeroshot.yaml")], [f"--out {tmp_path / 'out'} is a file"]


def _case_no_methods(tmp_path):
    return [], ["the following arguments are required: --methods"]


def _case_seeds_repeated(tmp_path):
    return ["--methods", str(METHOD / "ueo.yaml"), "--seeds", "1", "1"], ["--seeds needs distinct seeds, got [1, 1]"]


def _case_seeds_not_a_number(tmp_path):
    return ["--methods", str(METHOD / "ueo.yaml"), "--seeds", "one"], ["argument --seeds: invalid int value: 'one'"]


@pytest.mark.parametrize(
    "case",
    [
        _case_class_path_typo,
        _case_yaml_syntax,
        _case_tab_in_a_base_config,
        _case_missing_method_file,
        _case_two_methods_one_name,
        _case_out_is_a_file,
        _case_no_methods,
        _case_seeds_repeated,
        _case_seeds_not_a_number,
    ],
    ids=lambda f: f.__name__[len("_case_") :],
)
def test_runner_refuses_bad_input_in_one_line_before_the_first_run(shapes_dir, tmp_path, capsys, case):
    """Every method is checked first: a bad one, even the last, ends the runner with one line naming it before the
    methods ahead of it have run; nothing is written (an --out file stays as it was)."""
    args, fragments = case(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as stop:
        main(["-c", BASE, "--out", str(tmp_path / "out"), *args, *overrides(shapes_dir)])
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1, captured.err
    assert captured.err.startswith("uft: error: ")
    for fragment in fragments:
        assert fragment in captured.err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def _fake_run(base, method, out, extra, seed=None):
    """A method's row without training or testing: the tables are what these tests write."""
    return Row(method.stem, False, {"test": {"pacc": 0.5}}, trained=method.stem != "zeroshot", seed=seed)


def _full_disk(real_open):
    """``Path.open`` on a disk that fills up: a file opened for writing takes half of what is written, then fails."""

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def opened(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return Full(handle) if "w" in mode else handle

    return opened


def _read_only(real_open):
    """``Path.open`` in a read-only folder: opening a file for writing fails (root ignores chmod, so it is faked)."""

    def opened(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, mode, *args, **kwargs)

    return opened


@pytest.mark.parametrize(
    ("fault", "reason"), [(_full_disk, "No space left on device"), (_read_only, "Read-only")], ids=["full", "read-only"]
)
def test_tables_are_written_whole_or_not_at_all(shapes_dir, tmp_path, capsys, monkeypatch, fault, reason):
    """A table that cannot be written is one line naming it; no half-written file is left, and the earlier
    comparison's table stays as it was."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "comparison.md").write_text("an earlier comparison\n")
    monkeypatch.setattr(runner, "run_method", _fake_run)
    monkeypatch.setattr(Path, "open", fault(Path.open))
    methods = [str(METHOD / "zeroshot.yaml"), str(METHOD / "ueo.yaml")]
    with pytest.raises(SystemExit) as stop:
        main(["-c", BASE, "--out", str(out), "--methods", *methods, *overrides(shapes_dir)])
    assert stop.value.code == 2
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith(f"uft: error: cannot write {out / 'comparison.md'}: ") and reason in err
    assert sorted(p.name for p in out.iterdir()) == ["comparison.md"]  # no temporary file, no comparison.csv
    assert (out / "comparison.md").read_text() == "an earlier comparison\n"
    monkeypatch.undo()
    monkeypatch.setattr(runner, "run_method", _fake_run)
    main(["-c", BASE, "--out", str(out), "--methods", *methods, *overrides(shapes_dir)])
    assert "| zeroshot | " in (out / "comparison.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["comparison.csv", "comparison.md"]


@pytest.mark.slow
def test_runner_as_a_program_checks_the_last_method_before_running_the_first(shapes_dir, tmp_path):
    """``python -m uft.harness.compare`` with a mistyped class path in its last method: one line, exit status 2, no
    traceback, and the first method never ran."""
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  objective:\n    class_path: uft.objectives.UEOO\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "uft.harness.compare", "-c", BASE, "--out", str(out)]
    cmd += ["--methods", str(METHOD / "zeroshot.yaml"), str(typo), *overrides(shapes_dir)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"uft: error: method typo ({typo}): model.objective: uft.objectives.UEOO does not exist; did you mean "
        "uft.objectives.UEO or uft.objectives.UEOOracle?"
    ]
    assert proc.stdout == "" and not out.exists()


# --- the per-class picture -----------------------------------------------------------------------------------------

CLASSES = [f"class{c:02d}" for c in range(14)]


def _scored_run(base, method, out, extra, seed=None):
    """A method's row whose run folder holds a scores.pt as a run writes it: the test split of 14 known classes (and
    unknowns), zero-shot right on a third of its images, a trained method on a share its name and seed set."""
    gen = torch.Generator().manual_seed(len(method.stem) + 100 * (seed or 0))
    labels = torch.randint(0, len(CLASSES) + 2, (150,), generator=gen)
    right = torch.rand(150, generator=gen) < (0.33 if method.stem == "zeroshot" else 0.6)
    preds = torch.where(right, labels, torch.randint(0, len(CLASSES), (150,), generator=gen)).clamp(max=13)
    test = {"ood": torch.rand(150, generator=gen), "preds": preds, "labels": labels, "threshold": 0.5}
    log_dir = out / method.stem
    log_dir.mkdir(parents=True, exist_ok=True)
    saved = {"num_known": len(CLASSES), "class_names": CLASSES, "splits": {"test": test}}
    torch.save(saved, log_dir / "scores.pt")
    trained = method.stem != "zeroshot"
    return Row(method.stem, False, {"test": {"pacc": 0.5}}, log_dir, trained=trained, seed=seed)


def _drawn(monkeypatch) -> list[dict]:
    """Records the panels the runner gives the picture of the recall changes."""
    import uft.figures

    panels, draw = [], uft.figures.recall_changes_figure

    def record(changes, title):
        panels.append(changes)
        return draw(changes, title)

    monkeypatch.setattr(uft.figures, "recall_changes_figure", record)
    return panels


def _changes_by_hand(before: Path, after: Path, limit: int = 10) -> list[str]:
    """The names of the classes whose test recall changed most from ``before`` to ``after`` (scores.pt files), by
    decreasing size of the change, then class id, computed sample by sample."""

    def recalls(path: Path) -> list:
        test = torch.load(path, weights_only=True)["splits"]["test"]
        preds, labels = test["preds"].tolist(), test["labels"].tolist()
        return [
            sum(p == c for p, y in zip(preds, labels) if y == c) / n if (n := labels.count(c)) else None
            for c in range(len(CLASSES))
        ]

    old, new = recalls(before), recalls(after)
    changed = [(c, new[c] - old[c]) for c in range(len(CLASSES)) if None not in (old[c], new[c]) and old[c] != new[c]]
    changed.sort(key=lambda item: (-abs(item[1]), item[0]))
    return [CLASSES[c] for c, _ in changed[:limit]]


@pytest.mark.parametrize("seeds", [None, [0, 1]], ids=["one-run", "seeds"])
def test_runner_draws_the_largest_per_class_recall_changes_against_zero_shot(shapes_dir, tmp_path, monkeypatch, seeds):
    """per_class_changes_test.png beside roc_test.png (in each seed's folder with seeds): a panel per trained method,
    each with the ten classes whose test recall changed most against zero-shot, as a sample by sample computation
    finds them; without a zero-shot row, no picture."""
    from PIL import Image

    monkeypatch.setattr(runner, "run_method", _scored_run)
    panels = _drawn(monkeypatch)
    methods = [METHOD / f"{m}.yaml" for m in ("ueo", "zeroshot", "im")]
    compare([BASE], methods, tmp_path, overrides(shapes_dir), seeds)
    folders = [tmp_path] if seeds is None else [tmp_path / f"seed{s}" for s in seeds]
    assert len(panels) == len(folders)
    for folder, drawn in zip(folders, panels):
        with Image.open(folder / "per_class_changes_test.png") as picture:
            assert picture.format == "PNG" and picture.size[0] > 600
        assert list(drawn) == ["ueo - zeroshot", "im - zeroshot"]
        for method in ("ueo", "im"):
            names = [name for name, _ in drawn[f"{method} - zeroshot"]]
            assert names == _changes_by_hand(folder / "zeroshot" / "scores.pt", folder / method / "scores.pt")
            assert len(names) == 10
    only_trained = tmp_path / "only-trained"
    compare([BASE], [METHOD / "ueo.yaml"], only_trained, overrides(shapes_dir))
    assert (only_trained / "ueo" / "scores.pt").is_file() and not (only_trained / "per_class_changes_test.png").exists()
