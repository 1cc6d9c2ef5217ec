"""Command-line arguments of the runs the tests start: the tiny test config on a data folder, and DDP on CPU
processes; the repository root and the tiny CLIP's name they refer to."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = "uft-tiny-vit"


def data_args(data: Path) -> list[str]:
    """CLI arguments pointing the data module at a folder a recipe made (its layout: class names, target and test
    lists)."""
    from uft.data.recipes import DataLayout

    layout = DataLayout.of(data)
    paths = [f"--data.root={data}", f"--data.class_names={layout.class_names}"]
    paths.append(f"--data.train_list={layout.target_list}")
    return [*paths, *([f"--data.test_list={layout.test_list}"] if layout.test_list else [])]


def demo_args(data: Path, root_dir: Path, *extra: str) -> list[str]:
    """CLI arguments for a short run of the tiny test config on ``data``, logging into ``root_dir``."""
    return ["-c", str(ROOT / "tests" / "tiny.yaml"), *data_args(data), f"--trainer.default_root_dir={root_dir}", *extra]


def ddp_args(devices: int) -> list[str]:
    return ["--trainer.accelerator=cpu", f"--trainer.devices={devices}", "--trainer.strategy=ddp"]
