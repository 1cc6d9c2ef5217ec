"""Comparison runner: several methods on one data config, with the same seed and budget, in one table.

Each method config is an overlay (``configs/method/*.yaml``) added to the base config(s). Each method's CLI is built
once; a method with an objective is trained (``trainer.fit``) and then its last checkpoint is tested
(``trainer.test`` on the checkpoint that fit wrote), so each row holds the final model's metrics, never the best
epoch's; a method without one (zero-shot) is only tested. Zero-shot rows come first. Writes ``comparison.md``,
``comparison.csv`` (the same columns, then ECE, NLL, OSCR and AUPR) and ``roc_test.png`` (every method's ROC curve on
the test split in one picture) into ``--out``::

    python -m uft.harness.compare -c configs/demo.yaml --out runs/compare \\
        --methods configs/method/zeroshot.yaml configs/method/ueo.yaml configs/method/ent.yaml

With ``--seeds 0 1 2`` every method is trained once per training seed (``--seed_everything=S``; the data, and a
data recipe's own seed, stay as configured) into ``OUT/seed<S>/<method>/``. A method without an objective on loaded
weights (zero-shot, zero-shot ensemble) draws nothing at random, so the seed cannot change it: it is tested once
(in the first seed's folder) and its row stands for every seed; on random weights (``pretrained`` empty, as the
tests' tiny CLIP) the seed draws the backbone and it runs per seed. ``comparison.md`` then holds the mean ±
sample standard deviation over the seeds, the per-seed table, and each trained method's paired difference per
seed to zero-shot and to UEO (method minus reference, so positive is better except for FPR95; statistics in
:mod:`uft.harness.spread`); ``comparison.csv`` has a row per method and seed (a ``seed`` column, empty for a row
that stands for every seed) and each ``OUT/seed<S>/`` a ``roc_test.png``. The console shows the mean ± std and the
paired tables::

    python -m uft.harness.compare -c configs/demo.yaml --out runs/compare-seeds --seeds 0 1 2 \\
        --methods configs/method/zeroshot.yaml configs/method/ueo.yaml configs/method/im.yaml

Arguments it does not know (``--trainer.max_epochs=5``) are passed to every run.

Before the first run every method's configuration is parsed as its run will parse it (without building the model),
so a mistyped class path, key or value, or broken YAML, in any method ends the runner with one ``uft: error:`` line
naming the method and its file, before any method has spent its time. The tables are written whole or not at all.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import logging
import math
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from jsonargparse import ArgumentError

from uft.atomic_files import write_atomic, write_text
from uft.cli import cli_main, describe_argument_error
from uft.config_files import expand_includes
from uft.errors import InputError, one_line_errors
from uft.evaluation import EVAL_SPLITS
from uft.harness.grid import Candidate, GridPoint, parse_grid, selection_report
from uft.harness.spread import difference_cell, paired_differences, percent, spread_cell
from uft.metrics import EXTRA_NAMES, METRIC_NAMES
from uft.quiet import quiet_lightning
from uft.selection import SELECTION_NAMES, SELECTION_SPLIT

ZERO_SHOT, UEO = "zeroshot", "ueo"  # the references of the paired differences, by method config name
ONLINE, ONLINE_METRICS = "online", ("pacc", "auroc", "hm")  # an online comparison's splits and columns


class _RunnerQuiet(logging.Filter):
    """Inside the runner each run is one line: Lightning's checkpoint-loading lines would repeat for every
    method."""

    def filter(self, record: logging.LogRecord) -> bool:
        noise = ("Restoring states from the checkpoint", "Loaded model weights from")
        return not record.getMessage().startswith(noise)


@contextlib.contextmanager
def quiet_runs():
    """The runner's console filter, with the CLI's (:func:`~uft.quiet.quiet_lightning`: the runner runs the trainers
    that :func:`~uft.cli.cli_main` returns, after it), for the runner's runs only (not for whoever imported this
    module)."""
    logger, quiet = logging.getLogger("lightning.pytorch.utilities.rank_zero"), _RunnerQuiet()
    with quiet_lightning():
        logger.addFilter(quiet)
        try:
            yield
        finally:
            logger.removeFilter(quiet)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`~uft.errors.InputError` (``main`` prints one line) instead of the
    usage followed by the error."""

    def error(self, message: str):
        raise InputError(message)


