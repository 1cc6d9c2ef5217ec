"""The demo world across settings and seeds: zero-shot, UEO, IM and ENT; mean and spread in a Markdown table.

Seed ``s`` renders its own target world (``WorldBenchmark(seed=s)``) and seeds the training run, so the spread
covers both the data draw and the optimisation. Every run uses ``configs/demo.yaml`` unchanged apart from the
setting and the seed: hyper-parameters are fixed across settings. Run from the repository root::

    python bench/world_sweep.py --out runs/world-sweep   # about 20 min on 2 cores

Writes ``sweep.md`` (the table of docs/demo.md) and ``sweep.json`` (every number) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from uft.harness.compare import compare
from uft.harness.spread import spread_cell

SETTINGS = ("closed", "partial", "open", "open_partial")
METHODS = ("zeroshot", "ueo", "im", "ent")
COLUMNS = (("test", "pacc"), ("test", "auroc"), ("test", "hm"), ("target", "pacc"), ("target", "auroc"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/world-sweep"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    args, extra = parser.parse_known_args()
    results: dict[str, dict[str, list[dict]]] = {}
    for setting in args.settings:
        for seed in args.seeds:
            # The recipe renders each seed's world into its own folder (data/world/photo-fog-seed<N>).
            data = [f"--data.recipe.init_args.seed={seed}", f"--seed_everything={seed}"]
            rows = compare(
                ["configs/demo.yaml", f"configs/setting/world/{setting}.yaml"],
                [Path("configs/method") / f"{m}.yaml" for m in METHODS],
                args.out / setting / f"seed{seed}",
                [*data, *extra],
            )
            for row in rows:
                results.setdefault(setting, {}).setdefault(row.method, []).append(row.metrics)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(results, indent=2) + "\n")
    head = ["setting", "method", *(f"{split} {metric.upper()}" for split, metric in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for setting, methods in results.items():
        for method, runs in methods.items():
            cells = [spread_cell([run.get(split, {}).get(metric) for run in runs]) for split, metric in COLUMNS]
            lines.append("| " + " | ".join([setting, method, *cells]) + " |")
    table = "\n".join(lines)
    (args.out / "sweep.md").write_text(table + "\n")
    print(f"\n{table}\n\nseeds {args.seeds}; mean ± sample std, in percent; written: {args.out}/sweep.md")


if __name__ == "__main__":
    main()
