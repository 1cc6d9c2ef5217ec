"""The embedded default (``make demo``): zero-shot ``validate``, then UEO ``fit``, then metrics side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from uft.cli import cli_main
from uft.metrics import METRIC_NAMES

NOTICE = (
    "NOTE: the demo's tiny CLIP has random weights and its images are generated shapes: these numbers exercise\n"
    "the pipeline (data, confidence pass, UEO training, metrics, checkpoints) and carry no meaning."
)


def run(command: str, config: str, extra: list[str]) -> dict:
    """Run one CLI subcommand in-process; return the metrics.json it wrote."""
    cli = cli_main([command, "-c", config, *extra])
    return json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())


def format_table(before: dict, after: dict, names: tuple[str, str] = ("zero-shot", "UEO")) -> str:
    """Side-by-side table of two metrics.json summaries over the evaluation splits."""
    lines = [f"{'split':<8}{'metric':<8}{names[0]:>11}{names[1]:>11}{'change':>10}"]
    for split in ("test", "target"):
        for metric in METRIC_NAMES:
            a, b = before.get(split, {}).get(metric), after.get(split, {}).get(metric)
            if a is None and b is None:
                continue
            cells = [f"{v:>11.4f}" if v is not None else f"{'n/a':>11}" for v in (a, b)]
            change = f"{b - a:>+10.4f}" if a is not None and b is not None else f"{'':>10}"
            lines.append(f"{split:<8}{metric:<8}{cells[0]}{cells[1]}{change}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/demo.yaml", help="config of both runs")
    parser.add_argument("extra", nargs="*", help="further CLI arguments for both runs, e.g. --trainer.max_epochs=1")
    args = parser.parse_args()
    if not Path(args.config).is_file():
        raise SystemExit(f"uft demo: config not found: {args.config} (run from the repository root)")
    before = run("validate", args.config, args.extra)
    after = run("fit", args.config, args.extra)
    print("\n" + NOTICE + "\n")
    print(format_table(before, after))


if __name__ == "__main__":
    main()