def check_method(args: list[str], method: Path) -> None:
    """Parse one run's arguments (:func:`run_args`) exactly as :func:`run_method` will, without building anything:
    a bad config is an :class:`~uft.errors.InputError` naming the method and its file."""
    try:
        cli_main(args, run=False, print_table=False, parse_only=True)  # the run's own parser: the check cannot drift
        return
    except ArgumentError as err:
        problem = describe_argument_error(err)
    except InputError as err:
        problem = str(err)
    where = "" if str(method) in problem else f" ({method})"
    raise InputError(f"method {method.stem}{where}: {problem}")


@dataclass
class Row:
    """One method's final metrics: split -> metric -> value (None where undefined)."""

    method: str
    uses_labels: bool
    metrics: dict[str, dict[str, float | None]]
    log_dir: Path | None = None  # of the method's run: metrics.json, scores.pt, figures/
    trained: bool = True  # False: zero-shot, evaluated only
    seed: int | None = None  # the training seed the runner gave; None without one, or for a seed-free row
    seed_free: bool = False  # no training on loaded weights: every seed would give this row
    point: str | None = None  # the run's point of a --grid (uft.harness.grid.GridPoint.name); None without one

    @property
    def label(self) -> str:
        name = self.method if self.point is None else f"{self.method} [{self.point}]"
        return f"{name} (oracle: uses labels)" if self.uses_labels else name


def run_args(base: list[str], method: Path, out: Path, extra: list[str], seed: int | None = None) -> list[str]:
    """The CLI arguments of one method's run into ``out/<method name>``."""
    configs = [arg for config in [*base, str(method)] for arg in ("-c", config)]
    # One line per method on the console: no progress bars, summaries or per-run tables inside the runner. No
    # per-epoch validation: the row is the last checkpoint's test.
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    seeded = [] if seed is None else [f"--seed_everything={seed}"]
    root = f"--trainer.default_root_dir={out / method.stem}"
    return [*configs, root, "--trainer.limit_val_batches=0", *quiet, *extra, *seeded]


def run_method(base: list[str], method: Path, out: Path, extra: list[str], seed: int | None = None) -> Row:
    """Train (when the configured model has an objective) and test one method; its logs and checkpoints go to
    ``out/<method name>``. ``seed``, when given, is the run's ``--seed_everything``."""
    start = time.monotonic()
    cli = cli_main(run_args(base, method, out, extra, seed), run=False, print_table=False)
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    trained = model.objective is not None
    # Testing loaded weights draws nothing at random; random weights (pretrained empty) are the seed's draw.
    seed_free = not trained and bool(model.hparams.pretrained)
    ckpt_path = None
    if trained:  # each comparison trains afresh: a rerun into the same folder replaces the earlier checkpoint
        trainer.fit(model, datamodule=data)
        ckpt_path = trainer.checkpoint_callback.last_model_path
    # An online run's stream metrics are the fit's (its predictions before each update); then the adapted model's test.
    streamed = {k: float(v) for k, v in trainer.callback_metrics.items() if trained and k.startswith(ONLINE)}
    results = trainer.test(model, datamodule=data, ckpt_path=ckpt_path, verbose=False, weights_only=True)
    metrics: dict[str, dict[str, float | None]] = {}
    for logged in [streamed, *results]:  # one dict per evaluation split's loader; keys "<split>/<metric>"
        for key, value in logged.items():
            split, _, name = key.partition("/")
            metrics.setdefault(split, {})[name] = None if math.isnan(value) else float(value)
    if not trained and getattr(model, "online", None) is not None:
        # A model that never changes predicts every stream image as it does in the target split (per segment too).
        metrics.update(
            {ONLINE + split[len("target") :]: v for split, v in metrics.items() if split.startswith("target")}
        )
    log_dir = Path(trainer.log_dir)
    done = "trained and tested" if trained else "tested"
    print(f"uft compare: {method.stem}: {done} in {time.monotonic() - start:.0f} s ({log_dir})", flush=True)
    uses_labels = bool(trained and model.objective.uses_labels)
    return Row(method.stem, uses_labels, metrics, log_dir, trained, None if seed_free else seed, seed_free)


def run_seeds(base: list[str], method: Path, out: Path, extra: list[str], seeds: list[int]) -> list[Row]:
    """One run per seed into ``out/seed<S>/<method name>``; a seed-free method once (the first seed's folder), its
    row standing for every seed."""
    rows = []
    for seed in seeds:
        rows.append(run_method(base, method, out / f"seed{seed}", extra, seed))
        if rows[-1].seed_free:
            print(f"uft compare: {method.stem}: no training on loaded weights, the same for every seed: run once")
            break
    return rows


