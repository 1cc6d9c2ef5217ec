"""Benchmark sweep: every domain x setting x method of a dataset, one run each, gathered into the paper's layout.

Source-free, one target domain at a time. Each run is the comparison runner's (:func:`~uft.harness.compare.run_method`)
on ``configs/<dataset>/ueo.yaml`` + ``configs/setting/<dataset>/<setting>.yaml`` + ``configs/method/<method>.yaml``,
into ``OUT/<domain>/<setting>/<method>/``; a run whose ``result.json`` exists is skipped, so a sweep can be
resumed or run as a SLURM array (``--slurm`` prints the script; each task runs one index with ``--only``). The
gathered table (``OUT/table.md``) has a row per method and, per setting, PACC, AUROC and HM averaged over the
domains; ``OUT/runs.csv`` has every run::

    uft data check officehome /data/office-home
    python -m uft.harness.sweep officehome /data/office-home --out runs/sweep/officehome --methods zeroshot ueo im
    python -m uft.harness.sweep officehome /data/office-home --out runs/sweep/officehome --slurm > sweep.sbatch

Arguments it does not know (``--model.pretrained openai``, ``--trainer.devices 1``) are passed to every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path

from uft.clip import CHECKOUT
from uft.data.check import BENCHMARKS, LIST_FOLDER
from uft.harness.compare import quiet_runs, run_method
from uft.harness.spread import mean, percent

CONFIGS = CHECKOUT / "configs"
SETTINGS = ("closed", "partial", "open", "open_partial")
COLUMNS = (("test", "pacc"), ("test", "auroc"), ("test", "hm"))


def plan(dataset: str, domains: list[str], settings: list[str], methods: list[str]) -> list[tuple[str, str, str]]:
    """Every (domain, setting, method), in a fixed order: the index of a SLURM array task."""
    return [(d, s, m) for d in domains for s in settings for m in methods]


def run_one(dataset: str, root: Path, out: Path, domain: str, setting: str, method: str, extra: list[str]) -> dict:
    """One run, unless its ``result.json`` exists; returns the result."""
    folder = out / domain.replace(" ", "_") / setting
    result_file = folder / method / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    base = [str(CONFIGS / dataset / "ueo.yaml"), str(CONFIGS / "setting" / dataset / f"{setting}.yaml")]
    data = [f"--data.root={root}", f"--data.domain={domain}"]
    listing = root / LIST_FOLDER / f"{domain.replace(' ', '_')}.txt"
    if listing.is_file():  # written by `uft data check`
        data.append(f"--data.train_list={listing}")
    row = run_method(base, CONFIGS / "method" / f"{method}.yaml", folder, [*data, *extra])
    result = {"domain": domain, "setting": setting, "method": method, "metrics": row.metrics}
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    return result


def gather(results: list[dict], out: Path, settings: list[str], methods: list[str]) -> str:
    """``table.md`` (methods x settings x {PACC, AUROC, HM}, mean over domains, percent) and ``runs.csv``."""
    with (out / "runs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["domain", "setting", "method", *(f"{s}/{m}" for s, m in COLUMNS)])
        for r in results:
            values = [r["metrics"].get(s, {}).get(m) for s, m in COLUMNS]
            writer.writerow(
                [r["domain"], r["setting"], r["method"], *("" if v is None else f"{v:.6f}" for v in values)]
            )
    head = ["method", *(f"{setting} {m.upper()}" for setting in settings for _, m in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        cells = [method]
        for setting in settings:
            for split, metric in COLUMNS:
                values = [
                    r["metrics"].get(split, {}).get(metric)
                    for r in results
                    if r["method"] == method and r["setting"] == setting
                ]
                cells.append(percent(mean(values)))
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    return table


def slurm_script(argv: list[str], count: int) -> str:
    """An ``sbatch`` array script: task i runs index i; gather afterwards by running the sweep again."""
    command = shlex.join([sys.executable, "-m", "uft.harness.sweep", *argv, "--only", "$SLURM_ARRAY_TASK_ID"])
    command = command.replace("'$SLURM_ARRAY_TASK_ID'", '"$SLURM_ARRAY_TASK_ID"')
    return (
        "#!/bin/bash\n"
        "#SBATCH --job-name=uft-sweep\n"
        f"#SBATCH --array=0-{count - 1}\n"
        "#SBATCH --gres=gpu:1\n"
        "#SBATCH --cpus-per-task=8\n"
        "#SBATCH --time=04:00:00\n"
        f"{command}\n"
        "# when every task is done, gather: the same sweep command without --slurm (finished runs are skipped)\n"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(BENCHMARKS))
    parser.add_argument("root", type=Path, help="the dataset folder (checked by `uft data check`)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and tables")
    parser.add_argument("--methods", nargs="+", default=["zeroshot", "ueo"], help="names in configs/method/")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=[*SETTINGS, "all_known"])
    parser.add_argument("--domains", nargs="+", help="default: every domain of the dataset")
    parser.add_argument("--only", type=int, help="run this index of the plan only (a SLURM array task)")
    parser.add_argument("--slurm", action="store_true", help="print an sbatch array script instead of running")
    args, extra = parser.parse_known_args(argv)
    domains = args.domains or list(BENCHMARKS[args.dataset].domains)
    runs = plan(args.dataset, domains, args.settings, args.methods)
    if args.slurm:
        print(slurm_script([a for a in argv if a != "--slurm"], len(runs)), end="")
        return
    selected = [runs[args.only]] if args.only is not None else runs
    with quiet_runs():
        results = [run_one(args.dataset, args.root, args.out, *run, extra) for run in selected]
    if args.only is None:
        table = gather(results, args.out, args.settings, args.methods)
        print(f"\n{table}\n\nwritten: {args.out / 'table.md'}, {args.out / 'runs.csv'}")


if __name__ == "__main__":
    main()
