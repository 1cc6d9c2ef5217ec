"""List files and folders: class-name files, list files, domain folders, image folders and the held-out split."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from uft.data import lists
from uft.data.lists import (
    Sample,
    holdout_mask,
    read_class_names,
    read_list_file,
    scan_image_folder,
)
from uft.errors import InputError


def write_png(path: Path, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    """A tiny 8x8 PNG at ``path`` (whatever its suffix), parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, format="PNG")
    return path


# --- read_class_names ---------------------------------------------------------------------------------------------


def test_read_class_names_list_and_file(tmp_path):
    """A list is taken as is (source 'class_names'); a file gives one stripped name per non-blank line."""
    assert read_class_names(["b", "a"]) == (["b", "a"], "class_names")
    file = tmp_path / "classes.txt"
    file.write_text("Alarm_Clock\n  Real thing  \n\nzebra\n")
    assert read_class_names(str(file)) == (["Alarm_Clock", "Real thing", "zebra"], str(file))


def test_read_class_names_errors(tmp_path):
    """Missing, empty and duplicated name files are InputErrors naming the file (and the repeated names)."""
    missing = tmp_path / "nope.txt"
    with pytest.raises(InputError, match="nope.txt"):
        read_class_names(str(missing))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(InputError) as err:
        read_class_names(str(empty))
    assert str(empty) in str(err.value)
    dup = tmp_path / "dup.txt"
    dup.write_text("cat\ndog\ncat\n")
    with pytest.raises(InputError) as err:
        read_class_names(str(dup))
    assert str(dup) in str(err.value) and "cat" in str(err.value) and "dog" not in str(err.value)
    with pytest.raises(InputError, match="class_names"):
        read_class_names([])
    with pytest.raises(InputError, match="x"):
        read_class_names(["x", "y", "x"])


# --- read_list_file -----------------------------------------------------------------------------------------------


@pytest.fixture
def real_world(tmp_path) -> Path:
    """An image dir with three images under a folder whose name holds a space."""
    images = tmp_path / "OfficeHome"
    for name in ("x", "y", "z"):
        write_png(images / "Real World" / "Alarm_Clock" / f"{name}.jpg")
    return images


def test_read_list_file_labeled_unlabeled_and_spaces(real_world, tmp_path):
    """Labeled and path-only lines, paths with spaces; comment and blank lines are skipped."""
    listing = tmp_path / "list.txt"
    listing.write_text(
        "# a comment\n"
        "Real World/Alarm_Clock/x.jpg 0\n"
        "\n"
        "   \n"
        "  # indented comment\n"
        "Real World/Alarm_Clock/y.jpg  2\n"
        "Real World/Alarm_Clock/z.jpg\n"
    )
    assert read_list_file(listing, real_world, num_classes=3) == [
        Sample("Real World/Alarm_Clock/x.jpg", 0),
        Sample("Real World/Alarm_Clock/y.jpg", 2),
        Sample("Real World/Alarm_Clock/z.jpg", lists.UNLABELED),
    ]


def test_read_list_file_relative_to_image_dir(real_world, tmp_path, monkeypatch):
    """A relative list-file path that does not exist from the working directory is looked up in the image dir."""
    (real_world / "inner.txt").write_text("Real World/Alarm_Clock/x.jpg 1\n")
    monkeypatch.chdir(tmp_path)
    assert read_list_file("inner.txt", real_world, num_classes=3) == [Sample("Real World/Alarm_Clock/x.jpg", 1)]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("Real World/Alarm_Clock/x.jpg zero", "cannot parse"),
        ("just some words", "cannot parse"),
        ("7", "cannot parse"),
        ("Real World/Alarm_Clock/x.jpg 3", "label 3 is outside the 3 class names"),
        ("Real World/Alarm_Clock/x.jpg -1", "label -1 is outside"),
        ("Real World/Alarm_Clock/missing.jpg 0", "image not found"),
        ("Real World/Alarm_Clock/missing.jpg", "image not found"),
    ],
)
def test_read_list_file_bad_line(real_world, tmp_path, line, fragment):
    """A bad line is an InputError whose message starts with '<file>:<line number>' and says what is wrong."""
    listing = tmp_path / "list.txt"
    listing.write_text(f"# header\nReal World/Alarm_Clock/x.jpg 0\n{line}\nReal World/Alarm_Clock/y.jpg 1\n")
    with pytest.raises(InputError) as err:
        read_list_file(listing, real_world, num_classes=3)
    assert str(err.value).startswith(f"{listing}:3: ")
    assert fragment in str(err.value)


