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

Every method, domain and index is checked, and every run's configuration parsed, before the first run (or before
the SLURM script is printed): a mistake ends the sweep with one ``uft: error:`` line, never with a SLURM array of
tasks that each fail. The configs and class-name files are the checkout's, whatever the current folder; an
installed package, which has neither, is refused in one line that says to install from a clone.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import sys
from pathlib import Path

from uft.atomic_files import write_text
from uft.clip import CHECKOUT, checkout_file
from uft.data.check import BENCHMARKS, DATA, LIST_FOLDER
from uft.errors import InputError, one_line_errors
from uft.harness.compare import OneLineParser, check_method, quiet_runs, run_args, run_method
from uft.harness.grid import Candidate, GridPoint, parse_grid, selection_report
from uft.harness.spread import mean, percent
from uft.selection import SELECTION_NAMES, SELECTION_SPLIT

CONFIGS = CHECKOUT / "configs"
SETTINGS = ("closed", "partial", "open", "open_partial")
COLUMNS = (("test", "pacc"), ("test", "auroc"), ("test", "hm"))


def plan(
    dataset: str, domains: list[str], settings: list[str], methods: list[str], grid: list[GridPoint] | None = None
) -> list[tuple]:
    """Every (domain, setting, method, grid point), in a fixed order: the index of a SLURM array task; the point is
    None without a grid."""
    return [(d, s, m, p) for d in domains for s in settings for m in methods for p in grid or [None]]


def canonical_domains(dataset: str, domains: list[str]) -> list[str]:
    """The benchmark's spelling of each domain (``real_world`` is Office-Home's ``Real World``: its list file and
    run folder are named from it); an unknown one is an :class:`~uft.errors.InputError` naming the valid ones."""
    known = BENCHMARKS[dataset].domains

    def key(name: str) -> str:
        return name.replace("_", "").replace(" ", "").lower()

    by_key = {key(name): name for name in known}
    found = []
    for domain in domains:
        if key(domain) not in by_key:
            raise InputError(f"unknown domain {domain!r} of {dataset}: expected one of {', '.join(known)}")
        found.append(by_key[key(domain)])
    return found


def check_plan(args: argparse.Namespace, runs: list[tuple], extra: list[str]) -> None:
    """Everything a sweep can refuse before its first run (or its SLURM script), as an
    :class:`~uft.errors.InputError`: unknown or repeated names, ``--only`` outside the plan, ``--out`` that is a
    file, a missing dataset folder, a uft without the checkout's configs and class names (an installed package),
    and the configuration of every (setting, method) it will run."""
    for needed in (Path("configs") / args.dataset / "ueo.yaml", Path("data") / args.dataset / "classes.txt"):
        checkout_file(needed, "the sweep")  # first: without them, every other message would mislead
    unknown = [m for m in args.methods if not (CONFIGS / "method" / f"{m}.yaml").is_file()]
    if unknown:
        known = ", ".join(sorted(p.stem for p in (CONFIGS / "method").glob("*.yaml")))
        raise InputError(
            f"unknown method {', '.join(map(repr, unknown))}: expected names in {CONFIGS / 'method'}: {known}"
        )
    for option, names in (("--methods", args.methods), ("--settings", args.settings), ("--domains", args.domains)):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # the same run folder twice: two SLURM tasks would write it at once
            raise InputError(f"{option} names {', '.join(twice)} more than once")
    if args.only is not None:
        if args.slurm:
            raise InputError("--slurm writes one task per index of the plan; leave out --only")
        if not 0 <= args.only < len(runs):
            raise InputError(f"--only {args.only}: the plan has {len(runs)} runs, indices 0 to {len(runs) - 1}")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file: pass a folder (the runs and tables go into it)")
    # A SLURM script may be written where the dataset is not mounted; a run here needs it.
    if not args.slurm and not args.root.is_dir():
        raise InputError(f"dataset root not found: {args.root}")
    selected = [runs[args.only]] if args.only is not None else runs
    checked = set()
    for domain, setting, method, point in selected:  # the domain changes a value only: one parse per the rest
        if (setting, method, point) not in checked:
            checked.add((setting, method, point))
            base, method_file, folder, data = run_inputs(args.dataset, args.root, args.out, domain, setting, method)
            arguments = [*data, *extra, *(point.args if point else [])]
            check_method(run_args(base, method_file, folder, arguments), method_file)


def run_inputs(
    dataset: str, root: Path, out: Path, domain: str, setting: str, method: str
) -> tuple[list[str], Path, Path, list[str]]:
    """One run's base configs, method config, folder and data arguments (as :func:`run_method` takes them)."""
    folder = out / domain.replace(" ", "_") / setting
    base = [str(CONFIGS / dataset / "ueo.yaml"), str(CONFIGS / "setting" / dataset / f"{setting}.yaml")]
    # The data configs name the class-name file relative to the checkout; the sweep runs from any folder.
    data = [f"--data.root={root}", f"--data.domain={domain}", f"--data.class_names={DATA / dataset / 'classes.txt'}"]
    listing = root / LIST_FOLDER / f"{domain.replace(' ', '_')}.txt"
    if listing.is_file():  # written by `uft data check`
        data.append(f"--data.train_list={listing}")
    return base, CONFIGS / "method" / f"{method}.yaml", folder, data


