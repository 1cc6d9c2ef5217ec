"""per_class.csv against a plain-Python computation over the samples, on generated scores and on a run's own
scores.pt; the recall changes the comparison runner draws."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pytest
import torch

from uft.cli import cli_main
from uft.figures import recall_changes_figure
from uft.metrics import open_set_values
from uft.per_class import PER_CLASS_COLUMNS, largest_recall_changes, per_class_csv, per_class_rows
from uft.scores import FixedThreshold

from .args import demo_args

NAMES = ["house", "car", "cup", "key", "fish"]


def by_hand(split: str, ood: list, preds: list, labels: list, threshold: float, names: list[str]) -> list[dict]:
    """The rows of per_class.csv, one sample at a time: the definitions of the module docstring, written anew."""
    k, n = len(names), len(labels)

    def top(went: Counter) -> tuple:
        if not went:
            return None, None
        best = min(went, key=lambda c: (-went[c], c))  # the most images, then the lowest id
        return names[best], went[best]

    rows = []
    for c in range(k):
        mine = [i for i in range(n) if labels[i] == c]
        correct = sum(1 for i in mine if preds[i] == c)
        rejected = sum(1 for i in mine if ood[i] < threshold)
        went = Counter(preds[i] for i in mine if ood[i] >= threshold and preds[i] != c)
        name, count = top(went)
        rows.append(
            {
                "split": split,
                "class_id": c,
                "class": names[c],
                "count": len(mine),
                "correct": correct,
                "recall": correct / len(mine) if mine else None,
                "called_unknown": rejected,
                "top_confusion": name,
                "top_confusion_count": count,
            }
        )
    unknown = [i for i in range(n) if labels[i] >= k]
    name, count = top(Counter(preds[i] for i in unknown if ood[i] >= threshold))
    rows.append(
        {
            "split": split,
            "class_id": -1,
            "class": "unknown",
            "count": len(unknown),
            "correct": None,
            "recall": None,
            "called_unknown": sum(1 for i in unknown if ood[i] < threshold),
            "top_confusion": name,
            "top_confusion_count": count,
        }
    )
    return rows


def as_cells(rows: list[dict]) -> list[dict]:
    """Rows as per_class.csv's reader sees them: strings, empty for None, the recall to 6 decimals."""
    return [
        {k: "" if v is None else f"{v:.6f}" if isinstance(v, float) else str(v) for k, v in row.items()} for row in rows
    ]