def test_read_list_file_double_minus_label(real_world, tmp_path):
    """A label such as '--1' is an InputError naming the line, not a traceback."""
    listing = tmp_path / "list.txt"
    listing.write_text("Real World/Alarm_Clock/x.jpg --1\n")
    with pytest.raises(InputError, match=":1:"):
        read_list_file(listing, real_world, num_classes=3)


def test_read_list_file_empty_or_missing(real_world, tmp_path):
    """A list with only comments and blanks, or no list at all, is an InputError naming the file."""
    listing = tmp_path / "empty.txt"
    listing.write_text("# nothing here\n\n")
    with pytest.raises(InputError) as err:
        read_list_file(listing, real_world, num_classes=3)
    assert str(listing) in str(err.value) and "no images" in str(err.value)
    with pytest.raises(InputError, match="list file not found: .*absent.txt"):
        read_list_file(tmp_path / "absent.txt", real_world, num_classes=3)


# --- resolve_domain -----------------------------------------------------------------------------------------------

SPELLINGS = ["Real World", "Real_World", "RealWorld"]


@pytest.mark.parametrize("on_disk", SPELLINGS)
@pytest.mark.parametrize("asked", SPELLINGS)
def test_resolve_domain_spellings(tmp_path, on_disk, asked):
    """Each spelling of 'Real World' resolves to whichever spelling exists on disk."""
    (tmp_path / on_disk).mkdir()
    (tmp_path / "Art").mkdir()
    assert lists.resolve_domain(tmp_path, asked) == tmp_path / on_disk


def test_resolve_domain_no_domain_and_errors(tmp_path):
    """No domain gives the root; a missing root or unknown domain is an InputError naming it (and the folders)."""
    for name in ("Art", "Real World"):
        (tmp_path / name).mkdir()
    assert lists.resolve_domain(tmp_path, None) == tmp_path
    with pytest.raises(InputError) as err:
        lists.resolve_domain(tmp_path / "missing_root", "Art")
    assert str(tmp_path / "missing_root") in str(err.value)
    with pytest.raises(InputError) as err:
        lists.resolve_domain(tmp_path, "Clipart")
    message = str(err.value)
    assert "'Clipart'" in message and str(tmp_path) in message and "Art, Real World" in message


# --- scan_image_folder --------------------------------------------------------------------------------------------


def test_scan_image_folder_ids_by_name(tmp_path):
    """Class ids come from the class-name list by name, not from the order of the folders; non-images are skipped."""
    write_png(tmp_path / "a_cls" / "1.png")
    write_png(tmp_path / "a_cls" / "2.png")
    write_png(tmp_path / "b_cls" / "1.png")
    (tmp_path / "b_cls" / "notes.txt").write_text("not an image")
    samples = scan_image_folder(tmp_path, ["b_cls", "a_cls"])
    assert sorted(samples, key=lambda s: s.path) == [
        Sample("a_cls/1.png", 1),
        Sample("a_cls/2.png", 1),
        Sample("b_cls/1.png", 0),
    ]


def test_scan_image_folder_unknown_folder(tmp_path):
    """A folder that is not a class name is an InputError naming the folder."""
    write_png(tmp_path / "a_cls" / "1.png")
    write_png(tmp_path / "stray" / "1.png")
    with pytest.raises(InputError) as err:
        scan_image_folder(tmp_path, ["a_cls", "b_cls"])
    assert str(tmp_path / "stray") in str(err.value)


# --- holdout_mask -------------------------------------------------------------------------------------------------


def fake_samples(n: int, start: int = 0) -> list[Sample]:
    return [Sample(f"cls_{i % 7}/img_{i:05d}.jpg", i % 7) for i in range(start, start + n)]


def test_holdout_mask_deterministic_and_fraction():
    """The same samples and seed give the same mask; about `fraction` of 1000 samples is held out."""
    samples = fake_samples(1000)
    mask = holdout_mask(samples, 0.3, seed=0)
    assert mask == holdout_mask(list(samples), 0.3, seed=0)
    assert 0.25 <= sum(mask) / len(mask) <= 0.35
    assert not any(holdout_mask(samples, 0.0, seed=0))
    assert all(holdout_mask(samples, 1.0, seed=0))


def test_holdout_mask_stable_under_additions_and_order():
    """Adding samples or reordering them does not change the decision for any existing sample."""
    samples = fake_samples(1000)
    mask = holdout_mask(samples, 0.3, seed=0)
    grown = fake_samples(300, start=5000)[:150] + samples + fake_samples(300, start=5000)[150:]
    grown_mask = holdout_mask(grown, 0.3, seed=0)
    assert grown_mask[150:1150] == mask
    assert holdout_mask(samples[::-1], 0.3, seed=0) == mask[::-1]


