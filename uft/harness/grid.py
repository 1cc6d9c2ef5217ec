"""Hyperparameter grids and label-free model selection over them: what the comparison runner and the sweep do with
``--grid model.prompt_lr=0.01,0.03,0.1`` (repeatable: the runs are the product of the options' values).

Every run of a grid logs the label-free criteria of :mod:`uft.selection` on the target set (metrics.json
``selection``). For each method, :func:`selection_report` says which run each criterion would pick without labels
and what that pick scores on the labeled test split, next to the grid's best run (by test HM: what a labeled
validation set would pick) and its median; a rank correlation per criterion says how well it orders the whole grid.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass

from uft.errors import InputError
from uft.harness.spread import percent
from uft.selection import HIGHER_IS_BETTER, SELECTION_NAMES, SELECTION_SPLIT

TEST_COLUMNS = ("pacc", "auroc", "hm")  # of the test split, in the report
RANKED_BY = "hm"  # the test metric the criteria are judged against


@dataclass(frozen=True)
class GridPoint:
    """One combination of the grid's values: ``((key, value), ...)`` in the order the options were given."""

    settings: tuple[tuple[str, str], ...]

    @property
    def args(self) -> list[str]:
        """The run's CLI arguments, ``--key=value``."""
        return [f"--{key}={value}" for key, value in self.settings]

    @property
    def name(self) -> str:
        """``key=value`` pairs, comma-separated: the label of the run in the tables."""
        return ",".join(f"{key.rpartition('.')[2]}={value}" for key, value in self.settings)

    @property
    def folder(self) -> str:
        """A folder name for the run: the label with characters a path would misread replaced."""
        return "".join(c if c.isalnum() or c in "=.,-_" else "_" for c in self.name)


def parse_grid(specs: list[str] | None) -> list[GridPoint]:
    """The grid of ``--grid KEY=V1,V2,...`` options (the product of their values), or ``[]`` without any.

    Raises:
        InputError: an option without ``=`` or without a value, an option that does not start with a config key,
            a value given twice, a key given twice, or two options whose points name the same folder.
    """
    axes: dict[str, list[str]] = {}
    for spec in specs or []:
        key, sep, values = spec.partition("=")
        key = key.strip().removeprefix("--")
        options = [v.strip() for v in values.split(",")]
        if not sep or not key or not all(options):
            raise InputError(f"--grid {spec!r}: expected KEY=V1,V2,... (e.g. model.prompt_lr=0.01,0.03,0.1)")
        if key in axes:
            raise InputError(f"--grid gives {key} twice: put all its values in one option")
        if len(set(options)) != len(options):
            raise InputError(f"--grid {spec!r} repeats a value: each run would be made twice")
        axes[key] = options
    points = [GridPoint(tuple(zip(axes, values))) for values in itertools.product(*axes.values())] if axes else []
    folders = [p.folder for p in points]
    if len(set(folders)) != len(folders):
        raise InputError(f"--grid: two runs would share a folder ({', '.join(folders)}): use distinct keys' names")
    return points


@dataclass
class Candidate:
    """One run of a grid: its method (the group it is chosen within), grid point, criteria and test metrics."""

    method: str
    point: str
    criteria: dict[str, float | None]
    test: dict[str, float | None]

    @classmethod
    def of(cls, method: str, point: str, metrics: dict[str, dict[str, float | None]]) -> Candidate:
        """From a run's metrics (split -> metric -> value, as metrics.json and the runner's rows hold them)."""
        return cls(method, point, dict(metrics.get(SELECTION_SPLIT, {})), dict(metrics.get("test", {})))


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (Pearson's on average ranks, ties share their mean rank); NaN with fewer than
    three pairs or a constant side."""
    if len(x) < 3:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _defined(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def pick(candidates: list[Candidate], criterion: str) -> Candidate | None:
    """The run ``criterion`` would choose (the first of equal ones, in grid order); None when no run has it."""
    scored = [c for c in candidates if _defined(c.criteria.get(criterion))]
    if not scored:
        return None
    sign = 1.0 if HIGHER_IS_BETTER[criterion] else -1.0
    return max(scored, key=lambda c: sign * c.criteria[criterion])


def method_selection(candidates: list[Candidate]) -> list[dict]:
    """One method's grid: a row per criterion (its pick, the pick's test metrics, the rank correlation of the
    criterion, oriented so that higher means "pick me", with test HM over the runs, and the HM lost against the
    best run), then the best run by test HM and the grid's median."""
    ranked = [c for c in candidates if _defined(c.test.get(RANKED_BY))]
    best = max(ranked, key=lambda c: c.test[RANKED_BY]) if ranked else None
    rows = []
    for criterion in SELECTION_NAMES:
        chosen = pick(ranked, criterion)
        if chosen is None:
            continue
        scored = [c for c in ranked if _defined(c.criteria.get(criterion))]
        sign = 1.0 if HIGHER_IS_BETTER[criterion] else -1.0
        rho = spearman([sign * c.criteria[criterion] for c in scored], [c.test[RANKED_BY] for c in scored])
        lost = best.test[RANKED_BY] - chosen.test[RANKED_BY]
        rows.append({"choice": criterion, "point": chosen.point, **_test(chosen), "rho": rho, "hm_lost": lost})
    if best is not None:
        rows.append({"choice": f"best test {RANKED_BY} (labels)", "point": best.point, **_test(best)})
        median = {m: _median([c.test.get(m) for c in ranked]) for m in TEST_COLUMNS}
        rows.append({"choice": "median of the grid", "point": f"{len(ranked)} runs", **median})
    return rows


def _median(values: list[float | None]) -> float | None:
    defined = [v for v in values if _defined(v)]
    return statistics.median(defined) if defined else None


def _test(candidate: Candidate) -> dict[str, float | None]:
    return {m: candidate.test.get(m) for m in TEST_COLUMNS}


def selection_report(candidates: list[Candidate]) -> str:
    """Markdown: per method with two runs or more, :func:`method_selection`'s rows (test metrics in percent, rho as
    a number, HM lost in points)."""
    sections = []
    for method in dict.fromkeys(c.method for c in candidates):
        group = [c for c in candidates if c.method == method]
        if len(group) < 2:
            continue
        head = ["chosen by", "run", *(f"test {m.upper()}" for m in TEST_COLUMNS), "rank corr. with test HM", "HM lost"]
        lines = [f"**{method}** ({len(group)} runs)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in method_selection(group):
            rho, lost = row.get("rho"), row.get("hm_lost")
            cells = [row["choice"], row["point"], *(percent(row[m]) for m in TEST_COLUMNS)]
            cells += ["" if rho is None else ("n/a" if math.isnan(rho) else f"{rho:+.2f}")]
            cells += [percent(lost) if "hm_lost" in row else ""]
            lines.append("| " + " | ".join(cells) + " |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)
