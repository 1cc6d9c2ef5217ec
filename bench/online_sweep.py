"""docs/online.md's tables: zero-shot, UEO, IM and ENT on the demo's continual world stream, online and offline, over
three renderings of the stream; mean ± std and paired differences in Markdown.

Seed ``s`` renders its own stream (``WorldStream(seed=s)``: other images, another order within each segment) and
seeds the training run. An online run on loaded weights draws nothing at random (no shuffle, no augmentation), so
the rendering is what varies; an offline run also shuffles and augments by the seed. Both protocols use the demo's
settings unchanged (``configs/demo_online.yaml``; offline: ``configs/demo.yaml`` with the stream's data, 5 epochs).
Run from the repository root::

    python bench/online_sweep.py --out runs/online-sweep   # about 5 min on 2 cores

Writes ``online.md`` and ``offline.md`` (the tables of docs/online.md) into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from uft.atomic_files import write_text
from uft.harness.compare import compare, seeds_report

METHODS = ("zeroshot", "ueo", "im", "ent")
PROTOCOLS = {
    "online": ["configs/demo_online.yaml"],
    "offline": ["configs/demo.yaml", "configs/data/world_stream.yaml"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/online-sweep"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    args, extra = parser.parse_known_args()
    for protocol in args.protocols:
        rows = []
        for seed in args.seeds:
            run = [f"--data.recipe.init_args.seed={seed}", f"--seed_everything={seed}", *extra]
            methods = [Path("configs/method") / f"{m}.yaml" for m in METHODS]
            for row in compare(PROTOCOLS[protocol], methods, args.out / protocol / f"seed{seed}", run):
                row.seed, row.seed_free = seed, False  # each seed is another stream: zero-shot differs too
                rows.append(row)
        report = seeds_report(rows, args.seeds)
        write_text(args.out / f"{protocol}.md", report + "\n")
        print(f"\n# {protocol}\n\n{report}")


if __name__ == "__main__":
    main()
