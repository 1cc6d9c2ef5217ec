"""Every shipped YAML parses through the CLI, and each benchmark's settings say what the benchmark defines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from uft.cli import cli_main
from uft.data.lists import read_class_names
from uft.data.splits import ClassSplit, parse_class_ids
from uft.world import CATEGORIES

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
    if kind == "setting":  # an overlay on its benchmark's full-run config
        base = DEMO if path.parent.name == "world" else CONFIGS / path.parent.name / "ueo.yaml"
        return ["-c", str(base), "-c", str(path)]
    if kind == "method":  # overlays, added with a further -c
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


def targets(known: int, partial: int, unknown: int, total: int, open_partial: int | None = None) -> dict:
    """Target class ids of the five settings: ``partial`` known classes in partial, ``unknown`` unknown classes in
    open; open-partial keeps ``open_partial`` known ones (default: as partial)."""
    kept = partial if open_partial is None else open_partial
    return {
        "closed": list(range(known)),
        "partial": list(range(partial)),
        "open": list(range(known + unknown)),
        "open_partial": list(range(kept)) + list(range(known, known + unknown)),
        "all_known": list(range(total)),
    }


# benchmark -> (base config, known classes, all classes, setting -> target class ids), from the table of the paper's
# benchmarks: Office 25/31 (partial 0-19, open-partial 0-14 + 25-27), Office-Home 50/65, VisDA-C 8/12,
# DomainNet 300/345; the world is the demo's.
BENCHMARKS = {
    "office": (CONFIGS / "office" / "ueo.yaml", 25, 31, targets(25, 20, 3, 31, open_partial=15)),
    "officehome": (FULL, 50, 65, targets(50, 35, 10, 65)),
    "visda": (CONFIGS / "visda" / "ueo.yaml", 8, 12, targets(8, 6, 2, 12)),
    "domainnet": (CONFIGS / "domainnet" / "ueo.yaml", 300, 345, targets(300, 250, 30, 345)),
    "world": (DEMO, 12, 24, targets(12, 8, 6, 24)),
}
SETTINGS = ["closed", "partial", "open", "open_partial", "all_known"]


CASES = [(b, s) for b in sorted(BENCHMARKS) for s in SETTINGS if (b, s) != ("world", "all_known")]  # no such world


@pytest.mark.parametrize(("benchmark", "setting"), CASES)
def test_settings(benchmark, setting, capsys):
    """Known, target and test class ids through the code path `uft fit` uses (the parsed config's ClassSplit,
    resolved against the dataset's class-name file)."""
    base, known, total, expected = BENCHMARKS[benchmark]
    path = CONFIGS / "setting" / benchmark / f"{setting}.yaml"
    config = printed_config(["-c", str(base), "-c", str(path)], capsys)
    split = config["data"]["split"]
    if benchmark == "world":  # its classes.txt is written by the recipe on first use: the same names
        names, source = list(CATEGORIES), "the world's categories"
    else:
        names, source = read_class_names(str(ROOT / config["data"]["class_names"]))
    assert len(names) == total
    target_ids, test_ids = ClassSplit(**split).resolve(len(names), source)
    assert split["num_known"] == (total if setting == "all_known" else known)
    assert target_ids == expected[setting]
    assert test_ids == list(range(total))


@pytest.mark.parametrize("benchmark", ["office", "officehome", "visda", "domainnet"])
def test_benchmark_defaults_are_the_references(benchmark, capsys):
    """Open-partial by default, batch 64, evaluation batch 192, SGD at 1e-4 for both groups, 50 epochs (5 on
    DomainNet)."""
    base, known, total, expected = BENCHMARKS[benchmark]
    config = printed_config(["-c", str(base)], capsys)
    assert parse_class_ids(config["data"]["split"]["target_classes"], total) == expected["open_partial"]
    assert (config["data"]["batch_size"], config["data"]["eval_batch_size"]) == (64, 192)
    assert config["model"]["prompt_lr"] == config["model"]["visual_lr"] == 1e-4
    assert config["trainer"]["max_epochs"] == (5 if benchmark == "domainnet" else 50)


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


@pytest.mark.parametrize(
    ("benchmark", "count", "first", "last"),
    [
        ("office", 31, "back_pack", "trash_can"),
        ("visda", 12, "aeroplane", "truck"),
        ("domainnet", 345, "aircraft_carrier", "zigzag"),
    ],
)
def test_benchmark_class_names(benchmark, count, first, last):
    names = (ROOT / "data" / benchmark / "classes.txt").read_text().split()
    assert len(names) == count == len(set(names)) and names[0] == first and names[-1] == last
    if benchmark == "domainnet":  # the official lists' order, not Python's: 'cello' before 'cell_phone'
        assert names.index("cello") + 1 == names.index("cell_phone")
        assert names.index("trumpet") + 1 == names.index("t-shirt") == names.index("umbrella") - 1