def run_grid(base: list[str], method: Path, out: Path, extra: list[str], points: list[GridPoint]) -> list[Row]:
    """One run per grid point into ``out/<point>/<method name>``; a method that trains nothing once (the first
    point's folder): the grid's values cannot change it."""
    rows = []
    for point in points:
        row = run_method(base, method, out / point.folder, [*extra, *point.args])
        if not row.trained:
            print(f"uft compare: {method.stem}: trains nothing, the same at every grid point: run once")
            return [row]
        row.point = point.name
        rows.append(row)
    return rows


def grid_report(rows: list[Row], out: Path) -> str:
    """``selection.md`` (:func:`~uft.harness.grid.selection_report`: what each label-free criterion picks per
    method) and ``selection.csv`` (every grid run's criteria and test metrics) into ``out``; returns the report."""
    candidates = [Candidate.of(row.method, row.point, row.metrics) for row in rows if row.point is not None]
    report = selection_report(candidates)
    names = [*(f"{SELECTION_SPLIT}/{n}" for n in SELECTION_NAMES), *(f"test/{m}" for m in METRIC_NAMES)]
    handle = io.StringIO()
    writer = csv.writer(handle)
    writer.writerow(["method", "point", *names])
    for c in candidates:
        values = [*(c.criteria.get(n) for n in SELECTION_NAMES), *(c.test.get(m) for m in METRIC_NAMES)]
        writer.writerow([c.method, c.point, *("" if v is None else f"{v:.6f}" for v in values)])
    write_atomic(out / "selection.csv", lambda f: f.write(handle.getvalue()))
    write_text(out / "selection.md", report + "\n")
    return report


def columns(rows: list[Row]) -> list[tuple[str, str]]:
    """The tables' columns: each evaluation split's metrics; for a stream (rows with an ``online`` split, or a target
    split cut into segments), PACC, AUROC and HM of the stream overall and per segment (``online``: the predictions
    made before each update; else ``target``: the final model's), then of the test split."""
    online = [split for row in rows for split in row.metrics if split == ONLINE or split.startswith(f"{ONLINE}.")]
    segments = [split for row in rows for split in row.metrics if split.startswith("target.")]
    stream = online or (["target", *segments] if segments else [])
    if not stream:
        return [(split, metric) for split in EVAL_SPLITS for metric in METRIC_NAMES]
    return [(split, metric) for split in [*dict.fromkeys(stream), "test"] for metric in ONLINE_METRICS]


def csv_columns(rows: list[Row]) -> list[tuple[str, str]]:
    """The CSV's columns: the tables' (:func:`columns`), then the calibration and extra detection metrics
    (:data:`~uft.metrics.EXTRA_NAMES`) of the same splits. Only in the CSV: the Markdown and console tables stay
    one screen wide (and the paired differences would read an NLL in percentage points)."""
    main = columns(rows)
    splits = dict.fromkeys(split for split, _ in main)
    return [*main, *((split, metric) for split in splits for metric in EXTRA_NAMES)]


def _value(row: Row, split: str, metric: str) -> float | None:
    return row.metrics.get(split, {}).get(metric)


def _table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join([*lines, *("| " + " | ".join(cells) + " |" for cells in body)])


def _metric_head(rows: list[Row]) -> list[str]:
    return [f"{split} {metric.upper()}" for split, metric in columns(rows)]


def markdown_table(rows: list[Row]) -> str:
    """Metrics in percent, one row per method; FPR95 is better when lower, every other column when higher."""
    body = [[row.label, *(percent(_value(row, split, metric)) for split, metric in columns(rows))] for row in rows]
    return _table(["method", *_metric_head(rows)], body)


