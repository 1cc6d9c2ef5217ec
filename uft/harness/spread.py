"""Spread over seeds: mean ± sample standard deviation, paired differences and how often they are positive.

The one place where a table of the harness turns several runs into a cell: the comparison runner over seeds
(:mod:`uft.harness.compare`), the demo world's sweep (``bench/world_sweep.py``) and the benchmark sweep's mean over
domains (:mod:`uft.harness.sweep`). Values are fractions in [0, 1], shown in percent with one decimal; ``None`` is
a metric that is undefined in a run (AUROC without unknowns) and is left out, never counted as zero.

The standard deviation is the sample one (``statistics.stdev``, n - 1): the seeds are a sample of the seeds one
could have drawn. A paired difference subtracts the reference's value at the same seed, so what the seed moves in
both runs (the data order, the draw of a random backbone) cancels out of the spread.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percent(value: float | None) -> str:
    """A fraction in percent with one decimal; ``n/a`` where undefined."""
    return "n/a" if value is None else f"{100 * value:.1f}"


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of the defined values; ``None`` when none is."""
    defined = [v for v in values if v is not None]
    return statistics.fmean(defined) if defined else None


def spread_cell(values: Sequence[float | None]) -> str:
    """``mean ± std`` in percent (sample standard deviation); the value alone when only one is defined.

    ``(n=k)`` follows when only k of the values are defined, so a mean over fewer seeds is not read as one over
    all of them; ``n/a`` when none is.
    """
    defined = [v for v in values if v is not None]
    if not defined:
        return "n/a"
    cell = percent(statistics.fmean(defined))
    if len(defined) > 1:
        cell += f" ± {100 * statistics.stdev(defined):.1f}"
    return cell if len(defined) == len(values) else f"{cell} (n={len(defined)})"


def paired_differences(values: Sequence[float | None], reference: Sequence[float | None]) -> list[float]:
    """``value - reference`` seed by seed (the two sequences are aligned by seed), where both are defined."""
    if len(values) != len(reference):
        raise ValueError(f"paired values need one reference per seed, got {len(values)} and {len(reference)}")
    return [v - r for v, r in zip(values, reference, strict=True) if v is not None and r is not None]


def positive_count(differences: Sequence[float]) -> int:
    """How many differences are above zero (a tie is not counted)."""
    return sum(d > 0 for d in differences)


def difference_cell(differences: Sequence[float]) -> str:
    """``+12.0 ± 1.6 (3/3)``: the mean difference in percentage points with its sign, the sample standard deviation
    of the differences (left out for one), and (differences above zero / differences); ``n/a`` for none."""
    if not differences:
        return "n/a"
    cell = f"{round(100 * statistics.fmean(differences), 1) or 0.0:+.1f}"  # or: no "-0.0" from rounding
    if len(differences) > 1:
        cell += f" ± {100 * statistics.stdev(differences):.1f}"
    return f"{cell} ({positive_count(differences)}/{len(differences)})"
