"""Config files that build on others: an ``include:`` list, applied before the file itself.

A run config states only what is its own and lists the shared pieces, each written once in ``configs/``::

    include: [../trainer/default.yaml, ../model/vit_b16_prompt_norms_sgd.yaml, ../data/officehome.yaml,
              ../method/ueo.yaml, ../setting/officehome/open_partial.yaml]
    seed_everything: 0

Each ``-c FILE`` on the command line becomes ``-c`` of every file it includes (depth first, paths relative to the
including file), then ``-c FILE``: later files override single keys of earlier ones, as several ``-c`` always do.
Every file, given or included, is read as YAML here first, so broken YAML (a tab, an unclosed bracket) is reported
as ``FILE:LINE:COLUMN: problem`` rather than as jsonargparse's ``"<unicode string>", line 3``, which names no file.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from uft.errors import InputError

KEY = "include"


def load(path: Path) -> object:
    """A config file's YAML; broken YAML is an :class:`~uft.errors.InputError` naming the file, line and column
    (jsonargparse's own message names neither: it parses the text, not the file)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line, byte = raw[: err.start].count(b"\n") + 1, raw[err.start]
        raise InputError(f"{path}:{line}: not UTF-8 text (byte {byte:#04x}); save the file as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(describe_yaml_error(path, err)) from None


def describe_yaml_error(path: Path, err: yaml.YAMLError) -> str:
    """``path:line:column: problem`` (1-based, as editors count), with where the broken construct started."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
    if problem.startswith("found character '\\t' that cannot start any token"):
        problem = "a tab (YAML indents with spaces)"
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    # An unclosed bracket or quote is found where the parser gave up; the line to fix is where it was opened.
    if context and start and mark and (start.line, start.column) != (mark.line, mark.column):
        problem += f" ({context} started at line {start.line + 1}, column {start.column + 1})"
    return f"{where}: {problem}"


def included_files(path: Path, _seen: tuple[Path, ...] = ()) -> list[Path]:
    """``path`` after every file it includes (recursively), in the order they apply."""
    if not path.is_file():
        return [path]  # jsonargparse reports a missing config file, or reads the text as YAML
    content = load(path)
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
