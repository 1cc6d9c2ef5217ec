"""Config files that include others: order, relative paths, and the one-line errors."""

from __future__ import annotations

import pytest

from uft.config_files import expand_includes, included_files
from uft.errors import InputError

from .helpers import printed_config


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_includes_apply_first_depth_first_relative_to_the_including_file(tmp_path):
    base = write(tmp_path / "parts" / "base.yaml", "trainer:\n  max_epochs: 3\n")
    mid = write(tmp_path / "parts" / "mid.yaml", "include: base.yaml\ntrainer:\n  max_epochs: 4\n")
    other = write(tmp_path / "other.yaml", "seed_everything: 1\n")
    top = write(tmp_path / "run" / "top.yaml", "include: [../parts/mid.yaml, ../other.yaml]\nseed_everything: 2\n")
    assert included_files(top) == [base, mid, other, top]
    args = expand_includes(["fit", "-c", str(top), "--trainer.devices=1", "--config=x: 1"])
    assert args == ["fit", *(f"--config={p}" for p in (base, mid, other, top)), "--trainer.devices=1", "--config=x: 1"]


def test_later_files_override_single_keys(tmp_path, capsys):
    from .args import ROOT

    run = write(tmp_path / "run.yaml", f"include: [{ROOT / 'configs' / 'demo.yaml'}]\ntrainer:\n  max_epochs: 2\n")
    config = printed_config(["-c", str(run)], capsys)
    assert config["trainer"]["max_epochs"] == 2  # this file's own value
    assert config["trainer"]["default_root_dir"] == "runs/demo"  # the rest of the included trainer settings
    assert config["model"]["objective"]["class_path"] == "uft.objectives.UEO"  # included by the included file


def test_bad_includes_are_one_clear_error(tmp_path):
    missing = write(tmp_path / "missing.yaml", "include: [nope.yaml]\n")
    with pytest.raises(InputError, match=r"missing.yaml: included config file not found: nope.yaml"):
        included_files(missing)
    write(tmp_path / "a.yaml", "include: b.yaml\n")
    loop = write(tmp_path / "b.yaml", "include: a.yaml\n")
    with pytest.raises(InputError, match="includes itself"):
        included_files(loop)
    wrong = write(tmp_path / "wrong.yaml", "include: {a: 1}\n")
    with pytest.raises(InputError, match="include must be a list of config files"):
        included_files(wrong)


# --- broken YAML: the file, the line and the column --------------------------------------------------------------

TAB = "trainer:\n  max_epochs: 1\n\tdevices: 1\n"  # line 3 starts with a tab
BRACKET = "model:\n  ctx_init: [a, photo\ntrainer:\n  max_epochs: 1\n"  # the bracket opened on line 2 is never closed


def test_broken_yaml_names_the_file_line_and_column(tmp_path):
    with pytest.raises(InputError) as tab:
        included_files(write(tmp_path / "tab.yaml", TAB))
    assert str(tab.value) == f"{tmp_path / 'tab.yaml'}:3:1: a tab (YAML indents with spaces)"
    with pytest.raises(InputError) as bracket:
        included_files(write(tmp_path / "bracket.yaml", BRACKET))
    assert str(bracket.value).startswith(f"{tmp_path / 'bracket.yaml'}:3:")
    assert "started at line 2, column 13" in str(bracket.value)  # where the unclosed bracket was opened
    # in an included file: that file, not the one including it
    top = write(tmp_path / "run" / "top.yaml", "include: [../parts/broken.yaml]\nseed_everything: 0\n")
    write(tmp_path / "parts" / "broken.yaml", TAB)
    with pytest.raises(InputError, match=r"parts/broken\.yaml:3:1: a tab"):
        expand_includes(["fit", "-c", str(top)])
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("seed_everything: 0\n# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.yaml:2: not UTF-8 text \(byte 0xe9\)"):
        included_files(latin)


@pytest.mark.slow
@pytest.mark.parametrize("text", [TAB, BRACKET], ids=["tab", "bracket"])
@pytest.mark.parametrize("where", ["top", "included"])
def test_cli_reports_broken_yaml_in_one_line_naming_the_file(tmp_path, shapes_dir, text, where):
    """`uft fit -c FILE` with broken YAML in FILE or in a file it includes: one `uft: error:` line naming that file
    and line, exit status 2, no traceback, before any training."""
    import subprocess
    import sys

    from .args import ROOT, demo_args

    broken = write(tmp_path / "broken.yaml", text)
    given = broken if where == "top" else write(tmp_path / "run.yaml", "include: [broken.yaml]\nseed_everything: 0\n")
    cmd = [sys.executable, "-m", "uft", "fit", *demo_args(shapes_dir, tmp_path / "run"), "-c", str(given)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("uft: error:")]
    assert len(errors) == 1 and f"{broken}:3:" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "usage:" not in proc.stderr
    assert not (tmp_path / "run").exists()
