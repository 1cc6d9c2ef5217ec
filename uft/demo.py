"""The embedded default (``make demo``): zero-shot, UEO and the baselines on the demo data, in one table.

It is the comparison runner (:mod:`uft.compare`) on ``configs/demo.yaml``; run it from the repository root.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from uft.compare import compare, markdown_table

METHODS = ("zeroshot", "zeroshot_ensemble", "ueo", "ent", "im", "upl", "pouf", "ueo_oracle")
NOTICE = (
    "NOTE: the demo's tiny CLIP has random weights and its images are generated shapes: these numbers exercise\n"
    "the pipeline (data, zero-shot pass, training, metrics, checkpoints) and carry no meaning."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/demo.yaml", help="base config of every run")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder of the runs and tables")
    args, extra = parser.parse_known_args()
    methods = [Path("configs/method") / f"{name}.yaml" for name in METHODS]
    rows = compare([args.config], methods, args.out, extra)
    print(f"\n{NOTICE}\n\n{markdown_table(rows)}\n\nwritten: {args.out}/comparison.md, {args.out}/comparison.csv")


if __name__ == "__main__":
    main()