def run_one(
    dataset: str,
    root: Path,
    out: Path,
    domain: str,
    setting: str,
    method: str,
    extra: list[str],
    point: GridPoint | None = None,
    first: GridPoint | None = None,
) -> dict:
    """One run (at ``point`` of a ``--grid``: into ``<setting>/<point>/<method>``), unless its ``result.json``
    exists; returns the result. A method that trained nothing at the grid's ``first`` point is not run again."""
    base, method_file, setting_folder, data = run_inputs(dataset, root, out, domain, setting, method)
    folder = setting_folder if point is None else setting_folder / point.folder
    result_file = folder / method / "result.json"
    at_first = setting_folder / first.folder / method / "result.json" if first is not None else None
    if at_first is not None and at_first.is_file() and not json.loads(at_first.read_text()).get("trained", True):
        return json.loads(at_first.read_text())
    if result_file.is_file():
        return json.loads(result_file.read_text())
    row = run_method(base, method_file, folder, [*data, *extra, *(point.args if point else [])])
    result = {"domain": domain, "setting": setting, "method": method, "metrics": row.metrics}
    result.update(point=None if point is None else point.name, trained=row.trained)
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    return result


def gather(results: list[dict], out: Path, settings: list[str], methods: list[str]) -> str:
    """``table.md`` (methods x settings x {PACC, AUROC, HM}, mean over domains, percent) and ``runs.csv``; with a
    grid, a row per method and grid point, and ``selection.md`` (:func:`~uft.harness.grid.selection_report` per
    method, domain and setting)."""
    # A method that trains nothing ran at a grid's first point only; its result came back for every point.
    results = list({(r["domain"], r["setting"], r["method"], r.get("point")): r for r in results}.values())
    handle = io.StringIO()
    writer = csv.writer(handle)
    criteria = [(SELECTION_SPLIT, name) for name in SELECTION_NAMES]
    writer.writerow(["domain", "setting", "method", "point", *(f"{s}/{m}" for s, m in [*COLUMNS, *criteria])])
    for r in results:
        values = [r["metrics"].get(s, {}).get(m) for s, m in [*COLUMNS, *criteria]]
        cells = ("" if v is None else f"{v:.6f}" for v in values)
        writer.writerow([r["domain"], r["setting"], r["method"], r.get("point") or "", *cells])
    write_text(out / "runs.csv", handle.getvalue())
    head = ["method", *(f"{setting} {m.upper()}" for setting in settings for _, m in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    points = dict.fromkeys(r.get("point") for r in results)
    for method, point in [(m, p) for m in methods for p in points]:
        at = [r for r in results if r["method"] == method and r.get("point") == point]
        if not at:  # a method that trains nothing ran at the first point only
            continue
        cells = [method if point is None else f"{method} [{point}]"]
        for setting in settings:
            for split, metric in COLUMNS:
                values = [r["metrics"].get(split, {}).get(metric) for r in at if r["setting"] == setting]
                cells.append(percent(mean(values)))
        lines.append("| " + " | ".join(cells) + " |")
    if any(points):
        groups = [
            Candidate.of(f"{r['method']}, {r['domain']}, {r['setting']}", r["point"], r["metrics"])
            for r in results
            if r.get("point") is not None and r.get("trained", True)
        ]
        write_text(out / "selection.md", selection_report(groups) + "\n")
    table = "\n".join(lines)
    write_text(out / "table.md", table + "\n")
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
    """Console entry point: bad input ends with one ``uft: error:`` line and exit status 2."""
    with one_line_errors():
        _main(sys.argv[1:] if argv is None else argv)


def _main(argv: list[str]) -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(BENCHMARKS))
    parser.add_argument("root", type=Path, help="the dataset folder (checked by `uft data check`)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and tables")
    parser.add_argument("--methods", nargs="+", default=["zeroshot", "ueo"], help="names in configs/method/")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=[*SETTINGS, "all_known"])
    parser.add_argument("--domains", nargs="+", help="default: every domain of the dataset")
    parser.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2",
        help="a grid axis (repeatable), e.g. model.prompt_lr=0.01,0.03,0.1: each run at every point; selection.md "
        "says which run each label-free criterion picks",
    )
    parser.add_argument("--only", type=int, help="run this index of the plan only (a SLURM array task)")
    parser.add_argument("--slurm", action="store_true", help="print an sbatch array script instead of running")
    args, extra = parser.parse_known_args(argv)
    args.domains = canonical_domains(args.dataset, args.domains or list(BENCHMARKS[args.dataset].domains))
    grid = parse_grid(args.grid)
    runs = plan(args.dataset, args.domains, args.settings, args.methods, grid)
    check_plan(args, runs, extra)
    if args.slurm:
        print(slurm_script([a for a in argv if a != "--slurm"], len(runs)), end="")
        return
    selected = [runs[args.only]] if args.only is not None else runs
    with quiet_runs():
        first = grid[0] if grid else None
        results = [run_one(args.dataset, args.root, args.out, *run[:3], extra, run[3], first) for run in selected]
    if args.only is None:
        table = gather(results, args.out, args.settings, args.methods)
        written = ["table.md", "runs.csv", *(["selection.md"] if grid else [])]
        print(f"\n{table}\n\nwritten: {', '.join(str(args.out / name) for name in written)}")


if __name__ == "__main__":
    main()
