"""Data recipes: data sets the project makes itself (from a seed) when their folder is missing."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from uft.errors import InputError

STAMP = "recipe.json"


class DataRecipe:
    """Makes a data set into a folder. ``ensure(root)`` builds it once, atomically (in a temporary folder then
    renamed), and refuses a folder that holds something else, so nothing a user wrote is overwritten. It renders
    only into a folder whose parent exists (a mistyped root is an error, not a new tree of files) and says where
    it renders and how much."""

    def params(self) -> dict:
        """What identifies the data this recipe makes (written to ``recipe.json``)."""
        raise NotImplementedError

    def make(self, root: Path) -> None:
        """Write the data set into the empty folder ``root``."""
        raise NotImplementedError

    def describe(self) -> str:
        """What ``make`` writes, in a few words (e.g. ``2304 images of 48x48 pixels``)."""
        return "the data set"

    def ensure(self, root: str | Path) -> Path:
        root = Path(root)
        stamp = {"recipe": f"{type(self).__module__}.{type(self).__qualname__}", **self.params()}
        if root.exists():
            found = root / STAMP
            if not found.is_file() or json.loads(found.read_text()) != stamp:
                raise InputError(
                    f"{root} exists but was not made by this recipe ({stamp}): remove it or choose another data.root"
                )
            return root
        if not root.parent.is_dir():
            raise InputError(
                f"data.root {root}: its parent folder {root.parent.resolve()} does not exist; a data recipe renders "
                "only into a new folder of an existing one (check the path, or create the parent first)"
            )
        print(f"uft: rendering {self.describe()} into {root.resolve()} ...", file=sys.stderr, flush=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
        try:
            self.make(scratch)
            (scratch / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            size = sum(f.stat().st_size for f in scratch.rglob("*") if f.is_file())
            scratch.rename(root)
            print(f"uft: rendered {root} ({size / 1e6:.1f} MB)", file=sys.stderr, flush=True)
        except FileExistsError:  # another process made it meanwhile
            shutil.rmtree(scratch, ignore_errors=True)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return root
