"""The run's summary: ``metrics.json`` after each evaluation, and the final table."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from uft.atomic_files import write_text
from uft.selection import SELECTION_NAMES, SELECTION_SPLIT

SIDE_GROUPS = ("train", SELECTION_SPLIT)  # logged beside the evaluation splits, not columns of the table


class MetricsJSON(Callback):
    """Writes ``metrics.json`` (split -> metric -> value) into the run's log directory after each evaluation,
    so the file holds the final values when the run ends. Undefined values (e.g. AUROC without unknowns) are null.
    On several processes rank 0 writes it (the metrics are already gathered over all processes). At the end of
    ``validate``, ``test`` and ``fit`` it prints the evaluation metrics as one short table: a column per split, a
    row per metric, rates in percent.

    Args:
        filename: name of the file inside the log directory.
        print_table: print that table.
    """

    def __init__(self, filename: str = "metrics.json", print_table: bool = True) -> None:
        self.filename = filename
        self.print_table = print_table

    def _write(self, trainer: Trainer, final: bool) -> None:
        if trainer.sanity_checking:
            return
        # `log_dir` is a broadcast under DDP: every process reads it, only rank 0 writes.
        self._write_summary(trainer, Path(trainer.log_dir or trainer.default_root_dir), final)

    @rank_zero_only
    def _write_summary(self, trainer: Trainer, folder: Path, final: bool) -> None:
        summary: dict[str, dict[str, float | None]] = {}
        for key, value in trainer.callback_metrics.items():
            split, sep, name = key.partition("/")
            if sep:
                value = float(value)
                summary.setdefault(split, {})[name] = None if math.isnan(value) else value
        path = folder / self.filename
        write_text(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        if final and self.print_table:
            table = metrics_table({split: values for split, values in summary.items() if split not in SIDE_GROUPS})
            if table:
                criteria = selection_line(summary.get(SELECTION_SPLIT, {}))
                print(f"\n{table}\n{criteria}(last epoch; {path})", flush=True)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, final=trainer.state.fn != "fit")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, final=True)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, final=True)


def metrics_table(summary: dict[str, dict[str, float | None]]) -> str:
    """Evaluation metrics as text: a row per metric (each once), a column per split; rates in percent, the threshold
    and the NLL (nats) as numbers. The calibration and extra detection metrics follow the main ones, the sample count
    stays last."""
    from uft.metrics import DECISION_NAMES, EXTRA_NAMES, METRIC_NAMES

    splits = [split for split in summary if summary[split]]
    if not splits:
        return ""
    ordered = (*METRIC_NAMES, *DECISION_NAMES, *EXTRA_NAMES, "samples")
    names = [n for n in ordered if any(n in summary[s] for s in splits)]

    def cell(name: str, value: float | None) -> str:
        if value is None:
            return "n/a"
        if name == "samples":
            return f"{int(value)}"
        return f"{value:.4g}" if name in ("threshold", "nll") else f"{100 * value:.1f}"

    rows = [["metric", *splits]] + [[n, *(cell(n, summary[s].get(n)) for s in splits)] for n in names]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows
    )


def selection_line(criteria: dict[str, float | None]) -> str:
    """The label-free criteria (:mod:`uft.selection`) as one line below the table, or nothing without them."""
    shown = [f"{name} {criteria[name]:.4g}" for name in SELECTION_NAMES if criteria.get(name) is not None]
    return f"label-free criteria on the target set: {', '.join(shown)}\n" if shown else ""
