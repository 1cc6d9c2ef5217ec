"""The embedded default (``make demo``): zero-shot, UEO and the baselines on the world benchmark, in one table.

It is the comparison runner (:mod:`uft.compare`) on ``configs/demo.yaml``: the tiny CLIP pretrained in this
repository, adapted to a fog-shifted rendering of its world with unknown categories (open-partial setting; see
docs/demo.md). Run it from the repository root.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from uft.compare import compare, markdown_table

METHODS = ("zeroshot", "zeroshot_ensemble", "ueo", "ent", "im", "upl", "pouf", "ueo_oracle")
NOTICE = (
    "World benchmark, open-partial: 12 named categories under fog, 6 unknown categories in the unlabeled target\n"
    "data, 12 more in the test split. A synthetic benchmark that exercises the method on a CPU in minutes; it is\n"
    "not a substitute for real CLIP weights (docs/demo.md). Percent; FPR95 lower is better, the rest higher."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/demo.yaml", help="base config of every run")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder of the runs and tables")
    args, extra = parser.parse_known_args()
    methods = [Path("configs/method") / f"{name}.yaml" for name in METHODS]
    rows = compare([args.config], methods, args.out, extra)
    written = f"{args.out}/comparison.md, {args.out}/comparison.csv, {args.out}/roc_test.png (ROC curves)"
    print(f"\n{NOTICE}\n\n{markdown_table(rows)}\n\nwritten: {written}")


if __name__ == "__main__":
    main()
