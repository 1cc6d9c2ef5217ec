"""Loading a frozen CLIP through open_clip, its text tower on prompt embeddings, and its norm layers.

Backbones are named exactly as open_clip names them: ``model_name`` is an architecture (``ViT-B-16``) or an
``hf-hub:org/repo`` name; ``pretrained`` is an open_clip tag (``openai``, ``laion2b_s34b_b88k``), a local
checkpoint file, or empty for random weights. A relative file path is looked up in the current folder, then in the
uft checkout (so the shipped ``data/world/uft-world-vit.pt`` is found from anywhere). The tiny architectures in
``uft/model_configs`` are registered with open_clip on import, for tests and the demo.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from uft.errors import InputError, first_line
from uft.prompts import template_prompt

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
CHECKOUT = Path(__file__).resolve().parents[1]  # the folder holding the uft package: data/ and configs/ beside it
open_clip.add_model_config(MODEL_CONFIG_DIR)


def checkout_file(relative: str | Path, needed_by: str) -> Path:
    """The repository's file ``relative`` (``data/<dataset>/classes.txt``, ``configs/...``) beside the package.

    Only a clone has these files: an installed package (``pip install`` without ``-e``, a wheel) holds the ``uft``
    package alone, and ``CHECKOUT`` is then the site-packages folder, where they are not.

    Args:
        relative: the file's path in the repository.
        needed_by: what needs it, to begin the error message (``uft data check``).

    Raises:
        InputError: when the file is missing, saying to install from a clone (or, in a clone, to restore it).
    """
    path = CHECKOUT / relative
    if path.is_file():
        return path
    name = Path(relative).as_posix()
    if (CHECKOUT / "pyproject.toml").is_file():  # a clone that lost the file
        raise InputError(f"{needed_by} needs {name}, which is missing from the clone at {CHECKOUT}: restore it")
    raise InputError(
        f"{needed_by} needs {name} of a clone of the uft repository, which an installed package does not have "
        f"(uft is installed in {CHECKOUT}): clone the repository and install it with pip install -e <clone>"
    )


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


def pooled_length(clip: nn.Module, tokens: Tensor, multiple: int = 1) -> int:
    """How many leading positions the text tower must run over for exact features of every row of ``tokens``.

    CLIP's text transformer is causal and reads each text's feature at its end-of-text token, so nothing after the
    last row's end-of-text token can change a feature: the length is that position plus one, rounded up to a
    ``multiple``, at most the context length. No rounding by default: the text tower's linear layers see K x length
    tokens whatever the length, so padding positions only adds work (measured in ``bench/step_bench.py``). A tower
    without a causal mask, or one that pools another position (``first``, ``last``, none), runs over the full
    context. Reads ``tokens`` on the host: compute it once per token set, not in a training step.
    """
    full = tokens.shape[1]
    pool = getattr(clip, "text_pool_type", "argmax")
    if getattr(clip, "attn_mask", None) is None or pool not in ("argmax", "eos"):
        return full
    end = tokens.argmax(dim=-1) if pool == "argmax" else (tokens == clip.text_eos_id).int().argmax(dim=-1)
    needed = int(end.max()) + 1
    return min(full, -(-needed // multiple) * multiple)


def encode_text_embeddings(
    clip: nn.Module,
    embeddings: Tensor,
    tokens: Tensor,
    length: int | None = None,
    chunk_size: int | None = None,
    shared_prefix: int = 0,
) -> Tensor:
    """Run CLIP's text tower on token embeddings instead of token ids (so learnable context can enter).

    Mirrors open_clip's ``CLIP.encode_text`` after the embedding lookup, over the first ``length`` positions only
    (default :func:`pooled_length`; ``tokens.shape[1]`` for the full context): the features are those of the
    full-length pass. ``tokens`` locates the pooling position (the end-of-text token) exactly as the tower would for
    the same text.

    ``shared_prefix``: the number of leading positions whose embeddings are the same in every row (the start token
    and a shared prompt context). The tower is causal, so their activations are the same in every row too: they are
    computed once and every row attends to them (exact; standard open_clip blocks only, others run every row in
    full). With ``chunk_size``, the texts are encoded that many at a time and, when gradients are recorded, each
    chunk's activations are recomputed in the backward pass (activation checkpointing): the memory kept for the
    backward pass is then one chunk's inputs instead of every layer's activations of all texts, for one more
    forward pass of the text tower. Returns unnormalised features.
    """
    length = pooled_length(clip, tokens) if length is None else length
    embeddings, tokens = embeddings[:, :length], tokens[:, :length]
    shared = shared_prefix if 0 < shared_prefix < int(tokens.shape[1]) and _blocks_share_prefix(clip) else 0
    if chunk_size is None or chunk_size >= len(tokens):
        return _encode_positions(clip, embeddings, tokens, shared)
    parts = []
    for emb, tok in zip(embeddings.split(chunk_size), tokens.split(chunk_size)):
        if torch.is_grad_enabled() and emb.requires_grad:
            parts.append(checkpoint(_encode_positions, clip, emb, tok, shared, use_reentrant=False))
        else:
            parts.append(_encode_positions(clip, emb, tok, shared))
    return torch.cat(parts)


def _encode_positions(clip: nn.Module, embeddings: Tensor, tokens: Tensor, shared: int = 0) -> Tensor:
    length = tokens.shape[1]
    cast_dtype = clip.transformer.get_cast_dtype()
    x = embeddings.to(cast_dtype) + clip.positional_embedding[:length].to(cast_dtype)
    mask = None if clip.attn_mask is None else clip.attn_mask[:length, :length].contiguous()
    if shared:
        x = _shared_prefix_transformer(clip.transformer, x[:1, :shared], x[:, shared:], mask)
        tokens = tokens[:, shared:]  # the end-of-text token lies after the shared prefix
    else:
        x = clip.transformer(x, attn_mask=mask)
    x = clip.ln_final(x)
    x = open_clip.transformer.text_global_pool(x, tokens, clip.text_pool_type, getattr(clip, "text_eos_id", None))
    if clip.text_projection is not None:
        x = clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection
    return x


def _blocks_share_prefix(clip: nn.Module) -> bool:
    """Whether the text tower is a stack of open_clip's standard blocks, which the shared-prefix pass mirrors."""
    tower = clip.transformer
    return tower.batch_first and all(
        type(block) is open_clip.transformer.ResidualAttentionBlock
        and not hasattr(block, "ln_1_kv")
        and block.attn.batch_first
        and block.attn._qkv_same_embed_dim
        and block.attn.bias_k is None
        and not block.attn.add_zero_attn
        for block in tower.resblocks
    )


