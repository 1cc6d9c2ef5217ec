"""What a uft checkpoint holds beside Lightning's own entries, and what a checkpoint must be to be loaded.

A checkpoint holds only the trained parameters (the frozen CLIP is rebuilt from ``model_name``/``pretrained``),
the per-sample table (:mod:`uft.target_table`) and what the parameters only make sense with (the model's identity).
The configuration the user typed wins over the checkpoint's; a checkpoint that cannot work with it (another model,
other weights or classes, non-finite or foreign parameters, a file that is not a checkpoint) is refused in one line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from uft.clip import weights_identity
from uft.errors import InputError, first_line

IDENTITY_KEY = "uft_model_identity"  # what a checkpoint's parameters only make sense with


def trained_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters training changes (``requires_grad``), by name: what a checkpoint holds and what the divergence
    watch checks."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def keep_trained(checkpoint: dict, module: nn.Module) -> None:
    """Drop the frozen weights from a checkpoint's ``state_dict``."""
    trained = trained_parameters(module)
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trained}


def model_identity(hparams, context_length: int) -> dict:
    """What a model's trained parameters only make sense with, from its hyperparameters: architecture, pretrained
    weights (a hash for local files, not their path), class names, context length, and which parameters were
    tuned."""
    return {
        "model_name": hparams.model_name,
        "weights": weights_identity(hparams.pretrained),
        "class_names": list(hparams.class_names),
        "context_length": context_length,
        "tune": hparams.tune,
        "norm_rule": getattr(hparams, "norm_rule", "type"),
    }


def check_loadable(checkpoint: dict, identity: dict, names: set[str], fitting: bool) -> None:
    """Refuse a checkpoint whose identity differs from the configured ``identity`` where the two cannot work
    together (what was tuned only matters to a resumed fit), that holds non-finite parameters, or parameters not
    among ``names``."""
    saved = checkpoint.get(IDENTITY_KEY) or checkpoint.get("hyper_parameters", {})
    keys = ["model_name", "weights", "class_names", "context_length"] + (["tune", "norm_rule"] if fitting else [])
    differ = [key for key in keys if key in saved and saved[key] != identity[key]]
    if differ:
        details = "; ".join(
            f"{key}: checkpoint {_short(saved[key])}, configured {_short(identity[key])}" for key in differ
        )
        raise InputError(f"the checkpoint does not fit this configuration ({details})")
    broken = [k for k, v in checkpoint["state_dict"].items() if not torch.isfinite(v).all()]
    if broken:
        raise InputError(f"the checkpoint holds non-finite parameters ({', '.join(broken[:3])}): a diverged run's")
    unexpected = sorted(set(checkpoint["state_dict"]) - names)
    if unexpected:
        raise InputError(
            f"the checkpoint holds parameters this model does not have ({', '.join(unexpected[:3])}, ...): "
            f"was it trained with another model_name?"
        )


def check_checkpoint_file(ckpt_path: str | None) -> dict | None:
    """A missing, truncated or foreign ``--ckpt_path`` ends with one line naming the file, before the model is
    built. Returns the checkpoint read (``None`` for a name Lightning resolves later: ``last``, a URL)."""
    if ckpt_path is None or ckpt_path in ("last", "best", "hpc") or "://" in str(ckpt_path):
        return None
    if not Path(ckpt_path).is_file():
        raise InputError(f"checkpoint not found: {ckpt_path}")
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:
        # torch's refusal under weights_only is a page of advice; its gist fits in a few words.
        why = "it is not a torch file, or holds objects other than tensors and plain values"
        detail = why if "Weights only load failed" in str(err) else first_line(err, 160)
        raise InputError(
            f"checkpoint {ckpt_path} cannot be read (truncated, or not a checkpoint file): {type(err).__name__}: "
            f"{detail}"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputError(f"{ckpt_path} is not a uft checkpoint (no state_dict): pass a last.ckpt written by uft fit")
    return checkpoint


def _short(value) -> str:
    """A value for a one-line message: long lists are cut."""
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)} names [{', '.join(map(str, value[:4]))}, ...]"
    return repr(value)
