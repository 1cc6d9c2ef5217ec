"""``uft data check DATASET ROOT``: check an unpacked benchmark and write its list files.

For a folder where a user unpacked Office, Office-Home, VisDA-C or DomainNet: finds each domain (spellings that
differ in spaces, underscores or case match), matches its class folders to the shipped class names (ids in the
benchmark's label order), decodes every image, writes one list file per domain (``relative/path.jpg <label>``,
paths relative to the domain folder) into ``ROOT/uft_lists/`` and compares image counts with the published totals.
A missing domain or class folder is an error naming what was expected; unreadable images and counts that differ
from the published ones are reported, not refused. Nothing in the dataset is changed, and an existing list file
with other content is not overwritten.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from uft.clip import CHECKOUT
from uft.data.lists import Sample, read_class_names, resolve_domain, scan_image_folder
from uft.data.skipped import unreadable_files
from uft.errors import InputError

DATA = CHECKOUT / "data"  # data/<dataset>/classes.txt


@dataclass(frozen=True)
class Benchmark:
    """A published benchmark: its domains with their published image counts, and where images sit in a domain."""

    domains: dict[str, int]
    inner: str = ""  # a folder between the domain and the class folders (Office-31's ``images``)


BENCHMARKS = {
    "office": Benchmark({"amazon": 2817, "dslr": 498, "webcam": 795}, inner="images"),
    "officehome": Benchmark({"Art": 2427, "Clipart": 4365, "Product": 4439, "Real World": 4357}),
    "visda": Benchmark({"train": 152397, "validation": 55388}),
    "domainnet": Benchmark(
        {
            "clipart": 48129,
            "infograph": 51605,
            "painting": 72266,
            "quickdraw": 172500,
            "real": 172947,
            "sketch": 69128,
        }
    ),
}
LIST_FOLDER = "uft_lists"


def domain_dir(root: Path, benchmark: Benchmark, domain: str) -> Path:
    """The folder holding a domain's class folders (with Office-31's extra level when it is there)."""
    folder = resolve_domain(root, domain)
    inner = folder / benchmark.inner if benchmark.inner else folder
    return inner if inner.is_dir() else folder


def check(dataset: str, root: str | Path, verify: bool = True, out: Path | None = None) -> list[str]:
    """Check ``root`` as ``dataset`` and write its list files; returns the report lines (warnings included).
    Raises :class:`~uft.errors.InputError` for a layout that cannot be used."""
    if dataset not in BENCHMARKS:
        raise InputError(f"unknown dataset {dataset!r}: expected one of {', '.join(BENCHMARKS)}")
    benchmark, root = BENCHMARKS[dataset], Path(root)
    names, _ = read_class_names(str(DATA / dataset / "classes.txt"))
    if not root.is_dir():
        raise InputError(f"dataset root not found: {root}")
    found = {}
    for domain in benchmark.domains:
        try:
            found[domain] = domain_dir(root, benchmark, domain)
        except InputError:
            folders = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise InputError(
                f"{dataset}: domain {domain!r} not found under {root} (expected the domains "
                f"{', '.join(benchmark.domains)}; folders there: {', '.join(folders) or 'none'})"
            ) from None
    out = out or root / LIST_FOLDER
    report = []
    for domain, folder in found.items():
        samples = scan_image_folder(folder, names)  # a class folder that is not a class name is an error there
        missing = sorted(set(range(len(names))) - {s.label for s in samples})
        if missing:
            report.append(
                f"warning: {domain}: no images of {len(missing)} classes ({', '.join(names[i] for i in missing[:5])}"
                f"{', ...' if len(missing) > 5 else ''})"
            )
        bad = list(unreadable_files(folder, (s.path for s in samples)).values()) if verify else []
        for path, reason in bad:
            report.append(f"warning: {domain}: unreadable image {folder / path}: {reason}")
        good = [s for s in samples if s.path not in {path for path, _ in bad}]
        expected = benchmark.domains[domain]
        if len(samples) != expected:
            report.append(
                f"warning: {domain}: {len(samples)} images, the published count is {expected} "
                f"({len(samples) - expected:+d}); a different release or a partial download?"
            )
        listing = _write_list(out / f"{domain.replace(' ', '_')}.txt", good)
        report.append(f"{domain}: {len(good)} images of {len(names) - len(missing)} classes in {folder} -> {listing}")
    return report


def _write_list(path: Path, samples: list[Sample]) -> Path:
    text = "".join(f"{s.path} {s.label}\n" for s in samples)
    if path.exists() and path.read_text() != text:
        raise InputError(f"{path} exists with other content: remove it, or write elsewhere with --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="uft data check", description=__doc__)
    parser.add_argument("dataset", help=f"one of {', '.join(BENCHMARKS)}")
    parser.add_argument("root", help="the folder holding the dataset's domain folders")
    parser.add_argument("--out", type=Path, help=f"folder of the list files (default: ROOT/{LIST_FOLDER})")
    parser.add_argument("--no-verify", action="store_true", help="do not decode every image")
    args = parser.parse_args(argv)
    try:
        lines = check(args.dataset, args.root, verify=not args.no_verify, out=args.out)
    except InputError as err:
        print(f"uft: error: {err}", file=sys.stderr)
        sys.exit(2)
    except PermissionError as err:  # a read-only dataset folder: the lists go elsewhere
        print(f"uft: error: cannot write {err.filename}: permission denied; pass --out FOLDER", file=sys.stderr)
        sys.exit(2)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
