"""The adapted model outside uft: a folder that ``torch`` and ``open_clip`` alone can use (``uft export``).

The folder holds:

- ``model.pt``: the whole CLIP state dict with the adapted norm affines, loadable by
  ``open_clip.create_model_and_transforms(model_name, pretrained=<folder>/model.pt)``; with ``weights="adapted-only"``
  ``adapted.pt`` instead: only the tensors adaptation changed, to load over the base weights (a tag or file) that
  ``classifier.pt`` names. The architecture's config JSON is beside them when open_clip does not ship it (the tiny
  architectures uft registers), for ``open_clip.add_model_config(<folder>)``.
- ``classifier.pt``: the class features (K x D, normalised; the learned prompt context is baked into them, so no text
  tower runs at prediction), the class names, the OOD score rule as plain data, the unknown threshold ``uft predict``
  uses and the model name (:func:`classifier_contents`).
- ``README.md``: a short Python snippet (torch, open_clip and PIL only) that classifies image files, ``unknown`` where
  the score is below the threshold (:func:`snippet`).
- optionally ``program.pt2``: a ``torch.export`` program of the image tower and the classifier, one preprocessed
  batch in, scores and decisions out (:func:`open_set_program`). ``torch.export`` rather than TorchScript: it is
  torch's maintained way to serialise a model (TorchScript is in maintenance), traces open_clip's towers as they
  are, and ``torch.export.load`` needs nothing but torch.

Plain torch and open_clip: the command's glue (checkpoint, data, threshold pass) is in :mod:`uft.export_command`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uft.atomic_files import write_error, write_text
from uft.clip import MODEL_CONFIG_DIR, ImagePreprocess
from uft.errors import InputError
from uft.scores import MSP, Energy, MaxLogit, OODScore

FORMAT = "uft-export/1"  # what classifier.pt says it is, for a reader that checks
WEIGHTS = ("full", "adapted-only")

# Each OOD score as one expression of the (K,) or (N, K) cosines and the rule's temperature ``t``: the snippet's
# line (the tests check each against uft.scores).
SCORE_EXPRESSIONS = {
    "msp": "torch.softmax(cosine / t, -1).max(-1).values",
    "max_logit": "cosine.max(-1).values",
    "energy": "t * torch.logsumexp(cosine / t, -1)",
}


def score_rule(score: OODScore) -> dict:
    """The OOD score as plain data: ``{"name": "msp"|"max_logit"|"energy", "temperature": T}`` (1.0 for MaxLogit,
    which has none).

    Raises:
        InputError: for a score other than uft's MSP, MaxLogit and Energy (the snippet could not compute it).
    """
    if type(score) is MSP:
        return {"name": "msp", "temperature": float(score.temperature)}
    if type(score) is MaxLogit:
        return {"name": "max_logit", "temperature": 1.0}
    if type(score) is Energy:
        return {"name": "energy", "temperature": float(score.temperature)}
    raise InputError(
        f"uft export writes the OOD scores uft.scores.MSP, MaxLogit and Energy; model.ood_score is "
        f"{type(score).__module__}.{type(score).__name__}"
    )


def ood_score_of(rule: dict) -> OODScore:
    """The OOD score :func:`score_rule` wrote as ``rule``."""
    if rule["name"] == "max_logit":
        return MaxLogit()
    return {"msp": MSP, "energy": Energy}[rule["name"]](rule["temperature"])


def classifier_contents(
    class_features: Tensor,
    class_names: list[str],
    score: OODScore,
    threshold: float,
    model_name: str,
    logit_scale: float,
    preprocess: ImagePreprocess,
    weights: str,
    base_weights: str | None,
    threshold_from: str,
) -> dict:
    """What ``classifier.pt`` holds: tensors and plain values only (``torch.load``'s default ``weights_only`` reads it).

    Args:
        class_features: (K, D) normalised class features of the adapted prompts.
        class_names: the K known class names, in class-id order.
        score: the OOD score ``uft predict`` decides with (:func:`score_rule`).
        threshold: the unknown threshold: an image whose score is below it is ``unknown`` (compared in float64).
        model_name: the open_clip architecture.
        logit_scale: the multiplier of the cosines in the training objective (``softmax(logit_scale * cosine)`` are
            the class probabilities the model was adapted with); the score and the decision use plain cosines.
        preprocess: the image size, mean and std the image tower expects (what open_clip's transform applies; the
            program needs them given by hand).
        weights: ``full`` (``model.pt``) or ``adapted-only`` (``adapted.pt`` over ``base_weights``).
        base_weights: the pretrained weights the model was adapted from: an open_clip tag or a file path.
        threshold_from: how the threshold was found, for the record.
    """
    return {
        "format": FORMAT,
        "model_name": model_name,
        "weights": weights,
        "base_weights": base_weights,
        "class_names": list(class_names),
        "class_features": class_features.detach().float().cpu().contiguous(),
        "logit_scale": float(logit_scale),
        "score": score_rule(score),
        "threshold": float(threshold),
        "threshold_from": threshold_from,
        "image_size": preprocess.size,
        "mean": list(preprocess.mean),
        "std": list(preprocess.std),
    }


def adapted_state(clip: nn.Module, adapted: list[nn.Parameter]) -> dict[str, Tensor]:
    """The entries of ``clip.state_dict()`` that are the ``adapted`` parameters (the norm affines), by name."""
    ids = {id(p) for p in adapted}
    return {name: p.detach().cpu().clone() for name, p in clip.named_parameters() if id(p) in ids}


class OpenSetProgram(nn.Module):
    """The image tower and the classifier as one module: a preprocessed batch (N, 3, S, S) in, ``(score, pred_id)``
    out (``pred_id`` -1 for unknown), as ``uft predict`` decides."""

    def __init__(self, visual: nn.Module, classifier: dict) -> None:
        super().__init__()
        self.visual = visual
        self.register_buffer("class_features", classifier["class_features"].clone())
        self.register_buffer("threshold", torch.tensor(classifier["threshold"], dtype=torch.float64))
        self.score = ood_score_of(classifier["score"])

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        cosine = F.normalize(self.visual(images), dim=-1) @ self.class_features.T
        score = self.score(cosine)
        pred = torch.where(score.double() >= self.threshold, cosine.argmax(-1), torch.full_like(score, -1).long())
        return score, pred


def open_set_program(visual: nn.Module, classifier: dict) -> torch.export.ExportedProgram:
    """:class:`OpenSetProgram` through ``torch.export``, any batch size."""
    program = OpenSetProgram(visual, classifier).eval()
    size = classifier["image_size"]
    example = torch.zeros(2, 3, size, size)
    with torch.no_grad():
        return torch.export.export(program, (example,), dynamic_shapes={"images": {0: torch.export.Dim("batch")}})


def snippet(classifier: dict, config_file: str | None) -> str:
    """The README's Python code: classify the image files named on the command line (``python classify.py FOLDER
    IMAGE...``), one tab-separated line each: file, class name or ``unknown``, score. Written for this folder's
    weights and score rule; torch, open_clip and PIL only."""
    rule = classifier["score"]
    lines = [
        "import sys",
        "",
        "import open_clip",
        "import torch",
        "from PIL import Image",
        "",
        "folder, *image_files = sys.argv[1:]",
        'classifier = torch.load(f"{folder}/classifier.pt")',
    ]
    if config_file:
        lines.append(f"open_clip.add_model_config(folder)  # {config_file}: an architecture open_clip does not ship")
    name = 'classifier["model_name"]'
    if classifier["weights"] == "full":
        weights = 'pretrained=f"{folder}/model.pt"'
        lines.append(f"model, _, preprocess = open_clip.create_model_and_transforms({name}, {weights})")
    else:
        lines += [
            "",
            'def load_model(folder, base_weights=classifier["base_weights"]):',
            '    """The base weights (an open_clip tag or a file) with the adapted tensors over them."""',
            f"    model, _, preprocess = open_clip.create_model_and_transforms({name}, pretrained=base_weights)",
            '    model.load_state_dict(torch.load(f"{folder}/adapted.pt"), strict=False)',
            "    return model, preprocess",
            "",
            "model, preprocess = load_model(folder)",
        ]
    lines += [
        "model.eval()",
        't = classifier["score"]["temperature"]',
        "for image_file in image_files:",
        "    with torch.no_grad():",
        '        image = model.encode_image(preprocess(Image.open(image_file).convert("RGB"))[None], normalize=True)',
        '    cosine = image[0] @ classifier["class_features"].T',
        f"    score = {SCORE_EXPRESSIONS[rule['name']]}  # the OOD score: {rule['name']}",
        '    known = score.double() >= classifier["threshold"]  # float64, as uft compares',
        '    label = classifier["class_names"][cosine.argmax()] if known else "unknown"',
        '    print(image_file, label, f"{score:.8g}", sep="\\t")',
    ]
    return "\n".join(lines) + "\n"


def readme(classifier: dict, files: dict[str, int], config_file: str | None) -> str:
    """The folder's README.md: what each file is, the snippet, and the program's use when there is one."""
    k, d = classifier["class_features"].shape
    rule = classifier["score"]
    weights = (
        f"`model.pt`: the whole {classifier['model_name']} state dict with the adapted norm affines"
        if classifier["weights"] == "full"
        else f"`adapted.pt`: the tensors adaptation changed (the image tower's norm affines), to load over the base "
        f"weights `{classifier['base_weights']}` (`load_model` below)"
    )
    parts = [
        f"# {classifier['model_name']} adapted by uft, with its open-set classifier",
        "",
        "Needs `torch`, `open_clip_torch` and `Pillow`; not uft.",
        "",
        f"- {weights}.",
        f"- `classifier.pt` (`torch.load`): `class_features` ({k} x {d}, normalised; the learned prompt context is "
        f"baked in), `class_names`, `score` ({rule['name']}, temperature {rule['temperature']:g}), `threshold` "
        f"({classifier['threshold']:.8g}: below it an image is unknown; {classifier['threshold_from']}), "
        "`model_name`, `logit_scale`, `image_size`, `mean`, `std`.",
    ]
    if config_file:
        parts.append(f"- `{config_file}`: the architecture, for `open_clip.add_model_config(folder)`.")
    if "program.pt2" in files:
        parts.append(
            "- `program.pt2`: a `torch.export` program of the image tower and the classifier (torch only): "
            '`score, pred_id = torch.export.load("program.pt2").module()(images)` on a batch resized (bicubic, '
            "short side), centre-cropped to `image_size` and normalised with `mean` and `std`; `pred_id` -1 is unknown."
        )
    sizes = ", ".join(f"{name} {file_size(size)}" for name, size in sorted(files.items()))
    parts += [
        "",
        f"Sizes: {sizes}.",
        "",
        "Save this as `classify.py` and run `python classify.py FOLDER IMAGE...`; it prints file, class (or "
        "`unknown`) and score, the score and decision `uft predict` gives the same image:",
        "",
        "```python",
        snippet(classifier, config_file).rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(parts)


def file_size(size: int) -> str:
    """A file size for people: KiB below one MiB."""
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def check_export_folder(out: str | os.PathLike) -> Path:
    """``out`` must not exist, or be an empty folder: an export never writes into, or over, files of the user's."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: give a new folder")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"--out {out} exists and is not empty: uft export writes a new folder (give another)")
    return out


