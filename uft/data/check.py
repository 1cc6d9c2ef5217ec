"""``uft data check DATASET ROOT``: check an unpacked benchmark and write its list files.

For a folder where a user unpacked Office, Office-Home, VisDA-C or DomainNet: finds each domain (spellings that
differ in spaces, underscores or case match), matches its class folders to the shipped class names (ids in the
benchmark's label order; ``data/<dataset>/classes.txt`` of the clone uft runs from: an installed package, which has
none, is refused in one line), decodes every image (with a progress bar when stderr is a terminal), writes one list
file per domain (``relative/path.jpg <label>``, paths relative to the domain folder) into ``ROOT/uft_lists/`` and
compares image counts with the published totals.
A missing domain or class folder is an error naming what was expected; unreadable images and counts that differ
from the published ones are reported, not refused. Nothing in the dataset is changed, and an existing list file
with other content is not overwritten. Each list file is written whole or not at all (a temporary file moved into
place), so a full disk, a read-only file system or an interruption leaves no half-written list behind.
"""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from uft.clip import CHECKOUT, checkout_file
from uft.data.lists import Sample, read_class_names, resolve_domain, scan_image_folder
from uft.data.shards import OneLineParser, Stopped, stop_on_signals
from uft.data.skipped import unreadable_files
from uft.errors import Exit, InputError, one_line_errors
from uft.progress import progress

DATA = CHECKOUT / "data"  # data/<dataset>/classes.txt: a clone's, not an installed package's (see checkout_file)


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
    names, _ = read_class_names(str(checkout_file(Path("data") / dataset / "classes.txt", "uft data check")))
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
    out = Path(out or root / LIST_FOLDER)
    created = not out.exists()
    try:
        _check_writable(out)  # before decoding every image, which may take an hour
        return _check_domains(benchmark, names, found, out, verify)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # made by the check above: a failed check leaves the dataset as it was
        raise


def _check_domains(
    benchmark: Benchmark, names: list[str], found: dict[str, Path], out: Path, verify: bool
) -> list[str]:
    """The report of :func:`check` on the domain folders ``found``, writing their lists into ``out``."""
    report = []
    for domain, folder in found.items():
        samples = scan_image_folder(folder, names)  # a class folder that is not a class name is an error there
        missing = sorted(set(range(len(names))) - {s.label for s in samples})
        if missing:
            report.append(
                f"warning: {domain}: no images of {len(missing)} classes ({', '.join(names[i] for i in missing[:5])}"
                f"{', ...' if len(missing) > 5 else ''})"
            )
        bad = _unreadable(folder, [s.path for s in samples], domain) if verify else []
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


def _unreadable(folder: Path, paths: list[str], domain: str) -> list[tuple[str, str]]:
    """``(path, reason)`` of the ``paths`` (relative to ``folder``) that cannot be decoded, with a progress bar: a
    DomainNet domain takes minutes."""
    with progress(len(paths), domain) as bar:
        return list(unreadable_files(folder, paths, bar.update).values())


READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _write_error(path: Path, err: OSError) -> InputError:
    """One line for a list file or folder that cannot be written, with what to do about it."""
    reason = err.strerror or str(err)
    if err.errno in READ_ONLY:  # a dataset unpacked on read-only storage, typically
        return InputError(f"cannot write {path}: {reason}; pass --out FOLDER to write the lists elsewhere")
    if err.errno in FULL:
        return InputError(f"cannot write {path}: {reason}; free some space, or pass --out FOLDER on another disk")
    if err.errno in (errno.EEXIST, errno.ENOTDIR):  # a file where a folder belongs
        return InputError(f"cannot create the folder {path}: a file is in the way; pass --out FOLDER")
    return InputError(f"cannot write {path}: {reason}")


def _check_writable(out: Path) -> None:
    """Refuse an ``out`` the lists cannot be written into: a file, or a folder on read-only storage."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a folder for the list files: pass --out FOLDER")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".uft-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise _write_error(out, err) from None


def _write_list(path: Path, samples: list[Sample]) -> Path:
    """Write a list file whole or not at all: into a temporary file beside it, then moved into place."""
    text = "".join(f"{s.path} {s.label}\n" for s in samples)
    if path.is_dir():
        raise InputError(f"{path} is a folder, where the list file goes: remove it, or write elsewhere with --out")
    if path.exists() and path.read_text() != text:
        raise InputError(f"{path} exists with other content: remove it, or write elsewhere with --out")
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.chmod(temporary, 0o666 & ~_umask())  # as open() would have made it (mkstemp's is private)
        os.replace(temporary, path)
    except OSError as err:
        raise _write_error(path, err) from None
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: list[str] | None = None) -> None:
    """``uft data check DATASET ROOT``: check an unpacked benchmark and write its list files; a problem ends with one
    ``uft: error:`` line (status 2; a signal's stop: 128 + its number)."""
    parser = OneLineParser(prog="uft data check", description=__doc__)
    parser.add_argument("dataset", help=f"one of {', '.join(BENCHMARKS)}")
    parser.add_argument("root", help="the folder holding the dataset's domain folders")
    parser.add_argument("--out", type=Path, help=f"folder of the list files (default: ROOT/{LIST_FOLDER})")
    parser.add_argument("--no-verify", action="store_true", help="do not decode every image")
    with one_line_errors():
        args = parser.parse_args(argv)

    def one_line(err: BaseException) -> Exit | None:
        if isinstance(err, OSError):  # reading the dataset (writing is an InputError)
            return Exit.error(f"cannot read {err.filename or args.root}: {err.strerror or err}")
        if isinstance(err, Stopped):
            return Exit.error(f"stopped by {err.name}; no list file was left half-written", 128 + err.signum)
        return None

    # SIGTERM, too, ends in the cleanup of a half-written list.
    with one_line_errors(one_line), stop_on_signals():
        lines = check(args.dataset, args.root, verify=not args.no_verify, out=args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
