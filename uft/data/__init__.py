"""Target data: class splits, list files and folders, datasets, transforms and the LightningDataModule."""

from uft.data.lists import Sample, read_class_names
from uft.data.splits import ClassSplit, parse_class_ids

__all__ = ["ClassSplit", "Sample", "parse_class_ids", "read_class_names"]
