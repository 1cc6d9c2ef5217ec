"""Loading a frozen CLIP through open_clip, its text tower on prompt embeddings, and its norm layers.

Backbones are named exactly as open_clip names them: ``model_name`` is an architecture (``ViT-B-16``) or an
``hf-hub:org/repo`` name; ``pretrained`` is an open_clip tag (``openai``, ``laion2b_s34b_b88k``), a local
checkpoint file, or empty for random weights. A relative file path is looked up in the current folder, then in the
uft checkout (so the shipped ``data/world/uft-world-vit.pt`` is found from anywhere). The tiny architectures in ``uft/model_configs`` are registered with
open_clip on import, for tests and the demo.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import open_clip
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from uft.errors import InputError, first_line

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
CHECKOUT = Path(__file__).resolve().parents[1]  # the folder holding the uft package: data/ and configs/ beside it
open_clip.add_model_config(MODEL_CONFIG_DIR)

#: Module types whose affine weight and bias form the "visual norm" parameter group.
NORM_TYPES = (nn.LayerNorm, _BatchNorm, nn.GroupNorm)


@dataclass(frozen=True)
class ImagePreprocess:
    """The image preprocessing a CLIP was trained with."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def load_clip(model_name: str, pretrained: str | None) -> tuple[nn.Module, ImagePreprocess]:
    """Build a CLIP with open_clip, frozen and in eval mode, and return it with its preprocessing config."""
    pretrained = resolve_weights(pretrained) or None
    if pretrained and _looks_like_path(pretrained) and not Path(pretrained).is_file():
        where = "" if Path(pretrained).is_absolute() else f" (looked in {Path.cwd()} and in {CHECKOUT})"
        raise InputError(f"pretrained checkpoint file not found: {pretrained}{where}")
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained)
    except RuntimeError as err:  # unknown architecture or tag, or weights of another architecture
        raise InputError(
            f"cannot load CLIP model_name={model_name!r} pretrained={pretrained!r}: {first_line(err)}"
        ) from err
    except Exception as err:  # a local file that is not a weights file (text, truncated, random bytes)
        if not (pretrained and Path(pretrained).is_file()):
            raise
        raise InputError(
            f"pretrained weights file {pretrained} cannot be read as {model_name} weights ({type(err).__name__}: "
            f"{first_line(err)})"
        ) from err
    for required in ("token_embedding", "positional_embedding", "transformer", "ln_final"):
        if not hasattr(model, required):
            raise InputError(f"{model_name}: only CLIP models with open_clip's own text transformer are supported")
    model.requires_grad_(False)
    model.eval()
    return model, preprocess_of(model)


def resolve_weights(pretrained: str | None) -> str | None:
    """``pretrained`` itself, except a relative file path missing from the current folder but present in the uft
    checkout, which becomes that file's path."""
    if pretrained and _looks_like_path(pretrained) and not Path(pretrained).is_absolute():
        if not Path(pretrained).is_file() and (CHECKOUT / pretrained).is_file():
            return str(CHECKOUT / pretrained)
    return pretrained


def weights_identity(pretrained: str | None) -> str:
    """What identifies the pretrained weights: ``sha256:<hex>`` of a local file (so a checkpoint trained on
    ``data/w.pt`` matches ``/abs/path/w.pt``), the open_clip tag, or ``random``."""
    if not pretrained:
        return "random"
    path = Path(resolve_weights(pretrained))
    if not path.is_file():
        return pretrained
    stat = path.resolve().stat()
    return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def preprocess_of(model: nn.Module) -> ImagePreprocess:
    """The preprocessing config open_clip attached to a model it created."""
    cfg = model.visual.preprocess_cfg
    size = cfg["size"] if isinstance(cfg["size"], int) else cfg["size"][0]
    return ImagePreprocess(size=size, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))


def _looks_like_path(value: str) -> bool:
    return "/" in value or Path(value).suffix in {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}


def encode_text_embeddings(clip: nn.Module, embeddings: Tensor, tokens: Tensor) -> Tensor:
    """Run CLIP's text tower on token embeddings instead of token ids (so learnable context can enter).

    Mirrors open_clip's ``CLIP.encode_text`` after the embedding lookup. ``tokens`` locates the pooling position
    (the end-of-text token) exactly as the tower would for the same text. Returns unnormalised features.
    """
    cast_dtype = clip.transformer.get_cast_dtype()
    x = embeddings.to(cast_dtype) + clip.positional_embedding.to(cast_dtype)
    x = clip.transformer(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)
    x = open_clip.transformer.text_global_pool(x, tokens, clip.text_pool_type, getattr(clip, "text_eos_id", None))
    if clip.text_projection is not None:
        x = clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection
    return x


def visual_norm_parameters(visual: nn.Module) -> list[nn.Parameter]:
    """The affine weight and bias of every normalisation layer of the image tower, selected by module type."""
    params = []
    for module in visual.modules():
        if isinstance(module, NORM_TYPES):
            params.extend(p for p in (module.weight, module.bias) if p is not None)
    return params


@functools.lru_cache(maxsize=8)
def tokenizer_of(model_name: str):
    """open_clip's tokenizer for ``model_name``, built once (building one reads its whole vocabulary)."""
    return open_clip.get_tokenizer(model_name)


def tokenize(model_name: str, texts: list[str]) -> Tensor:
    """Token ids of ``texts`` with open_clip's tokenizer for ``model_name``."""
    return tokenizer_of(model_name)(texts)
