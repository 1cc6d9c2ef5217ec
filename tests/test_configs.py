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


def targets(known: int, partial: int, unknown: int) -> dict[str, list[int]]:
    """Target class ids of the four settings, in Office-Home's proportions (``unknown`` unknown classes in open)."""
    return {
        "closed": list(range(known)),
        "partial": list(range(partial)),
        "open": list(range(known + unknown)),
        "open_partial": list(range(partial)) + list(range(known, known + unknown)),
    }


# benchmark -> (base config, known classes, all classes, setting -> target class ids)
BENCHMARKS = {"officehome": (FULL, 50, 65, targets(50, 35, 10)), "world": (DEMO, 12, 24, targets(12, 8, 6))}


@pytest.mark.parametrize("benchmark", sorted(BENCHMARKS))
@pytest.mark.parametrize("setting", ["closed", "partial", "open", "open_partial"])
def test_settings(benchmark, setting, capsys):
    base, known, total, expected = BENCHMARKS[benchmark]
    config = printed_config(["-c", str(base), "-c", str(CONFIGS / "setting" / benchmark / f"{setting}.yaml")], capsys)
    split = config["data"]["split"]
    assert split["num_known"] == known
    assert parse_class_ids(split["target_classes"], total) == expected[setting]
    assert parse_class_ids(split["test_classes"], total) == list(range(total))


def test_officehome_class_names():
    names = (ROOT / "data" / "officehome" / "classes.txt").read_text().split()
    assert len(names) == 65 == len(set(names))
    assert names == sorted(names)  # the benchmark's (case-sensitive) alphabetical order: 'TV' before 'Table'
    assert names[0] == "Alarm_Clock" and names[49] == "Ruler" and names[64] == "Webcam"


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