def random_split(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Scores on a coarse grid (many ties, some at the threshold), class 3 absent, unknown labels 5 to 7."""
    gen = torch.Generator().manual_seed(seed)
    n = 200
    labels = torch.tensor([0, 1, 2, 4, 5, 6, 7])[torch.randint(0, 7, (n,), generator=gen)]
    # Mostly right, so that the confusions are few and ties between them frequent.
    preds = torch.where(torch.rand(n, generator=gen) < 0.5, labels, torch.randint(0, 5, (n,), generator=gen))
    preds = torch.where(preds >= 5, torch.randint(0, 5, (n,), generator=gen), preds)
    ood = torch.randint(0, 8, (n,), generator=gen).float() / 8
    return ood, preds, labels, 0.5  # 0.5 is one of the grid's values


@pytest.mark.parametrize("seed", range(5))
def test_rows_match_a_sample_by_sample_computation_with_ties_and_an_absent_class(seed):
    ood, preds, labels, threshold = random_split(seed)
    assert (ood == threshold).any() and not (labels == 3).any()
    rows = per_class_rows("test", ood, preds, labels, threshold, NAMES)
    assert rows == by_hand("test", ood.tolist(), preds.tolist(), labels.tolist(), threshold, NAMES)
    assert rows[3]["count"] == 0 and rows[3]["recall"] is None and rows[3]["top_confusion"] is None
    # The report's numbers are the metrics': PACC the mean recall of the classes present, UNK the unknowns rejected.
    values = open_set_values(ood, preds, labels, len(NAMES), FixedThreshold(threshold))
    recalls = [row["recall"] for row in rows[:-1] if row["recall"] is not None]
    assert sum(recalls) / len(recalls) == pytest.approx(values["pacc"], abs=1e-12)
    assert rows[-1]["called_unknown"] / rows[-1]["count"] == pytest.approx(values["unknown_acc"], abs=1e-12)


def test_top_confusion_tie_goes_to_the_lowest_class_and_a_rejected_mistake_is_no_confusion():
    """Class 0: two images went to class 4 and two to class 2, accepted; three went to class 1 but were rejected
    (below the threshold), so they are called unknown and take nothing. The unknowns: one accepted as class 3 and
    one as class 1, one rejected."""
    preds = torch.tensor([4, 4, 2, 2, 1, 1, 1, 0, 3, 1, 0])
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 5, 6, 5])
    ood = torch.tensor([0.9, 0.9, 0.5, 0.7, 0.1, 0.1, 0.2, 0.3, 0.6, 0.8, 0.2])
    rows = per_class_rows("target", ood, preds, labels, 0.5, NAMES)
    first, unknown = rows[0], rows[-1]
    assert (first["count"], first["correct"], first["called_unknown"]) == (8, 1, 4)
    assert (first["top_confusion"], first["top_confusion_count"]) == ("cup", 2)  # cup (2) before fish (4)
    assert (unknown["count"], unknown["called_unknown"]) == (3, 1)
    assert (unknown["top_confusion"], unknown["top_confusion_count"]) == ("car", 1)  # car (1) before key (3)


def test_csv_has_the_documented_columns_and_round_trips():
    ood, preds, labels, threshold = random_split(0)
    rows = per_class_rows("test", ood, preds, labels, threshold, NAMES)
    read = list(csv.DictReader(io.StringIO(per_class_csv(rows))))
    assert list(read[0]) == list(PER_CLASS_COLUMNS) == list(rows[0])
    assert read == as_cells(rows)


def test_validate_writes_per_class_csv_that_matches_its_scores_and_pacc(shapes_dir, tmp_path):
    """`uft validate` on the tiny CLIP: per_class.csv holds, for each split of scores.pt, the rows the sample by
    sample computation gives from that file's scores, and the mean recall of the test split's classes present is
    metrics.json's test PACC."""
    cli_main(["validate", *demo_args(shapes_dir, tmp_path)])
    (path,) = tmp_path.rglob("per_class.csv")
    saved = torch.load(path.parent / "scores.pt", weights_only=True)
    names = saved["class_names"]
    assert len(names) == saved["num_known"] == 5
    with path.open(newline="") as handle:
        table = list(csv.DictReader(handle))
    expected = []
    for split, r in saved["splits"].items():
        expected += by_hand(split, r["ood"].tolist(), r["preds"].tolist(), r["labels"].tolist(), r["threshold"], names)
    assert sorted(saved["splits"]) == ["target", "test"] and table == as_cells(expected)
    metrics = json.loads((path.parent / "metrics.json").read_text())
    recalls = [float(row["recall"]) for row in table if row["split"] == "test" and row["recall"]]
    assert len(recalls) == 5 and abs(sum(recalls) / len(recalls) - metrics["test"]["pacc"]) <= 1e-6
    unknown = next(row for row in table if row["split"] == "test" and row["class"] == "unknown")
    assert int(unknown["count"]) == 12  # test classes 5 to 7, 4 images each


def recall_by_hand(preds: list, labels: list, k: int) -> list:
    rows = []
    for c in range(k):
        mine = [i for i in range(len(labels)) if labels[i] == c]
        rows.append(sum(1 for i in mine if preds[i] == c) / len(mine) if mine else None)
    return rows


def changes_by_hand(before: dict, after: dict, k: int, limit: int) -> list[tuple[int, float]]:
    """The classes present in both runs whose recall changed, by decreasing size of the change, then class id."""
    old = recall_by_hand(before["preds"].tolist(), before["labels"].tolist(), k)
    new = recall_by_hand(after["preds"].tolist(), after["labels"].tolist(), k)
    changed = [(c, new[c] - old[c]) for c in range(k) if old[c] is not None and new[c] is not None and new[c] != old[c]]
    changed.sort(key=lambda item: (-abs(item[1]), item[0]))
    return changed[:limit]


@pytest.mark.parametrize("seed", range(5))
def test_largest_recall_changes_are_the_classes_a_sample_by_sample_computation_picks(seed):
    gen = torch.Generator().manual_seed(seed)
    k, n = 14, 400
    labels = torch.randint(0, k + 3, (n,), generator=gen)
    labels[labels == 6] = k  # class 6 absent
    runs = []
    for _ in range(2):  # each run right on a share of each class's images that the run draws: gains and losses
        right = torch.rand(n, generator=gen) < torch.rand(k + 3, generator=gen)[labels]
        runs.append({"labels": labels, "preds": torch.where(right, labels, k - 1 - labels % k)})
    before, after = runs
    changes = largest_recall_changes(before, after, k, limit=10)
    expected = changes_by_hand(before, after, k, 10)
    assert [c for c, _ in changes] == [c for c, _ in expected] and 6 not in [c for c, _ in changes]
    assert [d for _, d in changes] == pytest.approx([d for _, d in expected], abs=1e-12)
    assert len(changes) == 10  # 13 classes present: the limit binds
    assert any(d < 0 for _, d in changes) and any(d > 0 for _, d in changes)


def test_recall_changes_figure_draws_a_panel_per_method_largest_gain_on_top():
    panels = {"ueo - zeroshot": [("cup", -0.25), ("car", 0.5), ("key", 0.1)], "im - zeroshot": []}
    figure = recall_changes_figure(panels, "test")
    first, second = figure.axes
    assert [t.get_text() for t in first.get_yticklabels()] == ["cup", "key", "car"]  # from the bottom
    assert [round(p.get_width(), 6) for p in first.patches] == [-25.0, 10.0, 50.0]
    assert first.get_xlim() == second.get_xlim() == pytest.approx((-55.0, 55.0))
    assert not second.patches and second.texts[0].get_text() == "no class changed"