def by_method(rows: list[Row]) -> dict[str, list[Row]]:
    """Each method's rows (one per seed, or one seed-free row), in the order of ``rows``."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.method, []).append(row)
    return groups


def spread_table(rows: list[Row]) -> str:
    """Mean ± sample standard deviation over the seeds, in percent, one row per method; a seed-free method's value
    alone."""
    body = [
        [
            group[0].label,
            *(spread_cell([_value(row, split, metric) for row in group]) for split, metric in columns(rows)),
        ]
        for group in by_method(rows).values()
    ]
    return _table(["method", *_metric_head(rows)], body)


def seed_table(rows: list[Row]) -> str:
    """Every run: a row per method and seed; ``any`` for a seed-free row."""
    body = [
        [
            row.label,
            "any" if row.seed is None else str(row.seed),
            *(percent(_value(row, s, m)) for s, m in columns(rows)),
        ]
        for row in rows
    ]
    return _table(["method", "seed", *_metric_head(rows)], body)


def _at_seeds(group: list[Row], seeds: list[int | None]) -> list[Row | None]:
    """The group's row for each seed: its own, or the seed-free one; None where the group has neither."""
    return [next((r for r in group if r.seed_free or r.seed == seed), None) for seed in seeds]


def references(rows: list[Row]) -> list[str]:
    """What each trained method is paired with: zero-shot (``zeroshot``, else the first untrained method) and
    ``ueo``, those present."""
    groups = by_method(rows)
    zero_shot = ZERO_SHOT if ZERO_SHOT in groups else next((m for m, g in groups.items() if not g[0].trained), None)
    return [name for name in dict.fromkeys([zero_shot, UEO]) if name in groups]


def difference_table(rows: list[Row]) -> str:
    """Each trained method minus each reference (:func:`references`, not itself), seed by seed: mean ± sample
    standard deviation of the differences in percentage points and (seeds with a positive difference / seeds).
    Empty without a trained method or a reference."""
    groups = by_method(rows)
    body = []
    for method, group in groups.items():
        if not group[0].trained:
            continue
        seeds = [row.seed for row in group]
        for reference in references(rows):
            if reference == method:
                continue
            paired = _at_seeds(groups[reference], seeds)
            cells = []
            for split, metric in columns(rows):
                ours = [_value(row, split, metric) for row in group]
                theirs = [None if row is None else _value(row, split, metric) for row in paired]
                cells.append(difference_cell(paired_differences(ours, theirs)))
            body.append([group[0].label, reference, *cells])
    return _table(["method", "minus", *_metric_head(rows)], body) if body else ""


SPREAD_CAPTION = (
    "Percent, mean ± sample standard deviation over the training seeds {seeds}; (n=k): defined in k seeds only. "
    "FPR95 is better when lower, the rest higher."
)
SEED_FREE_CAPTION = "{methods}: no training on loaded weights, run once: the same row for every seed."
DIFFERENCE_CAPTION = (
    "Paired by seed: the method minus the reference at the same seed, in percentage points, mean ± sample standard "
    "deviation over the seeds, then (seeds where the difference is positive / seeds). Positive is better, except "
    "for FPR95, where a positive difference means a higher FPR95 (worse)."
)


def seeds_report(rows: list[Row], seeds: list[int], per_seed: bool = True) -> str:
    """The Markdown of a comparison over seeds: the spread table, the per-seed table (unless ``per_seed`` is
    False: the console leaves it out) and the paired differences."""
    caption = SPREAD_CAPTION.format(seeds=", ".join(map(str, seeds)))
    seed_free = [method for method, group in by_method(rows).items() if group[0].seed_free]
    if seed_free:
        caption += " " + SEED_FREE_CAPTION.format(methods=", ".join(seed_free))
    sections = [f"## Mean ± standard deviation over seeds\n\n{caption}\n\n{spread_table(rows)}"]
    if per_seed:
        sections.append(f"## Per seed\n\nPercent; seed `any`: the same for every seed.\n\n{seed_table(rows)}")
    differences = difference_table(rows)
    if differences:
        sections.append(f"## Paired differences\n\n{DIFFERENCE_CAPTION}\n\n{differences}")
    return "\n\n".join(sections)


def write_csv(rows: list[Row], path: Path, seeds: bool = False) -> None:
    """Wide CSV with raw values (rates as fractions in [0, 1], the NLL in nats), the columns of
    :func:`csv_columns`; empty where undefined. With ``seeds``, a ``seed`` column (empty for a seed-free row: it
    stands for every seed)."""
    handle = io.StringIO()
    writer = csv.writer(handle)
    seed_head = ["seed"] if seeds else []
    head = csv_columns(rows)
    writer.writerow(["method", *seed_head, "uses_labels", *(f"{split}/{metric}" for split, metric in head)])
    for row in rows:
        seed = ["" if row.seed is None else row.seed] if seeds else []
        values = [_value(row, split, metric) for split, metric in head]
        writer.writerow([row.method, *seed, row.uses_labels, *("" if v is None else f"{v:.6f}" for v in values)])
    write_atomic(path, lambda f: f.write(handle.getvalue()))


