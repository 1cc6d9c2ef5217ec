"""Bad input as the CLI reports it: `uft fit` (or another command) on a bad list file, bad settings, an unusable
checkpoint or weights file, or data a checkpoint was not trained on exits 2 with one `uft: error:` line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .args import ROOT, demo_args


def _write_list(tmp_path: Path, name: str, lineno: int, line: str, data: Path) -> Path:
    """A copy of the shapes target list with line ``lineno`` replaced by ``line``."""
    lines = (data / "target.txt").read_text().splitlines()
    lines[lineno - 1] = line
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _bad_line(name: str, lineno: int, line: str, message: str):
    """The case ``name``: a list file whose line ``lineno`` is ``line``; the error names the file and the line
    and says ``message``."""

    def case(tmp_path, data):
        listing = _write_list(tmp_path, f"{name}.txt", lineno, line, data)
        return [f"--data.train_list={listing}"], [f"{listing}:{lineno}:", message]

    case.__name__ = f"_case_{name}"
    return case


_case_unparsable_line = _bad_line("unparsable_line", 3, "images/circle/target_002.png zero", "cannot parse")
_case_label_out_of_range = _bad_line("label_out_of_range", 2, "images/circle/target_001.png 8", "label 8")
_OUTSIDE = "lies outside the image folder"
_case_path_outside_root = _bad_line("path_outside_root", 2, "../../../etc/passwd 0", f"../../../etc/passwd {_OUTSIDE}")
_case_absolute_path = _bad_line("absolute_path", 4, "/etc/passwd 0", f"/etc/passwd {_OUTSIDE}")
_case_two_labels = _bad_line("two_labels", 3, "images/circle/target_002.png 1 2", "expected one label after the path")


def _case_missing_root(tmp_path, data):
    root = tmp_path / "no_such_root"
    return [f"--data.root={root}"], ["image root not found", str(root)]


def _case_num_known_too_large(tmp_path, data):
    return ["--data.split.num_known=9"], ["split.num_known=9", "classes.txt", "8 classes"]


def _case_empty_target_set(tmp_path, data):
    lines = [line for line in (data / "target.txt").read_text().splitlines() if line.endswith(" 0")]
    listing = tmp_path / "circles.txt"
    listing.write_text("\n".join(lines) + "\n")
    return [f"--data.train_list={listing}", "--data.split.target_classes=5-6"], ["empty target set", "5-6"]


def _case_missing_checkpoint(tmp_path, data):
    return [f"--ckpt_path={tmp_path / 'nope.ckpt'}"], [f"checkpoint not found: {tmp_path / 'nope.ckpt'}"]


def _case_garbage_checkpoint(tmp_path, data):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(bytes(range(256)) * 64)
    return [f"--ckpt_path={garbage}"], [f"checkpoint {garbage} cannot be read"]


def _case_text_as_weights(tmp_path, data):
    text = tmp_path / "weights.pt"
    text.write_text("these are not weights\n")
    return [f"--model.pretrained={text}"], [f"pretrained weights file {text} cannot be read as uft-tiny-vit weights"]


def _case_class_path_typo(tmp_path, data):
    return ["--model.objective=uft.objectives.UEOO"], [
        "model.objective: uft.objectives.UEOO does not exist; did you mean uft.objectives.UEO",
    ]


def _case_negative_learning_rate(tmp_path, data):
    return ["--model.prompt_lr=-0.1"], ["model.prompt_lr must be a positive learning rate, got -0.1"]


def _case_batch_size_zero(tmp_path, data):
    return ["--data.batch_size=0"], ["data.batch_size must be a positive number of images, got 0"]


def _case_nothing_to_train(tmp_path, data):
    return ["--trainer.max_epochs=0"], ["nothing to train", "max_epochs"]


def _case_diverged(tmp_path, data):
    return ["--model.prompt_lr=1e30", "--model.visual_lr=1e30"], ["training diverged at step 1: the loss is nan"]


def _case_negative_workers(tmp_path, data):
    return ["--data.num_workers=-1"], ["data.num_workers must be 0 or more, got -1"]


def _case_max_skipped_out_of_range(tmp_path, data):
    return ["--data.max_skipped=2"], ["data.max_skipped must be a share in [0, 1], got 2"]


def _spoiled_copy(tmp_path: Path, data: Path) -> list[str]:
    """A copy of the data with one unreadable target image (1 of 42: more than the default 1%)."""
    copy = tmp_path / "spoiled"
    shutil.copytree(data, copy)
    rel = (copy / "target.txt").read_text().splitlines()[4].split()[0]
    (copy / rel).write_bytes((copy / rel).read_bytes()[:40])  # truncated
    return [f"--data.root={copy}", f"--data.train_list={copy / 'target.txt'}", f"--data.test_list={copy / 'test.txt'}"]


def _case_unreadable_images(tmp_path, data):
    return _spoiled_copy(tmp_path, data), ["1 of the 42 target images cannot be read (2.4%", "target_004.png"]


def _case_unreadable_images_verified(tmp_path, data):
    return [*_spoiled_copy(tmp_path, data), "--data.verify_images=true"], ["1 of the 42 target images cannot be read"]


def _case_recipe_root_typo(tmp_path, data):
    root = tmp_path / "wolrd" / "photo-fog"
    return [f"--data.root={root}", "--data.recipe=uft.world.benchmark.WorldBenchmark"], [
        f"data.root {root}: its parent folder {root.parent} does not exist"
    ]


def _case_unknown_stream_shift(tmp_path, data):
    recipe = ["--data.recipe=uft.world.benchmark.WorldStream", "--data.recipe.init_args.shifts=[fog, rain]"]
    return [f"--data.root={tmp_path / 'stream'}", *recipe], ["WorldStream: unknown shift 'rain'; expected a list of"]


def _case_missing_weights(tmp_path, data):
    return [f"--model.pretrained={tmp_path / 'w.pt'}"], [f"pretrained checkpoint file not found: {tmp_path / 'w.pt'}"]


def _trained_checkpoint(tmp_path: Path, data: Path) -> Path:
    """A checkpoint of the tiny config after one epoch (5 known classes of 8)."""
    from uft.cli import cli_main

    cli_main(["fit", *demo_args(data, tmp_path / "trained", "--trainer.max_epochs=1")])
    return tmp_path / "trained" / "checkpoints" / "last.ckpt"


def _changed_target_list(tmp_path: Path, data: Path, change) -> list[str]:
    """A checkpoint trained on the shapes target list, and a copy of that list of the same size that ``change``
    altered: resuming the checkpoint on it must be refused."""
    ckpt = _trained_checkpoint(tmp_path, data)
    lines = (data / "target.txt").read_text().splitlines()
    listing = tmp_path / "changed.txt"
    listing.write_text("\n".join(change(lines)) + "\n")
    return [f"--data.train_list={listing}", f"--ckpt_path={ckpt}"]


_OTHER_LIST = "the target list differs from the one the checkpoint was trained on, first at sample"


def _case_target_list_reordered(tmp_path, data):
    args = _changed_target_list(tmp_path, data, lambda lines: [lines[1], lines[0], *lines[2:]])
    return args, [f"{_OTHER_LIST} 0: now images/circle/target_001.png (label 0)"]


def _case_target_image_replaced(tmp_path, data):
    test_image = "images/circle/test_000.png 0"  # another image of the same class
    args = _changed_target_list(tmp_path, data, lambda lines: [*lines[:3], test_image, *lines[4:]])
    return args, [f"{_OTHER_LIST} 3: now images/circle/test_000.png (label 0)", "or start afresh with --fresh"]


def _case_target_label_edited(tmp_path, data):
    args = _changed_target_list(tmp_path, data, lambda lines: [*lines[:2], lines[2].replace(" 0", " 1"), *lines[3:]])
    return args, [f"{_OTHER_LIST} 2: now images/circle/target_002.png (label 1)"]


def _case_fsdp_strategy(tmp_path, data):
    return ["--trainer.strategy=fsdp"], ["trainer.strategy=fsdp is not supported", "ddp or ddp_spawn"]


def _case_deepspeed_strategy(tmp_path, data):
    return ["--trainer.strategy=deepspeed_stage_2"], ["trainer.strategy=deepspeed_stage_2 is not supported"]


def _case_root_dir_is_a_file(tmp_path, data):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    return [f"--trainer.default_root_dir={afile}"], [f"trainer.default_root_dir {afile} is a file, not a folder"]


def _case_predict_into_a_folder_under_a_file(tmp_path, data):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    return "predict", [f"--trainer.default_root_dir={afile / 'run'}"], ["a file is in the way"]


def _case_checkpoint_of_another_model(tmp_path, data):
    ckpt = _trained_checkpoint(tmp_path, data)
    return (
        "test",
        [f"--ckpt_path={ckpt}", "--model.model_name=uft-world-vit"],
        [
            "the checkpoint does not fit this configuration (model_name: checkpoint 'uft-tiny-vit', configured "
            "'uft-world-vit')"
        ],
    )


def _case_checkpoint_of_other_classes(tmp_path, data):
    ckpt = _trained_checkpoint(tmp_path, data)
    return (
        "test",
        [f"--ckpt_path={ckpt}", "--data.split.num_known=4"],
        ["class_names: checkpoint ['circle', 'square', 'triangle', 'cross', 'ring'], configured ['circle', 'square',"],
    )


def _case_truncated_checkpoint(tmp_path, data):
    ckpt = _trained_checkpoint(tmp_path, data)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    return "test", [f"--ckpt_path={cut}"], [f"checkpoint {cut} cannot be read (truncated, or not a checkpoint file)"]


def _case_zero_byte_checkpoint(tmp_path, data):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    return "test", [f"--ckpt_path={empty}"], [f"checkpoint {empty} cannot be read"]


def _case_foreign_checkpoint(tmp_path, data):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    return "test", [f"--ckpt_path={foreign}"], [f"{foreign} is not a uft checkpoint"]


def _case_nothing_to_validate(tmp_path, data):
    return "validate", ["--trainer.limit_val_batches=0"], ["nothing to evaluate: trainer.limit_val_batches is 0"]


def _case_fewer_images_than_a_batch(tmp_path, data):
    return ["--data.batch_size=64"], ["the target set has 42 images, fewer than one global batch (data.batch_size=64)"]


def _case_unlabeled_data_without_test_list(tmp_path, data):
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("".join(line.split()[0] + "\n" for line in (data / "target.txt").read_text().splitlines()))
    return (
        "test",
        [f"--data.train_list={unlabeled}", "--data.test_list=null"],
        ["nothing to evaluate: the target data has no labels and there is no data.test_list"],
    )


# Bad data found when the CLI reads the data ahead of the run (TargetDataModule.read and its checks).
READ_AHEAD = {
    _case_missing_root,
    _case_unparsable_line,
    _case_label_out_of_range,
    _case_empty_target_set,
    _case_path_outside_root,
    _case_absolute_path,
    _case_two_labels,
    _case_unreadable_images_verified,
    _case_unlabeled_data_without_test_list,
    _case_fewer_images_than_a_batch,
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        _case_missing_root,
        _case_unparsable_line,
        _case_label_out_of_range,
        _case_num_known_too_large,
        _case_empty_target_set,
        _case_path_outside_root,
        _case_absolute_path,
        _case_two_labels,
        _case_missing_checkpoint,
        _case_garbage_checkpoint,
        _case_text_as_weights,
        _case_class_path_typo,
        _case_negative_learning_rate,
        _case_batch_size_zero,
        _case_nothing_to_train,
        _case_diverged,
        _case_negative_workers,
        _case_max_skipped_out_of_range,
        _case_unreadable_images,
        _case_unreadable_images_verified,
        _case_recipe_root_typo,
        _case_unknown_stream_shift,
        _case_missing_weights,
        _case_checkpoint_of_another_model,
        _case_target_list_reordered,
        _case_fsdp_strategy,
        _case_root_dir_is_a_file,
        _case_predict_into_a_folder_under_a_file,
        _case_deepspeed_strategy,
        _case_target_image_replaced,
        _case_target_label_edited,
        _case_checkpoint_of_other_classes,
        _case_truncated_checkpoint,
        _case_zero_byte_checkpoint,
        _case_foreign_checkpoint,
        _case_nothing_to_validate,
        _case_unlabeled_data_without_test_list,
        _case_fewer_images_than_a_batch,
    ],
    ids=lambda f: f.__name__[len("_case_") :],
)
def test_cli_bad_input(tmp_path, case, shapes_dir):
    """`uft fit` (or the case's command) on bad input exits 2 with one 'uft: error:' line naming the problem, no
    traceback, no checkpoint (a diverged run: none with non-finite values), and every file it was given unchanged."""
    *command, extra, fragments = case(tmp_path, shapes_dir)
    given = [*shapes_dir.rglob("*"), *(p for p in tmp_path.rglob("*") if "run" not in p.relative_to(tmp_path).parts)]
    before = {p: p.read_bytes() for p in given if p.is_file()}
    cmd = [sys.executable, "-m", "uft", *(command or ["fit"]), *demo_args(shapes_dir, tmp_path / "run")]
    proc = subprocess.run(cmd + extra, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("uft: error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    assert "Traceback" not in proc.stderr + proc.stdout and "usage:" not in proc.stderr
    for ckpt in (tmp_path / "run").rglob("*.ckpt"):  # the run writes none, or (diverged) only a finite one
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        assert case is _case_diverged and all(torch.isfinite(v).all() for v in state.values())
    assert {p: p.read_bytes() for p in given if p.is_file()} == before
    if case in READ_AHEAD:  # refused when the data is read, before the run writes anything: no run folder
        assert not (tmp_path / "run").exists(), sorted((tmp_path / "run").rglob("*"))
