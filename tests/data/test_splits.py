"""Class splits: class-id specs (`parse_class_ids`) and the target and test classes a `ClassSplit` resolves to."""

from __future__ import annotations

import pytest

from uft.data.splits import ClassSplit, parse_class_ids
from uft.errors import InputError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0-34,50-59", list(range(35)) + list(range(50, 60))),
        ("3", [3]),
        ("5, 1", [1, 5]),
        ("0-3,2-5", [0, 1, 2, 3, 4, 5]),
        ("", list(range(65))),
        ("  ", list(range(65))),
    ],
)
def test_parse_class_ids(spec, expected):
    """Inclusive ranges and single ids, sorted and deduplicated; an empty spec means every class."""
    assert parse_class_ids(spec, 65) == expected


@pytest.mark.parametrize(("spec", "part"), [("5-2", "5-2"), ("a-b", "a-b"), ("0-4,x", "x"), ("0-3-5", "0-3-5")])
def test_parse_class_ids_rejects_bad_spec(spec, part):
    """A reversed or non-numeric range is an InputError naming the bad part and the whole spec."""
    with pytest.raises(InputError) as err:
        parse_class_ids(spec, 65)
    assert repr(part) in str(err.value)
    assert repr(spec) in str(err.value)


@pytest.mark.parametrize(
    ("num_known", "target", "test", "expected_target"),
    [
        (50, "0-49", "0-64", list(range(50))),  # closed
        (50, "0-34", "0-64", list(range(35))),  # partial
        (50, "0-59", "0-64", list(range(60))),  # open
        (50, "0-34,50-59", "0-64", list(range(35)) + list(range(50, 60))),  # open-partial
    ],
)
def test_class_split_office_home(num_known, target, test, expected_target):
    """The Office-Home settings resolve to the right target ids and all 65 test ids."""
    target_ids, test_ids = ClassSplit(num_known, target, test).resolve(65, "classes.txt")
    assert target_ids == expected_target
    assert test_ids == list(range(65))


@pytest.mark.parametrize("num_known", [66, 0])
def test_class_split_num_known_out_of_range(num_known):
    """num_known outside 1..number of names is an InputError naming the value and the source of the names."""
    with pytest.raises(InputError) as err:
        ClassSplit(num_known).resolve(65, "oh/classes.txt")
    assert f"num_known={num_known}" in str(err.value)
    assert "oh/classes.txt" in str(err.value)


@pytest.mark.parametrize(("field", "spec", "bad_id"), [("target_classes", "0-65", 65), ("test_classes", "3,70", 70)])
def test_class_split_id_beyond_names(field, spec, bad_id):
    """A class id past the last name is an InputError naming the field, the id and the source."""
    with pytest.raises(InputError) as err:
        ClassSplit(50, **{field: spec}).resolve(65, "oh/classes.txt")
    message = str(err.value)
    assert f"split.{field}" in message and f"class id {bad_id}" in message and "oh/classes.txt" in message