def check_inputs(
    base: list[str],
    methods: list[Path],
    out: Path,
    extra: list[str],
    seeds: list[int] | None = None,
    grid: list[GridPoint] | None = None,
) -> None:
    """Everything :func:`compare` can refuse before its first run, as an :class:`~uft.errors.InputError`: missing
    config files, two methods with one name (one run folder), ``--out`` that is a file, ``--seeds`` beside
    ``--seed_everything``, and each method's configuration (:func:`check_method`). Writes nothing."""
    missing = [str(p) for p in [*map(Path, base), *methods] if not p.is_file()]
    if missing:
        raise InputError(f"config file not found: {', '.join(missing)}")
    by_name: dict[str, list[str]] = {}
    for method in methods:
        by_name.setdefault(method.stem, []).append(str(method))
    clash = next((files for files in by_name.values() if len(files) > 1), None)
    if clash:
        raise InputError(f"methods {' and '.join(clash)} have one name (one run folder, one row): rename one")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: pass a folder (the runs and tables go into it)")
    if seeds is not None:
        if any(arg.partition("=")[0] == "--seed_everything" for arg in extra):
            raise InputError("--seeds sets each run's --seed_everything; pass one or the other")
        if not seeds or len(set(seeds)) != len(seeds):
            raise InputError(f"--seeds needs distinct seeds, got {seeds}")
    if grid and seeds is not None:
        raise InputError("--grid and --seeds: pass one (a grid at another seed: --seed_everything=S)")
    expand_includes([arg for config in base for arg in ("-c", config)])  # broken YAML there is no method's fault
    for method in methods:
        for point in grid or [None]:  # every grid value parsed as its run will parse it
            arguments = [*extra, *(point.args if point else [])]
            check_method(run_args(base, method, out, arguments, None if seeds is None else seeds[0]), method)


def compare(
    base: list[str],
    methods: list[Path],
    out: Path,
    extra: list[str],
    seeds: list[int] | None = None,
    grid: list[GridPoint] | None = None,
) -> list[Row]:
    """Run every method (zero-shot ones first) and write ``comparison.md`` and ``comparison.csv`` into ``out``, and
    the pictures of the test split (:func:`roc_overlay`, :func:`recall_changes`), per seed with seeds.

    Args:
        base: the base config files.
        methods: the method overlays, one row each (per seed).
        out: the folder of the runs and tables.
        extra: arguments passed to every run.
        seeds: training seeds; None runs each method once with the config's seed into ``out/<method>``. With
            seeds, rows come per method and seed (a seed-free method's once), see the module docstring.
        grid: the points of a ``--grid`` (:func:`~uft.harness.grid.parse_grid`): each trained method runs once per
            point into ``out/<point>/<method>``, a row each; ``selection.md`` and ``selection.csv`` say what each
            label-free criterion picks (:func:`grid_report`). No pictures across methods: a grid has too many runs.
    """
    check_inputs(base, methods, out, extra, seeds, grid)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create --out {out}: {err.strerror or err}") from None
    with quiet_runs():
        if grid:
            rows = [row for method in methods for row in run_grid(base, method, out, extra, grid)]
        elif seeds is None:
            rows = [run_method(base, method, out, extra) for method in methods]
        else:
            rows = [row for method in methods for row in run_seeds(base, method, out, extra, seeds)]
    rows.sort(key=lambda row: row.trained)  # stable: zero-shot first, then methods and seeds in the given order
    if grid:
        write_text(out / "comparison.md", markdown_table(rows) + "\n")
        grid_report(rows, out)
    elif seeds is None:
        write_text(out / "comparison.md", markdown_table(rows) + "\n")
        write_csv(rows, out / "comparison.csv")
        roc_overlay(rows, out / "roc_test.png")
        recall_changes(rows, out / "per_class_changes_test.png")
    else:
        write_text(out / "comparison.md", seeds_report(rows, seeds) + "\n")
        write_csv(rows, out / "comparison.csv", seeds=True)
        for seed in seeds:
            roc_overlay([r for r in rows if r.seed_free or r.seed == seed], out / f"seed{seed}" / "roc_test.png")
            at_seed = [r for r in rows if r.seed_free or r.seed == seed]
            recall_changes(at_seed, out / f"seed{seed}" / "per_class_changes_test.png")
    return rows