def write_export(
    out: str | os.PathLike,
    clip: nn.Module,
    classifier: dict,
    adapted: list[nn.Parameter],
    program: bool = False,
) -> dict[str, int]:
    """Write the folder ``out`` (:func:`check_export_folder`) whole or not at all: into a hidden folder beside it,
    renamed to ``out`` at the end, so a failure (a full disk) leaves no half folder. Returns each file's size.

    Args:
        out: the new folder.
        clip: the adapted open_clip model (float32, on the CPU).
        classifier: :func:`classifier_contents`.
        adapted: the parameters of ``clip`` adaptation changed (written alone for ``adapted-only``).
        program: also write ``program.pt2`` (:func:`open_set_program`).
    """
    out = check_export_folder(out)
    temporary = out.parent / f".{out.name}.{os.getpid()}.tmp"
    name = classifier["model_name"]
    config = MODEL_CONFIG_DIR / f"{name}.json"
    config_file = config.name if config.is_file() else None
    try:
        temporary.mkdir(parents=True)
        if classifier["weights"] == "full":
            state = {k: v.detach().cpu() for k, v in clip.state_dict().items()}
            torch.save(state, temporary / "model.pt")
        else:
            torch.save(adapted_state(clip, adapted), temporary / "adapted.pt")
        torch.save(classifier, temporary / "classifier.pt")
        if config_file:
            shutil.copyfile(config, temporary / config_file)
        if program:
            torch.export.save(open_set_program(clip.visual, classifier), temporary / "program.pt2")
        files = {p.name: p.stat().st_size for p in temporary.iterdir()}
        write_text(temporary / "README.md", readme(classifier, files, config_file))
        files["README.md"] = (temporary / "README.md").stat().st_size
        if out.is_dir():
            out.rmdir()  # empty (checked): the rename takes its place
        os.rename(temporary, out)
    except OSError as err:
        raise write_error(err.filename or out, err) from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(temporary)
    return files
