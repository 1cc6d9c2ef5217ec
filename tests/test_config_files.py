"""Config files that include others: order, relative paths, and the one-line errors."""

from __future__ import annotations

import pytest

from uft.config_files import expand_includes, included_files
from uft.errors import InputError

from .test_configs import printed_config


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
    from .conftest import ROOT

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
