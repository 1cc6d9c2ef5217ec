"""``uft export``: a checkpoint's adapted model as a folder that torch and open_clip alone use. The command's glue:
its options, the run's configuration built as ``uft predict`` builds it (:func:`~uft.cli.cli_main`), the checkpoint
loaded and the unknown threshold computed as ``uft predict`` does; the folder itself is :mod:`uft.export`'s."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from uft.checkpoint_contents import check_checkpoint_file
from uft.cli import _one_line, cli_main
from uft.clip import resolve_weights
from uft.data.datamodule import TargetDataModule
from uft.errors import InputError, one_line_errors
from uft.export import WEIGHTS, check_export_folder, classifier_contents, file_size, score_rule, write_export
from uft.module import UFTModule
from uft.scores import unknown_threshold


def export_main(argv: list[str]) -> None:
    """``uft export --ckpt_path CKPT --out DIR [--weights full|adapted-only] [--program] -c CONFIG ...``: a checkpoint's
    adapted model as a new folder that torch and open_clip alone use (:mod:`uft.export`). Every other argument is the
    run's configuration, as ``uft predict`` takes it. The checkpoint is loaded as ``uft predict`` loads it (the
    module's own checks, then its trained parameters over the rebuilt CLIP) and the unknown threshold is
    ``uft predict``'s: the unknown rule on the scores of the target set under those weights. Bad input (a missing
    checkpoint, an ``--out`` that holds files) is one line before anything is built; the folder is written whole or
    not at all."""
    parser = argparse.ArgumentParser(
        prog="uft export",
        description="Write a checkpoint's adapted model as a new folder that torch and open_clip alone use: model.pt "
        "(or adapted.pt), classifier.pt (the class features, the OOD score rule and the unknown threshold uft predict "
        "uses) and README.md, whose Python snippet classifies image files as uft predict does.",
        epilog="Every other argument (-c CONFIG, --data.root ...) is the run's configuration, as uft predict takes it.",
        allow_abbrev=False,  # the configuration's own arguments pass through untouched
        exit_on_error=False,
    )
    parser.add_argument("--ckpt_path", help="the checkpoint: a last.ckpt written by uft fit")
    parser.add_argument("--out", help="the folder to write: a new one, or an empty one")
    parser.add_argument(
        "--weights",
        default="full",
        help="full: model.pt, the whole CLIP state dict; adapted-only: adapted.pt, the norm affines alone, to load "
        "over the base weights (model.pretrained, a tag or a file) with the README's load_model",
    )
    parser.add_argument(
        "--program",
        action="store_true",
        help="also write program.pt2: a torch.export program of the image tower "
        "and the classifier (a preprocessed batch in, scores and decisions out)",
    )
    with one_line_errors(_one_line):
        try:
            options, rest = parser.parse_known_args(argv)
        except argparse.ArgumentError as err:
            raise InputError(f"uft export: {err}") from None
        if options.ckpt_path is None or options.out is None:
            raise InputError("uft export needs --ckpt_path (a checkpoint written by uft fit) and --out (a new folder)")
        if options.weights not in WEIGHTS:
            raise InputError(f"--weights must be {' or '.join(WEIGHTS)}, got {options.weights!r}")
        out = check_export_folder(options.out)
        checkpoint = check_checkpoint_file(options.ckpt_path)
        if checkpoint is None:
            raise InputError(f"--ckpt_path {options.ckpt_path}: uft export needs the checkpoint file's path")
        cli = cli_main(rest, run=False)
        device = cli.trainer.strategy.root_device
        classifier = exported_classifier(cli.model, cli.datamodule, checkpoint, options.weights, device)
        files = write_export(out, cli.model.clip, classifier, cli.model.visual_norms, options.program)
    listing = ", ".join(f"{name} {file_size(size)}" for name, size in sorted(files.items()))
    print(f"uft: exported {options.ckpt_path} to {out}: {listing}", file=sys.stderr)


def exported_classifier(model: UFTModule, data, checkpoint: dict, weights: str, device: torch.device) -> dict:
    """Load ``checkpoint`` into ``model`` and return ``classifier.pt``'s contents (:func:`uft.export.
    classifier_contents`); ``model`` is left in float32 on the CPU, ready to be written. The threshold pass runs
    on ``device``, in float32: the arithmetic of the exported snippet (``uft predict`` under a mixed
    ``trainer.precision`` runs its pass under autocast)."""
    hparams = model.hparams
    if hparams.zero_shot_templates:
        raise InputError("model.zero_shot_templates is set: uft export writes the adapted prompts' classifier")
    if weights == "adapted-only" and not hparams.pretrained:
        raise InputError(
            "--weights adapted-only needs base weights to load over (model.pretrained, a tag or a file); these are "
            "random: use --weights full"
        )
    if not isinstance(data, TargetDataModule):
        raise InputError(f"uft export reads the target set through uft's TargetDataModule, got {type(data).__name__}")
    score_rule(model.ood_score)  # a score the snippet cannot compute is refused before the pass
    model.on_load_checkpoint(checkpoint)  # the module's refusals: another model, other weights or classes
    model.load_state_dict(checkpoint["state_dict"], strict=False)  # trained parameters only, as Lightning loads them
    model.float().to(device)  # frozen weights stored in half precision are written as what they hold, in float32
    data.preprocess = model.preprocess  # set by the trainer in a run
    data.prepare_data()
    data.setup("predict")
    cosine = model.cosine_table(data.confidence_dataloader(), data.num_target_samples)
    threshold = unknown_threshold(cosine, model.ood_score, model.unknown_rule)
    with torch.no_grad():
        features = model.text_features()
    model.cpu()
    readable = int((~cosine.isnan().any(dim=1)).sum())
    base = resolve_weights(hparams.pretrained) or None
    if base is not None and Path(base).is_file():
        base = str(Path(base).resolve())  # usable from wherever the folder goes
    return classifier_contents(
        features,
        list(hparams.class_names),
        model.ood_score,
        threshold,
        hparams.model_name,
        hparams.logit_scale,
        model.preprocess,
        weights,
        base,
        f"{type(model.unknown_rule).__name__} on the scores of the {readable} readable target images",
    )
