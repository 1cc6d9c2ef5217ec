"""Rendering speed of the procedural world (``uft.world.render``), in renders per second per style.

Each timed round renders ``--count`` images of one style at one size, cycling through the categories, from one
generator, after a warm-up that builds the size's texture banks; the table shows the median round. The rendering
is meant to stay well under a millisecond an image at 48 pixels: a slowdown of several times points at float64 or
denormal maths creeping into the pixel work. Prints one Markdown table. Run from the repository root::

    python bench/render_bench.py                   # a few seconds
    python bench/render_bench.py --sizes 32 48 64 --count 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from uft.world import CATEGORIES, STYLES, render


def render_rate(style: str, size: int, count: int, rng: np.random.Generator) -> float:
    """Renders per second of ``count`` images of ``style`` at ``size``, cycling through the categories."""
    start = time.perf_counter()
    for i in range(count):
        render(i % len(CATEGORIES), style, rng, size)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[48], help="image sides in pixels")
    parser.add_argument("--count", type=int, default=500, help="images per timed round")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per row (the median is shown)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for size in args.sizes:
        for style in STYLES:
            render_rate(style, size, len(CATEGORIES), rng)  # warm-up: texture banks, caches
            rate = statistics.median(render_rate(style, size, args.count, rng) for _ in range(args.repeats))
            rows.append((style, size, rate))
    machine = platform.processor() or platform.machine()
    print(f"{args.count} renders a round, median of {args.repeats}, {machine}, numpy {np.__version__}\n")
    print("| style | size | renders/s | ms/render |\n|---|---:|---:|---:|")
    for style, size, rate in rows:
        print(f"| {style} | {size} | {rate:,.0f} | {1000 / rate:.3f} |")


if __name__ == "__main__":
    main()
