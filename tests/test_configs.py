"""Every shipped YAML parses through the CLI, and each benchmark's settings say what the benchmark defines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from uft import config_files
from uft.data.lists import read_class_names
from uft.data.splits import ClassSplit, parse_class_ids
from uft.world import CATEGORIES

from .args import ROOT
from .helpers import printed_config

CONFIGS = ROOT / "configs"
FULL = CONFIGS / "officehome" / "ueo.yaml"
DEMO = CONFIGS / "demo.yaml"
METHOD_OBJECTIVES = {  # configs/method/<name>.yaml -> its objective's class (None: zero-shot, nothing trains)
    "ent": "uft.objectives.ENT",
    "im": "uft.objectives.IM",
    "pouf": "uft.objectives.POUF",
    "ueo": "uft.objectives.UEO",
    "ueo_oracle": "uft.objectives.UEOOracle",
    "upl": "uft.objectives.UPL",
    "zeroshot": None,
    "zeroshot_ensemble": None,
}


OVERLAYS = {"online.yaml"}  # added to a run config with another -c


def args_for(path: Path) -> list[str]:
    """A shipped file as a user adds it: a run config alone, anything else after its benchmark's run config."""
    kind = path.relative_to(CONFIGS).parts[0]
    if kind == "setting":
        return [
            "-c",
            str(DEMO if path.parent.name == "world" else CONFIGS / path.parent.name / "ueo.yaml"),
            "-c",
            str(path),
        ]
    if kind in ("trainer", "model", "data", "method") or path.name in OVERLAYS:
        return ["-c", str(FULL), "-c", str(path)]
    return ["-c", str(path)]


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_parses(path, capsys):
    config = printed_config(args_for(path), capsys)
    objective = config["model"]["objective"]
    expected = METHOD_OBJECTIVES[path.stem] if path.parent.name == "method" else "uft.objectives.UEO"
    assert (objective and objective["class_path"]) == expected
    assert config["data"]["split"]["num_known"] > 0
    assert config["include"] is None  # applied before parsing: a printed or saved config stands alone


def test_every_method_config_is_known():
    assert sorted(p.stem for p in (CONFIGS / "method").glob("*.yaml")) == sorted(METHOD_OBJECTIVES)


def leaves(tree, prefix: str = "") -> dict[str, object]:
    """``{"model.objective.init_args.trade": 1.0, ...}``: every value of a YAML tree under its dotted key."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    found = {}
    for key, value in tree.items():
        found.update(leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return found


def test_no_file_repeats_what_it_includes():
    """Each fact is written once: a file never sets a key to the value that a file it includes (directly or
    further down) already gives it."""
    checked = 0
    for path in sorted(CONFIGS.rglob("*.yaml")):
        own = yaml.safe_load(path.read_text()) or {}
        includes = config_files.included_files(path)[:-1]
        own = leaves({k: v for k, v in own.items() if k != config_files.KEY})
        for included in includes:
            theirs = leaves({k: v for k, v in (yaml.safe_load(included.read_text()) or {}).items() if k != "include"})
            same = {key for key in own.keys() & theirs.keys() if own[key] == theirs[key]}
            assert not same, f"{path.relative_to(CONFIGS)} repeats {sorted(same)} of {included.relative_to(CONFIGS)}"
            checked += 1
    assert checked >= 25  # the five run configs include five files each


def test_splits_live_in_settings_and_objectives_in_methods():
    """The class split is set only by configs/setting/, the objective only by configs/method/."""
    owners = {"data.split": "setting", "model.objective": "method"}
    for path in sorted(CONFIGS.rglob("*.yaml")):
        kind = path.relative_to(CONFIGS).parts[0]
        for key in leaves(yaml.safe_load(path.read_text()) or {}):
            for prefix, owner in owners.items():
                assert not key.startswith(prefix) or kind == owner, f"{path.relative_to(CONFIGS)} sets {key}"


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
    """Open-partial by default, batch 64, evaluation batch 192, SGD at 1e-4 without momentum for both groups, logit
    scale 100, UEO with trade 1 and tau 1, 50 epochs (5 on DomainNet)."""
    base, known, total, expected = BENCHMARKS[benchmark]
    config = printed_config(["-c", str(base)], capsys)
    assert parse_class_ids(config["data"]["split"]["target_classes"], total) == expected["open_partial"]
    assert (config["data"]["batch_size"], config["data"]["eval_batch_size"]) == (64, 192)
    assert config["model"]["prompt_lr"] == config["model"]["visual_lr"] == 1e-4
    assert config["model"]["optimizer"]["class_path"] == "torch.optim.SGD"
    assert config["model"]["optimizer"]["init_args"]["momentum"] == 0.0
    assert config["model"]["logit_scale"] == 100.0
    assert config["model"]["objective"] == {"class_path": "uft.objectives.UEO", "init_args": {"trade": 1.0, "tau": 1.0}}
    assert config["trainer"]["max_epochs"] == (5 if benchmark == "domainnet" else 50)


def test_officehome_class_names():
    names = (ROOT / "data" / "officehome" / "classes.txt").read_text().split()
    assert len(names) == 65 == len(set(names))
    assert names == sorted(names)  # the benchmark's (case-sensitive) alphabetical order: 'TV' before 'Table'
    assert names[0] == "Alarm_Clock" and names[49] == "Ruler" and names[64] == "Webcam"


def test_demo_is_open_partial_on_the_shipped_world_clip(capsys):
    config = printed_config(["-c", str(DEMO)], capsys)
    assert config["data"]["split"] == {"num_known": 12, "target_classes": "0-7,12-17", "test_classes": "0-23"}
    assert (ROOT / config["model"]["pretrained"]).is_file()
    assert config["model"]["model_name"] == "uft-world-vit"
    model = config["model"]
    assert (model["prompt_lr"], model["visual_lr"], config["trainer"]["max_epochs"]) == (1e-3, 1e-3, 5)
    # Adam without weight decay (docs/demo.md: SGD at this model's useful rates is chaotic); no SGD argument left over
    optimizer = model["optimizer"]
    assert optimizer["class_path"] == "torch.optim.Adam" and optimizer["init_args"]["weight_decay"] == 0


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
