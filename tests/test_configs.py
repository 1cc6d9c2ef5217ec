"""Every shipped YAML parses through the CLI, and the Office-Home settings say what the benchmark defines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from uft.cli import cli_main
from uft.data.splits import parse_class_ids

from .conftest import ROOT

CONFIGS = ROOT / "configs"
FULL = CONFIGS / "officehome" / "ueo.yaml"
DEMO = CONFIGS / "demo.yaml"
GROUPS = {"trainer", "model", "data"}  # files holding one group's content, used as `--<group> file`


def printed_config(args: list[str], capsys) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *args, "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def args_for(path: Path) -> list[str]:
    kind = path.relative_to(CONFIGS).parts[0]
    if kind in GROUPS:
        return ["-c", str(FULL), f"--{kind}", str(path)]
    if kind == "setting" and path.parent.name == "world":
        return ["-c", str(DEMO), "-c", str(path)]
    if kind in ("setting", "method"):  # overlays, added with a further -c
        return ["-c", str(FULL), "-c", str(path)]
    return ["-c", str(path)]


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_parses(path, capsys):
    config = printed_config(args_for(path), capsys)
    objective = config["model"]["objective"]
    if path.stem.startswith("zeroshot"):
        assert objective is None
    else:
        assert objective["class_path"].startswith("uft.objectives.")
    assert config["data"]["split"]["num_known"] > 0


OFFICEHOME_TARGETS = {
    "closed": list(range(50)),
    "partial": list(range(35)),
    "open": list(range(60)),
    "open_partial": list(range(35)) + list(range(50, 60)),
}


@pytest.mark.parametrize("setting", sorted(OFFICEHOME_TARGETS))
def test_officehome_settings(setting, capsys):
    config = printed_config(
        ["-c", str(FULL), "-c", str(CONFIGS / "setting" / "officehome" / f"{setting}.yaml")], capsys
    )
    split = config["data"]["split"]
    assert split["num_known"] == 50
    assert parse_class_ids(split["target_classes"], 65) == OFFICEHOME_TARGETS[setting]
    assert parse_class_ids(split["test_classes"], 65) == list(range(65))


def test_officehome_class_names():
    names = (ROOT / "data" / "officehome" / "classes.txt").read_text().split()
    assert len(names) == 65 == len(set(names))
    assert names == sorted(names)  # the benchmark's (case-sensitive) alphabetical order: 'TV' before 'Table'
    assert names[0] == "Alarm_Clock" and names[49] == "Ruler" and names[64] == "Webcam"


WORLD_TARGETS = {
    "closed": list(range(12)),
    "partial": list(range(8)),
    "open": list(range(18)),
    "open_partial": list(range(8)) + list(range(12, 18)),
}


@pytest.mark.parametrize("setting", sorted(WORLD_TARGETS))
def test_world_settings(setting, capsys):
    config = printed_config(["-c", str(DEMO), "-c", str(CONFIGS / "setting" / "world" / f"{setting}.yaml")], capsys)
    split = config["data"]["split"]
    assert split["num_known"] == 12
    assert parse_class_ids(split["target_classes"], 24) == WORLD_TARGETS[setting]
    assert parse_class_ids(split["test_classes"], 24) == list(range(24))


def test_demo_is_open_partial_on_the_shipped_world_clip(capsys):
    config = printed_config(["-c", str(DEMO)], capsys)
    assert (
        config["data"]["split"]
        == printed_config(["-c", str(DEMO), "-c", str(CONFIGS / "setting" / "world" / "open_partial.yaml")], capsys)[
            "data"
        ]["split"]
    )
    assert (ROOT / config["model"]["pretrained"]).is_file()
    assert config["model"]["model_name"] == "uft-world-vit"
