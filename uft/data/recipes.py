"""Data recipes: data sets the project makes itself (from a seed) when their folder is missing."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from uft.errors import InputError

STAMP = "recipe.json"


class DataRecipe:
    """Makes a data set into a folder. ``ensure(root)`` builds it once, atomically (in a temporary folder then
    renamed), and refuses a folder that holds something else, so nothing a user wrote is overwritten."""

    def params(self) -> dict:
        """What identifies the data this recipe makes (written to ``recipe.json``)."""
        raise NotImplementedError

    def make(self, root: Path) -> None:
        """Write the data set into the empty folder ``root``."""
        raise NotImplementedError

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
        root.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
        try:
            self.make(scratch)
            (scratch / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            scratch.rename(root)
        except FileExistsError:  # another process made it meanwhile
            shutil.rmtree(scratch, ignore_errors=True)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return root
