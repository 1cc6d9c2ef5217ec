"""Comparison runner: several methods on one data config, with the same seed and budget, in one table.

Each method config is an overlay (``configs/method/*.yaml``) added to the base config(s). Each method's CLI is built
once; a method with an objective is trained (``trainer.fit``) and then its last checkpoint is tested
(``trainer.test`` on the checkpoint that fit wrote), so each row holds the final model's metrics, never the best
epoch's; a method without one (zero-shot) is only tested. Zero-shot rows come first. Writes ``comparison.md``,
``comparison.csv`` and ``roc_test.png`` (every method's ROC curve on the test split in one picture) into ``--out``::

    python -m uft.harness.compare -c configs/demo.yaml --out runs/compare \\
        --methods configs/method/zeroshot.yaml configs/method/ueo.yaml configs/method/ent.yaml

Arguments it does not know (``--trainer.max_epochs=5``) are passed to every run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import math
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from uft.cli import cli_main
from uft.metrics import METRIC_NAMES
from uft.module import EVAL_SPLITS


class _RunnerQuiet(logging.Filter):
    """Inside the runner each run is one line: Lightning's checkpoint-loading lines would repeat for every
    method."""

    def filter(self, record: logging.LogRecord) -> bool:
        noise = ("Restoring states from the checkpoint", "Loaded model weights from")
        return not record.getMessage().startswith(noise)


@contextlib.contextmanager
def quiet_runs():
    """The runner's console filter, for the runner's runs only (not for whoever imported this module)."""
    logger, quiet = logging.getLogger("lightning.pytorch.utilities.rank_zero"), _RunnerQuiet()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


@dataclass
class Row:
    """One method's final metrics: split -> metric -> value (None where undefined)."""

    method: str
    uses_labels: bool
    metrics: dict[str, dict[str, float | None]]
    log_dir: Path | None = None  # of the method's run: metrics.json, scores.pt, figures/
    trained: bool = True  # False: zero-shot, evaluated only

    @property
    def label(self) -> str:
        return f"{self.method} (oracle: uses labels)" if self.uses_labels else self.method


def run_method(base: list[str], method: Path, out: Path, extra: list[str]) -> Row:
    """Train (when the configured model has an objective) and test one method; its logs and checkpoints go to
    ``out/<method name>``."""
    root = out / method.stem
    configs = [arg for config in [*base, str(method)] for arg in ("-c", config)]
    # One line per method on the console: no progress bars, summaries or per-run tables inside the runner. No
    # per-epoch validation: the row is the last checkpoint's test.
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    args = [*configs, f"--trainer.default_root_dir={root}", "--trainer.limit_val_batches=0", *quiet, *extra]
    start = time.monotonic()
    cli = cli_main(args, run=False, print_table=False)
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    trained = model.objective is not None
    ckpt_path = None
    if trained:  # each comparison trains afresh: a rerun into the same folder replaces the earlier checkpoint
        trainer.fit(model, datamodule=data)
        ckpt_path = trainer.checkpoint_callback.last_model_path
    results = trainer.test(model, datamodule=data, ckpt_path=ckpt_path, verbose=False, weights_only=True)
    metrics: dict[str, dict[str, float | None]] = {}
    for logged in results:  # one dict per evaluation split's loader; keys "<split>/<metric>"
        for key, value in logged.items():
            split, _, name = key.partition("/")
            metrics.setdefault(split, {})[name] = None if math.isnan(value) else float(value)
    log_dir = Path(trainer.log_dir)
    done = "trained and tested" if trained else "tested"
    print(f"uft compare: {method.stem}: {done} in {time.monotonic() - start:.0f} s ({log_dir})", flush=True)
    return Row(method.stem, bool(trained and model.objective.uses_labels), metrics, log_dir, trained)


def columns() -> list[tuple[str, str]]:
    return [(split, metric) for split in EVAL_SPLITS for metric in METRIC_NAMES]


def _cell(row: Row, split: str, metric: str) -> str:
    value = row.metrics.get(split, {}).get(metric)
    return "n/a" if value is None else f"{100 * value:.1f}"


def markdown_table(rows: list[Row]) -> str:
    """Metrics in percent, one row per method; FPR95 is better when lower, every other column when higher."""
    head = ["method", *(f"{split} {metric.upper()}" for split, metric in columns())]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.label, *(_cell(row, split, metric) for split, metric in columns())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[Row], path: Path) -> None:
    """Wide CSV with raw fractions in [0, 1]; empty where undefined."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "uses_labels", *(f"{split}/{metric}" for split, metric in columns())])
        for row in rows:
            values = [row.metrics.get(split, {}).get(metric) for split, metric in columns()]
            writer.writerow([row.method, row.uses_labels, *("" if v is None else f"{v:.6f}" for v in values)])


def compare(base: list[str], methods: list[Path], out: Path, extra: list[str]) -> list[Row]:
    """Run every method (zero-shot ones first) and write ``comparison.md`` and ``comparison.csv`` into ``out``."""
    missing = [str(p) for p in [*map(Path, base), *methods] if not p.is_file()]
    if missing:
        raise SystemExit(f"uft compare: config not found: {', '.join(missing)}")
    with quiet_runs():
        rows = sorted((run_method(base, method, out, extra) for method in methods), key=lambda row: row.trained)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(markdown_table(rows) + "\n")
    write_csv(rows, out / "comparison.csv")
    roc_overlay(rows, out / "roc_test.png")
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
    roc_figure(curves, f"{split} split: known vs unknown").savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", action="append", required=True, help="base config (repeatable)")
    parser.add_argument("--methods", nargs="+", type=Path, required=True, help="method overlays, one row each")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), help="folder of the runs and tables")
    parser.add_argument("--title", default="", help="printed above the table (what the comparison is)")
    args, extra = parser.parse_known_args(argv)
    rows = compare(args.config, args.methods, args.out, extra)
    written = ", ".join(str(args.out / name) for name in ("comparison.md", "comparison.csv", "roc_test.png"))
    title = "\n" + textwrap.fill(args.title, 116) if args.title else ""
    print(f"{title}\n\n{markdown_table(rows)}\n\nwritten: {written}")


if __name__ == "__main__":
    main()
