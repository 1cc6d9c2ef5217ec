"""Config files that build on others: an ``include:`` list, applied before the file itself.

A run config states only what is its own and lists the shared pieces, each written once in ``configs/``::

    include: [../trainer/default.yaml, ../model/vit_b16_prompt_norms_sgd.yaml, ../data/officehome.yaml,
              ../method/ueo.yaml, ../setting/officehome/open_partial.yaml]
    seed_everything: 0

Each ``-c FILE`` on the command line becomes ``-c`` of every file it includes (depth first, paths relative to the
including file), then ``-c FILE``: later files override single keys of earlier ones, as several ``-c`` always do.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from uft.errors import InputError

KEY = "include"


def included_files(path: Path, _seen: tuple[Path, ...] = ()) -> list[Path]:
    """``path`` after every file it includes (recursively), in the order they apply."""
    if not path.is_file():
        return [path]  # jsonargparse reports a missing config file, or reads the text as YAML
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return [path]  # jsonargparse says where the YAML is broken
    includes = content.get(KEY) if isinstance(content, dict) else None
    if includes is None:
        return [path]
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(item, str) for item in includes):
        raise InputError(f"{path}: {KEY} must be a list of config files, got {includes!r}")
    files = []
    for item in includes:
        child = Path(os.path.normpath(path.parent / item))
        if not child.is_file():
            raise InputError(f"{path}: included config file not found: {item} (looked for {child})")
        if child.resolve() in _seen or child.resolve() == path.resolve():
            raise InputError(f"{path}: {item} includes itself (directly or through other files)")
        files.extend(included_files(child, (*_seen, path.resolve())))
    return [*files, path]


def applied(value: object) -> None:
    """The parser's type of the ``include`` key: the files were applied before parsing (:func:`expand_includes`),
    so the parsed value is empty, and a printed or saved config is complete without them."""
    return None


def expand_includes(args: list[str]) -> list[str]:
    """Command-line arguments with every ``-c``/``--config FILE`` preceded by the files it includes."""
    expanded, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("-c", "--config") and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif arg.startswith("--config="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            expanded.append(arg)
            i += 1
            continue
        *included, _ = included_files(Path(value))
        expanded.extend(f"--config={file}" for file in [*included, value])  # the file itself as it was given
    return expanded