def test_holdout_mask_seed_matters():
    """Different seeds hold out different samples."""
    samples = fake_samples(1000)
    assert holdout_mask(samples, 0.3, seed=0) != holdout_mask(samples, 0.3, seed=1)


def test_read_list_file_accepts_tab_separated_labels(real_world, tmp_path):
    """Tabs separate the label as well as spaces do."""
    listing = tmp_path / "tabs.txt"
    listing.write_text("Real World/Alarm_Clock/x.jpg\t1\n")
    assert read_list_file(listing, real_world, num_classes=3)[0].label == 1


def test_list_and_class_files_with_a_byte_order_mark(shapes_dir, tmp_path):
    """Files saved by editors that write a UTF-8 byte-order mark read as if it were not there."""
    listing = tmp_path / "bom.txt"
    listing.write_text("\ufeff" + (shapes_dir / "target.txt").read_text(), encoding="utf-8")
    names = tmp_path / "names.txt"
    names.write_text("\ufeff" + (shapes_dir / "classes.txt").read_text(), encoding="utf-8")
    assert read_list_file(listing, shapes_dir, 8) == read_list_file(shapes_dir / "target.txt", shapes_dir, 8)
    assert read_class_names(str(names))[0] == read_class_names(str(shapes_dir / "classes.txt"))[0]


def test_class_names_differing_only_by_case_warn():
    with pytest.warns(UserWarning, match="HOUSE, house differ only by case"):
        assert read_class_names(["house", "HOUSE", "tree"])[0] == ["house", "HOUSE", "tree"]


# --- read_segments ------------------------------------------------------------------------------------------------


def test_read_segments_counts_only_the_image_lines(real_world, tmp_path):
    """Segment starts are sample indices of read_list_file's samples: blank lines and other comments do not count."""
    listing = tmp_path / "stream.txt"
    listing.write_text(
        "# a stream of two domains\n"
        "\n"
        "# segment fog\n"
        "Real World/Alarm_Clock/x.jpg 0\n"
        "   \n"
        "# a comment inside the segment\n"
        "Real World/Alarm_Clock/y.jpg 1\n"
        "  #segment\tnoise\n"
        "\n"
        "Real World/Alarm_Clock/z.jpg\n"
        "# segments end here (not a segment line)\n"
    )
    assert lists.read_segments(listing) == [("fog", 0), ("noise", 2)]
    samples = read_list_file(listing, real_world, num_classes=3)
    assert [s.path for s in samples] == [f"Real World/Alarm_Clock/{n}.jpg" for n in "xyz"]  # unchanged by segments
    assert lists.segment_of(lists.read_segments(listing), len(samples)) == [
        ("fog", range(0, 2)),
        ("noise", range(2, 3)),
    ]


def test_read_segments_without_segment_lines(real_world, tmp_path):
    listing = tmp_path / "plain.txt"
    listing.write_text("# header\nReal World/Alarm_Clock/x.jpg 0\n")
    assert lists.read_segments(listing) == []
    assert lists.segment_of([], 1) == []
    with pytest.raises(InputError, match="list file not found: .*absent.txt"):
        lists.read_segments(tmp_path / "absent.txt")


IMAGE = "Real World/Alarm_Clock/x.jpg 0"


@pytest.mark.parametrize(
    ("lines", "lineno", "fragment"),
    [
        (["# header", IMAGE, "# segment fog", IMAGE], 2, "images before the first '# segment' line"),
        (["# segment fog", "# segment noise", IMAGE], 1, "segment 'fog' holds no images"),
        (["# segment fog", IMAGE, "", "# segment noise", "# other"], 4, "segment 'noise' holds no images (the file"),
        (["# segment fog", IMAGE, "# segment fog", IMAGE], 3, "segment 'fog' repeats the segment of line 1"),
        (["# segment heavy fog", IMAGE], 1, "segment name 'heavy fog' holds spaces"),
        (["# segment fog", IMAGE, "#  segment  ", IMAGE], 3, "a '# segment' line without a name"),
    ],
    ids=["images_first", "empty", "empty_at_the_end", "repeated", "spaces", "no_name"],
)
def test_read_segments_bad_file(tmp_path, lines, lineno, fragment):
    """Each bad segment file is one InputError starting with '<file>:<line>' and saying what is wrong."""
    listing = tmp_path / "stream.txt"
    listing.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        lists.read_segments(listing)
    assert str(err.value).startswith(f"{listing}:{lineno}: ") and len(str(err.value).splitlines()) == 1
    assert fragment in str(err.value)