def _shared_prefix_transformer(tower: nn.Module, prefix: Tensor, rest: Tensor, mask: Tensor | None) -> Tensor:
    """open_clip's ``Transformer`` on rows that all begin with the same ``prefix`` (1, P, D) followed by their own
    ``rest`` (K, S, D): the prefix runs once, each row's positions attend to it and (causally) to their own.
    Returns the output at the ``rest`` positions (K, S, D)."""
    p = prefix.shape[1]
    for block in tower.resblocks:
        prefix, rest = _shared_prefix_block(block, prefix, rest, mask, p)
    return rest


def _shared_prefix_block(block: nn.Module, prefix: Tensor, rest: Tensor, mask: Tensor | None, p: int):
    attn = block.attn
    heads, width = attn.num_heads, prefix.shape[-1]

    def split(x: Tensor) -> Tensor:  # (B, L, D) -> (B, heads, L, D / heads)
        return x.unflatten(-1, (heads, width // heads)).transpose(1, 2)

    def merge(x: Tensor) -> Tensor:
        return attn.out_proj(x.transpose(1, 2).flatten(2))

    q_p, k_p, v_p = map(split, F.linear(block.ln_1(prefix), attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1))
    q_r, k_r, v_r = map(split, F.linear(block.ln_1(rest), attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1))
    rows = rest.shape[0]
    keys = torch.cat([k_p.expand(rows, -1, -1, -1), k_r], dim=2)
    values = torch.cat([v_p.expand(rows, -1, -1, -1), v_r], dim=2)
    mask_p = None if mask is None else mask[:p, :p].to(q_p.dtype)
    mask_r = None if mask is None else mask[p:, :].to(q_r.dtype)
    prefix = prefix + block.ls_1(merge(F.scaled_dot_product_attention(q_p, k_p, v_p, attn_mask=mask_p)))
    rest = rest + block.ls_1(merge(F.scaled_dot_product_attention(q_r, keys, values, attn_mask=mask_r)))
    prefix = prefix + block.ls_2(block.mlp(block.ln_2(prefix)))
    rest = rest + block.ls_2(block.mlp(block.ln_2(rest)))
    return prefix, rest


def common_prefix(tokens: Tensor) -> int:
    """How many leading tokens every row of ``tokens`` shares (e.g. the start token and ``a photo of a``)."""
    same = (tokens == tokens[:1]).all(dim=0)
    return int(same.long().cumprod(0).sum())


def encode_tokens(clip: nn.Module, tokens: Tensor, chunk_size: int | None = None) -> Tensor:
    """``clip.encode_text(tokens)`` (unnormalised) over the positions up to the last end-of-text token only, the
    leading tokens common to all rows encoded once; ``tokens`` may be on the host (the tokenizer's output), they are
    moved to the model's device."""
    length, shared = pooled_length(clip, tokens), common_prefix(tokens)
    tokens = tokens[:, :length].to(clip.token_embedding.weight.device)
    return encode_text_embeddings(clip, clip.token_embedding(tokens), tokens, length, chunk_size, shared)


@torch.no_grad()
def template_features(
    clip: nn.Module, model_name: str, class_names: list[str], templates: list[str], chunk_size: int | None = None
) -> Tensor:
    """Fixed-text class features averaged over ``templates`` (``{}`` is the class name) in feature space: the
    template-ensemble zero-shot classifier."""
    per_template = [
        encode_tokens(clip, tokenize(model_name, [template_prompt(t, n) for n in class_names]), chunk_size)
        for t in templates
    ]
    return F.normalize(torch.stack([F.normalize(f, dim=-1) for f in per_template]).mean(dim=0), dim=-1)


def store_frozen(model: nn.Module, dtype: torch.dtype) -> None:
    """Store the parameters that do not train (``requires_grad`` false) as ``dtype``; trained ones stay as they are."""
    for p in model.parameters():
        if not p.requires_grad:
            p.data = p.data.to(dtype)


def visual_norm_parameters(visual: nn.Module, rule: str = "type") -> list[nn.Parameter]:
    """The affine weight and bias of the image tower's normalisation layers.

    Args:
        visual: the image tower.
        rule: ``type`` selects every normalisation layer by module type (LayerNorm, BatchNorm, GroupNorm);
            ``reference`` selects parameters by name as the UEO reference code does: those whose name holds ``bn``
            or ``ln``. The two agree on open_clip's ViTs; on its ResNets (RN50, ...) ``reference`` leaves out the
            BatchNorms of the shortcut branches, which are named ``downsample.1``.
    """
    if rule == "reference":
        return [p for name, p in visual.named_parameters() if "bn" in name or "ln" in name]
    if rule != "type":
        raise ValueError(f"unknown norm rule {rule!r}: expected type or reference")
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


def cut_texts(model_name: str, texts: list[str]) -> tuple[list[int], int | None]:
    """Which of ``texts`` are longer than the text context of ``model_name`` (the tokenizer cuts them there, keeping
    the end-of-text token), and that context length; ``([], None)`` for a tokenizer that does not say (Hugging Face
    tokenizers)."""
    tokenizer = tokenizer_of(model_name)
    length, encode = getattr(tokenizer, "context_length", None), getattr(tokenizer, "encode", None)
    if length is None or encode is None:
        return [], None
    return [i for i, text in enumerate(texts) if len(encode(text)) + 2 > length], length  # + start, end of text
