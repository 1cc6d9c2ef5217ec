"""uft as a package: what needs the files of a clone (the class-name files, the configs) says so in one line
where uft is installed without them, and building the package warns about nothing in its metadata."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import uft.clip
from uft.data.check import main as check_command

from .args import ROOT
from .helpers import one_line

INSTALL_FROM_A_CLONE = "clone the repository and install it with pip install -e <clone>"


def test_without_the_clones_files_check_and_sweep_refuse_in_one_line(tmp_path, capsys, monkeypatch):
    from uft.harness.sweep import main as sweep_command

    site = tmp_path / "site-packages"  # where an installed uft sits: the package alone
    site.mkdir()
    monkeypatch.setattr(uft.clip, "CHECKOUT", site)
    root = tmp_path / "office-home"
    root.mkdir()
    installed = (
        f"of a clone of the uft repository, which an installed package does not have (uft is installed in {site})"
    )
    message = one_line(check_command, ["officehome", str(root)], capsys)
    assert message == f"uft data check needs data/officehome/classes.txt {installed}: {INSTALL_FROM_A_CLONE}"
    message = one_line(sweep_command, ["officehome", str(root), f"--out={tmp_path / 'out'}"], capsys)
    assert message == f"the sweep needs configs/officehome/ueo.yaml {installed}: {INSTALL_FROM_A_CLONE}"
    assert not (root / "uft_lists").exists() and not (tmp_path / "out").exists()
    (site / "pyproject.toml").write_text("")  # a clone that lost the file: no advice to install
    message = one_line(check_command, ["visda", str(root)], capsys)
    assert (
        message == f"uft data check needs data/visda/classes.txt, which is missing from the clone at {site}: restore it"
    )


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_an_installed_package_builds_quietly_and_refuses_what_needs_a_clone_in_one_line(tmp_path):
    """A wheel built from the package's files (no download: this environment's setuptools, no dependencies), installed
    into a new virtual environment, run from a folder outside the repository."""
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "uft", source / "uft", ignore=shutil.ignore_patterns("__pycache__"))
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    pip = [sys.executable, "-m", "pip"]
    built = run([*pip, "wheel", "-v", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, source])
    assert "deprecat" not in (built.stdout + built.stderr).lower()  # e.g. setuptools' box on a license table
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    run([*pip, "--python", python, "install", "--no-deps", "--no-index", *wheels.glob("uft-*.whl")])
    # The dependencies (torch, Lightning) are this environment's: a path line, after the new environment's own
    # site-packages (so its uft is the one imported; a path line runs no .pth file, so no editable uft comes along).
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "uft_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run([python, "-c", "import uft.clip; print(uft.clip.CHECKOUT)"], cwd=tmp_path, env=env).stdout.strip()
    assert where == str(site)
    root = tmp_path / "office-home"
    root.mkdir()
    for command in (
        [venv / "bin" / "uft", "data", "check", "officehome", root],
        [python, "-m", "uft.harness.sweep", "officehome", root, f"--out={tmp_path / 'out'}"],
    ):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-3000:]
        assert proc.stderr.startswith("uft: error: ") and proc.stderr.strip().endswith(INSTALL_FROM_A_CLONE)
        assert f"(uft is installed in {site})" in proc.stderr
