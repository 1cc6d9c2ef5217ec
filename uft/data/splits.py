"""Class splits: which class ids are known, which appear in the unlabeled target data, which in the test data."""

from __future__ import annotations

from dataclasses import dataclass

from uft.errors import InputError


def parse_class_ids(spec: str, num_classes: int) -> list[int]:
    """Class ids from a spec such as ``"0-34,50-59"`` (inclusive ranges); an empty spec means every class."""
    if not spec.strip():
        return list(range(num_classes))
    ids: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-"))
                if lo > hi:
                    raise ValueError
                ids.update(range(lo, hi + 1))
            else:
                ids.add(int(part))
        except ValueError:
            raise InputError(f"bad class-id range {part!r} in {spec!r}: expected ids like '0-34,50-59'") from None
    return sorted(ids)


@dataclass
class ClassSplit:
    """Which class ids play which role. Known classes are always the first ``num_known`` ids; images of test
    classes outside the known set are the unknowns.

    Args:
        num_known: number K of known (named) classes: ids ``0 .. K-1``.
        target_classes: ids present in the unlabeled target data, e.g. ``"0-34,50-59"``; empty for all.
        test_classes: ids present in the test data; empty for all.
    """

    num_known: int
    target_classes: str = ""
    test_classes: str = ""

    def resolve(self, num_classes: int, source: str) -> tuple[list[int], list[int]]:
        """Check the split against ``num_classes`` names (read from ``source``); return target and test ids."""
        if not 0 < self.num_known <= num_classes:
            raise InputError(f"split.num_known={self.num_known} but {source} names {num_classes} classes")
        target = parse_class_ids(self.target_classes, num_classes)
        test = parse_class_ids(self.test_classes, num_classes)
        for name, ids in (("target_classes", target), ("test_classes", test)):
            if ids[-1] >= num_classes:
                raise InputError(
                    f"split.{name} uses class id {ids[-1]} but {source} names only {num_classes} classes "
                    f"(ids 0-{num_classes - 1})"
                )
        return target, test
