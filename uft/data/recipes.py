"""Data recipes: data sets the project makes itself (from a seed) when their folder is missing, in one layout."""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from uft.errors import InputError

STAMP = "recipe.json"


@dataclass(frozen=True)
class DataLayout:
    """The files of a data set made by a recipe: what the data module reads when its paths are not given."""

    root: Path
    class_names: Path  # classes.txt: one name per line, in class-id order
    target_list: Path  # target.txt: the target pool, ``images/<class>/target_0000.png <label>`` lines
    test_list: Path | None  # test.txt: a separately drawn labeled test set, when the recipe makes one

    @classmethod
    def of(cls, root: str | Path) -> DataLayout:
        """The layout of the data set in ``root`` (as :func:`write_labeled_images` writes it)."""
        root = Path(root)
        test = root / "test.txt"
        return cls(root, root / "classes.txt", root / "target.txt", test if test.is_file() else None)


def write_labeled_images(
    root: Path,
    class_names: list[str],
    counts: dict[str, int],
    images: Callable[[int, int], Iterator[Image.Image]],
    digits: int = 4,
    optimize: bool = False,
) -> None:
    """Write a data set in the recipes' layout: ``classes.txt``, ``images/<class>/<split>_<i>.png`` and one list
    file ``<split>.txt`` (``path label`` lines) per split with images.

    Args:
        root: the (empty) folder.
        class_names: in class-id order.
        counts: images per class of each split, e.g. ``{"target": 64, "test": 32}``.
        images: ``images(split index, label)`` yields that split's images of that class, in file order (its first
            ``counts[split]`` are drawn).
        digits: width of the image number in file names.
        optimize: let PIL look for the smallest PNG encoding (slower; same pixels).
    """
    (root / "classes.txt").write_text("\n".join(class_names) + "\n")
    for split_index, (split, count) in enumerate(counts.items()):
        if not count:
            continue
        lines = []
        for label, name in enumerate(class_names):
            saved = save_images(root, f"images/{name}", split, images(split_index, label), count, digits, optimize)
            lines += [f"{rel} {label}" for rel in saved]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")


def save_images(
    root: Path,
    folder: str,
    split: str,
    images: Iterable[Image.Image],
    count: int,
    digits: int = 4,
    optimize: bool = False,
) -> list[str]:
    """Save the first ``count`` of ``images`` as ``root/<folder>/<split>_<i>.png`` (the folder made first); returns
    their paths relative to ``root``, in order (the list-file paths of :func:`write_labeled_images`)."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    saved = []
    for i, image in enumerate(itertools.islice(images, count)):
        rel = f"{folder}/{split}_{i:0{digits}d}.png"
        image.save(root / rel, optimize=optimize)
        saved.append(rel)
    return saved


class DataRecipe:
    """Makes a data set into a folder. ``ensure(root)`` builds it once, atomically (in a temporary folder then
    renamed), and refuses a folder that holds something else, so nothing a user wrote is overwritten. It renders
    only into a new (or empty) folder whose parent exists (a mistyped root is an error, not a new tree of files),
    says where it renders and how much, and returns the data set's :class:`DataLayout`."""

    def default_root(self) -> Path | None:
        """Where the data set goes when no root is given (a folder named by the recipe's parameters, so that
        changing a parameter never finds another parameter's data), or ``None``."""
        return None

    def params(self) -> dict:
        """What identifies the data this recipe makes (written to ``recipe.json``)."""
        raise NotImplementedError

    def make(self, root: Path) -> None:
        """Write the data set into the empty folder ``root``."""
        raise NotImplementedError

    def describe(self) -> str:
        """What ``make`` writes, in a few words (e.g. ``2304 images of 48x48 pixels``)."""
        return "the data set"

    def class_names(self) -> list[str]:
        """The class names of the data set ``make`` writes (its ``classes.txt``), known without rendering: the data
        module tells the model its classes before the data is made."""
        raise NotImplementedError

    def ensure(self, root: str | Path | None = None) -> DataLayout:
        """The data set in ``root`` (default: :meth:`default_root`), rendered first when the folder is missing or
        empty. Every process of a distributed launch may call it at once: each renders into a scratch folder of its
        own, the first to rename it into place wins, and the others remove theirs and use that one.

        Raises:
            InputError: no root, a root whose parent is missing, or a folder this recipe did not make.
        """
        root = self.target_root(root)
        stamp = {"recipe": f"{type(self).__module__}.{type(self).__qualname__}", **self.params()}
        if root.is_dir() and not any(root.iterdir()):
            with contextlib.suppress(FileNotFoundError):  # another rank, started on the same empty folder, was first
                root.rmdir()  # an empty folder: made into, as a new one
        if root.exists():
            return self._made(root, stamp)
        print(f"uft: rendering {self.describe()} into {root.resolve()} ...", file=sys.stderr, flush=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
        try:
            self.make(scratch)
            (scratch / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            size = sum(f.stat().st_size for f in scratch.rglob("*") if f.is_file())
            scratch.rename(root)
        except OSError as err:
            shutil.rmtree(scratch, ignore_errors=True)
            # Every rank of torchrun or srun renders when the folder is missing; the first rename wins, and the
            # others find its folder in the way: Linux says ENOTEMPTY (a rename onto a non-empty folder), other
            # systems EEXIST. That folder is then the data set, if it is this recipe's.
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not root.is_dir():
                raise
            print(f"uft: {root} was rendered by another process meanwhile; using it", file=sys.stderr, flush=True)
            return self._made(root, stamp)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        print(f"uft: rendered {root} ({size / 1e6:.1f} MB)", file=sys.stderr, flush=True)
        return DataLayout.of(root)

    def target_root(self, root: str | Path | None = None) -> Path:
        """The folder :meth:`ensure` makes the data set in: ``root``, else :meth:`default_root`. A cheap check (no
        rendering), which the data module runs at construction.

        Raises:
            InputError: no root, or a missing root whose parent is missing too (a mistyped root is an error, not a
                new tree of files).
        """
        if root is None:
            root = self.default_root()
            if root is None:
                raise InputError(f"{type(self).__name__} needs data.root, the folder to make its data set in")
        root = Path(root)
        if not root.exists() and not root.parent.is_dir():
            raise InputError(
                f"data.root {root}: its parent folder {root.parent.resolve()} does not exist; a data recipe renders "
                "only into a new folder of an existing one (check the path, or create the parent first)"
            )
        return root

    @staticmethod
    def _made(root: Path, stamp: dict) -> DataLayout:
        """The layout of the existing folder ``root``, if this recipe (``stamp``) made it; an
        :class:`~uft.errors.InputError` otherwise, so that a folder holding something else is never read as it."""
        found = root / STAMP
        if not found.is_file() or json.loads(found.read_text()) != stamp:
            raise InputError(
                f"{root} exists but was not made by this recipe ({stamp}): remove it or choose another data.root"
            )
        return DataLayout.of(root)
