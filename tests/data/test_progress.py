"""Progress bars of the long data commands: `uft data check` decoding every image and `uft data shard` writing
them draw a bar (count and rate) on a terminal's stderr, and nothing at all where stderr is a log or a pipe."""

from __future__ import annotations

import io
import re

import pytest

from uft.data.check import main as check_command
from uft.data.shards import main as shard_command

from .builders import fake_tree


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def check_then_shard(tmp_path) -> str:
    """Run `uft data check` and `uft data shard` on a small VisDA tree (12 images a domain); returns stdout."""
    root = fake_tree(tmp_path / "visda", "visda")
    check_command(["visda", str(root)])
    shard_command([str(root / "uft_lists" / "train.txt"), str(tmp_path / "shards"), f"--root={root / 'train'}"])
    return str(root)


def test_a_stderr_that_is_not_a_terminal_gets_no_progress_bar(tmp_path, capsys):
    check_then_shard(tmp_path)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "train: 12 images of 12 classes" in captured.out and "uft: wrote 12 images as 1 shards" in captured.out


def test_a_terminal_sees_the_count_and_rate_of_decoding_and_writing(tmp_path, capsys, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    check_then_shard(tmp_path)
    drawn = terminal.getvalue()
    for bar in ("train", "validation", "writing shards"):  # each domain decoded, then the shards written
        assert re.search(rf"\r{bar}: +0%\|[^\r]*\| 0/12 \[[^\r]*img/s\]", drawn), drawn
    assert drawn.endswith("\r")  # erased when done: the report stays the commands' own lines
    captured = capsys.readouterr()
    assert captured.err == "" and "uft: wrote 12 images" in captured.out


@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
def test_the_check_reports_the_same_lines_with_or_without_a_terminal(tmp_path, capsys, monkeypatch, verify):
    root = fake_tree(tmp_path / "visda", "visda")
    bad = root / "train" / "aeroplane" / "0000.jpg"
    bad.write_bytes(b"not a jpeg")
    args = ["visda", str(root), *([] if verify else ["--no-verify"])]
    check_command(args)
    plain = capsys.readouterr().out
    monkeypatch.setattr("sys.stderr", Terminal())
    check_command(args)
    assert capsys.readouterr().out == plain
    assert (f"unreadable image {bad}" in plain) == verify