def roc_overlay(rows: list[Row], path: Path, split: str = "test") -> Path | None:
    """One picture of every method's ROC curve on ``split`` (known vs unknown): before and after adaptation."""
    from uft.figures import roc_figure

    curves = {}
    for row in rows:
        scores = row.log_dir / "scores.pt" if row.log_dir else None
        if not (scores and scores.is_file()):
            continue
        saved = torch.load(scores, weights_only=True)
        result = saved["splits"].get(split)
        if result is not None:
            known = result["labels"] < saved["num_known"]
            if known.any() and (~known).any():
                curves[row.label] = (result["ood"], known)
    if not curves:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = roc_figure(curves, f"{split} split: known vs unknown")
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=110), binary=True)
    return path


def recall_changes(rows: list[Row], path: Path, split: str = "test", limit: int = 10) -> Path | None:
    """One picture of the ``limit`` classes whose recall on ``split`` each trained method changed most against
    zero-shot (the ``zeroshot`` row, else the first untrained one), a panel per method; none without a zero-shot
    row or a trained row with scores (``scores.pt`` of the row's run)."""
    from uft.figures import recall_changes_figure
    from uft.per_class import largest_recall_changes

    def scores(row: Row) -> dict | None:
        saved = row.log_dir / "scores.pt" if row.log_dir else None
        return torch.load(saved, weights_only=True) if saved and saved.is_file() else None

    untrained = [row for row in rows if not row.trained]
    reference = next((row for row in untrained if row.method == ZERO_SHOT), untrained[0] if untrained else None)
    before = scores(reference) if reference else None
    if before is None or split not in before["splits"]:
        return None
    num_known = before["num_known"]
    # A scores.pt written before it kept the class names: the classes by index.
    names = before.get("class_names") or [f"class {c}" for c in range(num_known)]
    panels = {}
    for row in rows:
        after = scores(row) if row.trained else None
        if after is not None and split in after["splits"]:
            changes = largest_recall_changes(before["splits"][split], after["splits"][split], num_known, limit)
            panels[f"{row.label} - {reference.method}"] = [(names[c], change) for c, change in changes]
    if not panels:
        return None
    figure = recall_changes_figure(panels, f"{split} split: largest changes of per-class recall against zero-shot")
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=110), binary=True)
    return path


def main(argv: list[str] | None = None) -> None:
    """Console entry point: bad input (an argument, a config, a folder that cannot be written), or a method's run
    that diverged, ends with one ``uft: error:`` line and exit status 2."""
    with one_line_errors():
        _main(argv)


def _main(argv: list[str] | None) -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", action="append", required=True, help="base config (repeatable)")
    parser.add_argument("--methods", nargs="+", type=Path, required=True, help="method overlays, one row each")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), help="folder of the runs and tables")
    parser.add_argument("--title", default="", help="printed above the table (what the comparison is)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="training seeds: a run per method and seed, mean ± std and paired tables"
    )
    parser.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2",
        help="a grid axis (repeatable: the product of the axes), e.g. model.prompt_lr=0.01,0.03,0.1: every trained "
        "method runs at each point; selection.md says which run each label-free criterion picks",
    )
    args, extra = parser.parse_known_args(argv)
    grid = parse_grid(args.grid)
    rows = compare(args.config, args.methods, args.out, extra, args.seeds, grid)
    title = "\n" + textwrap.fill(args.title, 116) if args.title else ""
    if grid:
        written = ", ".join(str(args.out / name) for name in ("comparison.md", "selection.md", "selection.csv"))
        report = (args.out / "selection.md").read_text().rstrip()
        print(f"{title}\n\n{markdown_table(rows)}\n\n{report}\n\nwritten: {written}")
    elif args.seeds is None:
        written = ", ".join(str(args.out / name) for name in ("comparison.md", "comparison.csv", "roc_test.png"))
        print(f"{title}\n\n{markdown_table(rows)}\n\nwritten: {written}")
    else:
        written = ", ".join(str(args.out / name) for name in ("comparison.md", "comparison.csv", "seed*/roc_test.png"))
        print(f"{title}\n\n{seeds_report(rows, args.seeds, per_seed=False)}\n\nwritten: {written}")


if __name__ == "__main__":
    main()
