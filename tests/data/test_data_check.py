"""`uft data check` on generated trees in each benchmark's layout: list files the data module loads with the right
labels; a missing domain, a stray class folder and a corrupt image reported."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from uft.data.check import BENCHMARKS, check
from uft.data.check import main as check_command
from uft.data.lists import read_list_file
from uft.data.splits import ClassSplit
from uft.errors import InputError

from ..args import ROOT
from ..helpers import one_line
from ..processes import limit_file_size
from .builders import fake_tree, set_up_module

CLI = [sys.executable, "-c", "import sys; from uft.cli import main; sys.argv[0] = 'uft'; main()"]


@pytest.mark.parametrize("dataset", sorted(BENCHMARKS))
def test_check_writes_lists_the_data_module_loads_with_the_right_labels(tmp_path, dataset):
    root = fake_tree(tmp_path / dataset, dataset, per_class=2 if dataset != "domainnet" else 1)
    report = check(dataset, root)
    names = (ROOT / "data" / dataset / "classes.txt").read_text().split()
    benchmark = BENCHMARKS[dataset]
    assert sum("the published count is" in line for line in report) == len(benchmark.domains)  # a tiny tree
    domain = next(iter(benchmark.domains))
    listing = root / "uft_lists" / f"{domain.replace(' ', '_')}.txt"
    image_dir = root / domain / benchmark.inner if benchmark.inner else root / domain
    samples = read_list_file(listing, image_dir, len(names))
    assert all(names[s.label] == Path(s.path).parts[0] for s in samples)  # the label is the class folder's id
    module = set_up_module(
        root=str(root),
        domain=f"{domain}/{benchmark.inner}" if benchmark.inner else domain,
        class_names=str(ROOT / "data" / dataset / "classes.txt"),
        split=ClassSplit(len(names)),
        train_list=str(listing),
        protocol="paper",
    )
    assert len(module.test_samples) == len(samples) == len(names) * (2 if dataset != "domainnet" else 1)
    assert check(dataset, root) == report  # again: the same lists, nothing overwritten with other content


def test_check_reports_a_missing_domain_a_stray_folder_and_a_corrupt_image(tmp_path):
    root = fake_tree(tmp_path / "oh", "officehome", skip_domain="Product")
    with pytest.raises(InputError, match=r"domain 'Product' not found under .*expected the domains Art, Clipart"):
        check("officehome", root)
    fake_tree(tmp_path / "oh2", "officehome", per_class=2)
    renamed = tmp_path / "oh2" / "Real_World"  # another spelling of "Real World" is found
    (tmp_path / "oh2" / "Real World").rename(renamed)
    bad = tmp_path / "oh2" / "Art" / "Bike" / "0000.jpg"
    bad.write_bytes(b"not a jpeg")
    report = check("officehome", tmp_path / "oh2")
    assert any(f"unreadable image {bad}" in line for line in report)
    art = (tmp_path / "oh2" / "uft_lists" / "Art.txt").read_text().splitlines()
    assert "Bike/0000.jpg 4" not in art and "Bike/0001.jpg 4" in art and len(art) == 2 * 65 - 1
    (tmp_path / "oh2" / "Art" / "Bikes").mkdir()
    with pytest.raises(InputError, match="Bikes is not one of the 65 class names"):
        check("officehome", tmp_path / "oh2")


def test_uft_data_check_from_the_command_line(tmp_path):
    root = fake_tree(tmp_path / "visda", "visda")
    proc = subprocess.run(
        [*CLI, "data", "check", "visda", str(root)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert f"validation: 12 images of 12 classes in {root / 'validation'}" in proc.stdout
    proc = subprocess.run(
        [*CLI, "data", "check", "visda", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.strip() == f"uft: error: dataset root not found: {tmp_path / 'nope'}"


def refused(args: list[str], capsys) -> str:
    return one_line(check_command, args, capsys)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES], ids=errno.errorcode.get)
def test_a_dataset_on_read_only_storage_is_one_line_naming_the_way_out(tmp_path, capsys, monkeypatch, code):
    """Read-only storage (EROFS; EACCES where only the permissions forbid it): the check stops before decoding the
    images, and leaves the dataset as it was."""
    root = fake_tree(tmp_path / "visda", "visda")

    def refuse(*args, dir=None, **kwargs):
        raise OSError(code, os.strerror(code), os.path.join(dir, "x"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    message = f"cannot write {root / 'uft_lists'}: {os.strerror(code)}; pass --out FOLDER to write the lists elsewhere"
    assert refused(["visda", str(root)], capsys) == message
    assert sorted(p.name for p in root.iterdir()) == ["train", "validation"]


def test_a_file_where_the_lists_go_and_bad_arguments_are_one_line(tmp_path, capsys):
    root = fake_tree(tmp_path / "visda", "visda")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    message = f"{a_file} is a file, not a folder for the list files: pass --out FOLDER"
    assert refused(["visda", str(root), f"--out={a_file}"], capsys) == message
    message = f"cannot create the folder {a_file / 'lists'}: a file is in the way; pass --out FOLDER"
    assert refused(["visda", str(root), f"--out={a_file / 'lists'}"], capsys) == message
    (root / "uft_lists").write_text("keep me too")
    message = f"{root / 'uft_lists'} is a file, not a folder for the list files: pass --out FOLDER"
    assert refused(["visda", str(root)], capsys) == message
    assert refused(["visda"], capsys) == "the following arguments are required: root"
    assert refused(["visda", str(root), "--verify"], capsys) == "unrecognized arguments: --verify"
    assert a_file.read_text() == "keep me" and (root / "uft_lists").read_text() == "keep me too"


def test_a_full_disk_leaves_no_list_behind_and_the_check_runs_again(tmp_path):
    """A list that does not fit is not left half-written (which a rerun would refuse as other content)."""
    root = fake_tree(tmp_path / "visda", "visda")

    proc = subprocess.run(
        [*CLI, "data", "check", "visda", str(root), "--no-verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size(100),  # a full disk: writes past 100 bytes fail
    )
    listing = root / "uft_lists" / "train.txt"
    assert proc.returncode == 2 and proc.stderr == (
        f"uft: error: cannot write {listing}: File too large; free some space, or pass --out FOLDER on another disk\n"
    )
    assert sorted(p.name for p in root.iterdir()) == ["train", "validation"]
    report = check("visda", root)
    assert report[-1].endswith(f"-> {root / 'uft_lists' / 'validation.txt'}") and len(listing.read_text()) > 100
