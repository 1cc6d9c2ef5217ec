"""docs/selection.md's tables: how well each label-free criterion (uft.selection) ranks a grid of runs, on the
world benchmark's development rendering (seed 100) and on the demo's (seed 0), over training seeds.

Each (rendering, training seed) is one comparison-runner grid (``--grid``) of zero-shot, UEO, IM and ENT on
``configs/demo.yaml`` (open-partial, Adam, 5 epochs), its prompt and norm rates each in {1e-4, 1e-3, 3e-3}: 9 runs
per method, all at rates where the demo's training is not chaotic (docs/demo.md). A grid whose ``selection.csv``
exists is read, not run again. Run from the repository root::

    python bench/selection_sweep.py --out runs/selection   # about 15 min per grid on 2 cores

Writes ``summary.md`` into ``--out``: per criterion, the Spearman correlation with test HM and the HM lost against
the grid's best run, mean ± std over methods, renderings and seeds, and how often the criterion's pick is at least
as good as the grid's median; then every grid's report (``selection.md``).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from pathlib import Path

from uft.atomic_files import write_text
from uft.harness.compare import compare
from uft.harness.grid import Candidate, method_selection, parse_grid
from uft.selection import SELECTION_NAMES

METHODS = ("zeroshot", "ueo", "im", "ent")
GRID = ["model.prompt_lr=1e-4,1e-3,3e-3", "model.visual_lr=1e-4,1e-3,3e-3"]
RENDERINGS = {"dev": 100, "demo": 0}  # the world benchmark's rendering seed


def read_candidates(path: Path) -> list[Candidate]:
    """A grid's ``selection.csv`` back as candidates."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))

    def value(text: str) -> float | None:
        return float(text) if text else None

    return [
        Candidate(
            r["method"],
            r["point"],
            {n: value(r[f"selection/{n}"]) for n in SELECTION_NAMES},
            {k.partition("/")[2]: value(v) for k, v in r.items() if k.startswith("test/")},
        )
        for r in rows
    ]


def run_grid(out: Path, rendering: int, seed: int, extra: list[str]) -> Path:
    """The grid of one rendering and seed, unless its ``selection.csv`` exists; returns that file."""
    table = out / "selection.csv"
    if not table.is_file():
        methods = [Path("configs/method") / f"{m}.yaml" for m in METHODS]
        run = [f"--data.recipe.init_args.seed={rendering}", f"--seed_everything={seed}", *extra]
        compare(["configs/demo.yaml"], methods, out, run, grid=parse_grid(GRID))
    return table


def _cell(values: list[float], scale: float = 1.0, sign: str = "+") -> str:
    defined = [v * scale for v in values if not math.isnan(v)]
    if not defined:
        return "n/a"
    spread = f" ± {statistics.stdev(defined):.2f}" if len(defined) > 1 else ""
    return f"{statistics.fmean(defined):{sign}.2f}{spread}"


def summary(grids: dict[str, list[Candidate]]) -> str:
    """Per criterion over every (grid, method): mean ± std of the rank correlation with test HM and of the HM lost
    (points), and in how many the pick's test HM is at least the grid's median."""
    stats: dict[str, dict[str, list[float]]] = {n: {"rho": [], "lost": [], "median": []} for n in SELECTION_NAMES}
    groups = 0
    for candidates in grids.values():
        for method in dict.fromkeys(c.method for c in candidates):
            rows = {r["choice"]: r for r in method_selection([c for c in candidates if c.method == method])}
            median = rows["median of the grid"]["hm"]
            groups += 1
            for name in SELECTION_NAMES:
                if name in rows:
                    stats[name]["rho"].append(rows[name]["rho"])
                    stats[name]["lost"].append(rows[name]["hm_lost"])
                    stats[name]["median"].append(float(rows[name]["hm"] >= median))
    head = "| criterion | rank corr. with test HM | test HM lost (points) | pick at least the median | grids |"
    lines = [head, "|---|---|---|---|---|"]
    for name, s in stats.items():
        if not s["rho"]:
            continue
        at_least = f"{int(sum(s['median']))} of {len(s['median'])}"
        lines.append(f"| {name} | {_cell(s['rho'])} | {_cell(s['lost'], 100, '')} | {at_least} | {len(s['rho'])} |")
    return "\n".join(lines) + f"\n\n({groups} method grids of 9 runs each.)\n\n" + per_method(grids)


def per_method(grids: dict[str, list[Candidate]]) -> str:
    """Per criterion and method: the rank correlation and the HM lost (points) of every grid, in the grids' order."""
    methods = list(dict.fromkeys(c.method for candidates in grids.values() for c in candidates))
    lines = ["| criterion | " + " | ".join(f"{m}: corr. / HM lost" for m in methods) + " |"]
    lines.append("|---|" + "---|" * len(methods))
    for name in SELECTION_NAMES:
        cells = []
        for method in methods:
            rows = [
                {r["choice"]: r for r in method_selection([c for c in candidates if c.method == method])}
                for candidates in grids.values()
            ]
            if any(name not in r for r in rows):
                cells.append("n/a")
                continue
            rhos = ", ".join(f"{r[name]['rho']:+.2f}" for r in rows)
            lost = ", ".join(f"{100 * r[name]['hm_lost']:.1f}" for r in rows)
            cells.append(f"{rhos} / {lost}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n(Grids in the order {', '.join(grids)}.)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/selection"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--renderings", nargs="+", default=list(RENDERINGS), choices=list(RENDERINGS))
    args, extra = parser.parse_known_args()
    grids = {}
    for rendering in args.renderings:
        for seed in args.seeds:
            name = f"{rendering}_s{seed}"
            grids[name] = read_candidates(run_grid(args.out / name, RENDERINGS[rendering], seed, extra))
    reports = [f"## {name}\n\n{(args.out / name / 'selection.md').read_text().strip()}" for name in grids]
    text = "\n\n".join([summary(grids), *reports])
    write_text(args.out / "summary.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
