"""Reading the target set from files vs from shards (``uft data shard``), in images per second.

On the demo data (the world benchmark, photo style under fog: rendered into ``data/world/photo-fog`` when missing),
the data module's training loader over the target set, one epoch, training transform at the demo model's 48 pixels,
once reading the files and once the shards (written into a temporary folder first), with 0 and 2 loader workers;
and the bare reading of every target image in training order (its bytes, and decoded). Prints one Markdown table.
Run from the repository root::

    python bench/shard_bench.py                    # about a minute
    python bench/shard_bench.py --repeats 5 --workers 0 2 4
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from uft.clip import ImagePreprocess
from uft.data.datamodule import TargetDataModule
from uft.data.lists import read_list_file
from uft.data.shards import write_shards
from uft.data.splits import ClassSplit
from uft.world.benchmark import WorldBenchmark

CHECKOUT = Path(__file__).resolve().parents[1]
CONFIGS = CHECKOUT / "configs"
PREPROCESS = ImagePreprocess(size=48, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)  # uft-world-vit's


def demo_data() -> dict:
    """The demo's data settings (configs/data/world.yaml, its open-partial setting), the world rendered if
    missing; paths from the recipe's layout."""
    data = yaml.safe_load((CONFIGS / "data" / "world.yaml").read_text())["data"]
    split = yaml.safe_load((CONFIGS / "setting" / "world" / "open_partial.yaml").read_text())["data"]["split"]
    recipe = WorldBenchmark(**data["recipe"]["init_args"])
    layout = recipe.ensure(CHECKOUT / recipe.default_root())
    return {
        "root": str(layout.root),
        "class_names": str(layout.class_names),
        "train_list": str(layout.target_list),
        "test_list": str(layout.test_list),
        "split": split,
        "batch_size": data["batch_size"],
    }


def module(data: dict, workers: int, shards: Path | None) -> TargetDataModule:
    source = {"target_shards": str(shards)} if shards else {"train_list": data["train_list"]}
    dm = TargetDataModule(
        data["root"],
        data["class_names"],
        ClassSplit(**data["split"]),
        test_list=data["test_list"],
        batch_size=data["batch_size"],
        num_workers=workers,
        seed=0,
        **source,
    )
    dm.preprocess = PREPROCESS
    dm.prepare_data()
    dm.setup("fit")
    return dm


def loader_rate(dm: TargetDataModule) -> float:
    """Images per second of one epoch of the training loader (workers started inside the timing)."""
    loader = dm.train_dataloader()
    start, count = time.perf_counter(), 0
    for images, _ in loader:
        count += len(images)
    return count / (time.perf_counter() - start)


def read_rate(dm: TargetDataModule, decode: bool) -> float:
    """Images per second of reading every target image (its bytes only, or decoded), in the epoch's training order,
    one process."""
    images, samples = dm.pool.images["target"], dm.target_samples
    read = images.read if decode else getattr(images, "record", lambda path: (images.folder / path).read_bytes())
    order = [i for i, _ in dm.train_dataloader().sampler]
    start = time.perf_counter()
    for i in order:
        read(samples[i].path)
    return len(order) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per row (the median is shown)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader worker counts")
    parser.add_argument("--chunk-bytes", type=int, default=1 << 20, help="shard size (1 MiB: several shards)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = demo_data()
    with tempfile.TemporaryDirectory() as tmp:
        samples = read_list_file(data["train_list"], Path(data["root"]), 10**6)
        start = time.perf_counter()
        summary = write_shards(samples, data["root"], Path(tmp) / "shards", chunk_bytes=args.chunk_bytes)
        written = time.perf_counter() - start
        files_size = sum((Path(data["root"]) / s.path).stat().st_size for s in samples)
        sources = {"files": None, "shards": summary.folder}
        rows = []
        for decode in (False, True):
            for name, shards in sources.items():
                rate = statistics.median(read_rate(module(data, 0, shards), decode) for _ in range(args.repeats))
                rows.append((f"{'read + decode' if decode else 'read the bytes'}, {name}", "-", rate))
        for workers in args.workers:
            for name, shards in sources.items():
                rate = statistics.median(loader_rate(module(data, workers, shards)) for _ in range(args.repeats))
                rows.append((f"training loader, {name}", str(workers), rate))
        machine = platform.processor() or platform.machine()
        print(
            f"{len(samples)} target images ({files_size / 2**20:.1f} MB of PNG files; {summary.chunks} shards, "
            f"{summary.size / 2**20:.1f} MB, written in {written:.1f} s), {machine}, torch {torch.__version__}, "
            f"median of {args.repeats}\n"
        )
        print("| what | workers | images/s |\n|---|---:|---:|")
        for what, workers, rate in rows:
            print(f"| {what} | {workers} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
