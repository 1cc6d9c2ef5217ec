"""Loading a frozen CLIP through open_clip, its text tower on prompt embeddings, and its norm layers.

Backbones are named exactly as open_clip names them: ``model_name`` is an architecture (``ViT-B-16``) or an
``hf-hub:org/repo`` name; ``pretrained`` is an open_clip tag (``openai``, ``laion2b_s34b_b88k``), a local
checkpoint file, or empty for random weights. A relative file path is looked up in the current folder, then in the
uft checkout (so the shipped ``data/world/uft-world-vit.pt`` is found from anywhere). The tiny architectures in
``uft/model_configs`` are registered with open_clip on import, for tests and the demo.

Which of open_clip's model families ``uft`` adapts, and how it runs each one's text tower (:class:`TextPaths`), is
the table of ``docs/models.md#backbones``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import TextTransformer
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


#: Where the table of the model families uft adapts is, for error messages.
BACKBONES_DOC = "docs/models.md#backbones"

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
    refuse_text_side(model_name)
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
    tower = text_tower(model)
    if not all(hasattr(tower, part) for part in ("token_embedding", "positional_embedding", "transformer", "ln_final")):
        kind = type(getattr(model, "text", tower)).__name__
        raise InputError(
            f"{model_name}: its text tower ({kind}) is not open_clip's own text transformer, the only one uft adapts "
            f"(see {BACKBONES_DOC})"
        )
    model.requires_grad_(False)
    model.eval()
    return model, preprocess_of(model)


def refuse_text_side(model_name: str) -> None:
    """Refuse, before anything is built or downloaded, an open_clip architecture whose text side ``uft`` cannot run.

    ``uft`` builds its prompts with open_clip's CLIP tokenizer (``SimpleTokenizer``: a start token, the end-of-text
    token as the highest id, padding 0) and runs open_clip's own text transformer. A text tower from Hugging Face
    (``text_cfg.hf_model_name``: the RoBERTa, XLM-R and mT5 CLIPs, CoCa-RoBERTa) or a Hugging Face tokenizer
    (``text_cfg.hf_tokenizer_name``, or open_clip's SigLIP tokenizer, which it picks for a name holding ``siglip``)
    needs the ``transformers`` package and a download, and breaks those assumptions. ``hf-hub:`` and ``local-dir:``
    names keep their configuration elsewhere: their towers and tokenizers are checked once built.

    Raises:
        InputError: naming the Hugging Face model or tokenizer the architecture needs.
    """
    if model_name.startswith(("hf-hub:", "local-dir:")):
        return
    config = open_clip.get_model_config(model_name)
    if config is None:
        return  # an unknown name: open_clip's own error says so
    problem = text_side_problem(model_name, config.get("text_cfg", {}))
    if problem:
        raise InputError(f"{model_name}: {problem} (see {BACKBONES_DOC})")


def text_side_problem(model_name: str, text_cfg: dict) -> str | None:
    """What in an architecture's ``text_cfg`` ``uft`` cannot run (:func:`refuse_text_side`), or none."""
    needs = "which needs the transformers package and a download"
    if text_cfg.get("hf_model_name"):
        return (
            f"its text tower is the Hugging Face model {text_cfg['hf_model_name']!r}, {needs}: uft adapts open_clip's "
            "own text transformer only"
        )
    # open_clip's get_tokenizer picks a Hugging Face tokenizer for either (its SigLipTokenizer wraps one).
    tokenizer = text_cfg.get("hf_tokenizer_name") or ("SigLipTokenizer" if "siglip" in model_name.lower() else None)
    if tokenizer:
        return (
            f"its tokenizer is the Hugging Face tokenizer {tokenizer!r}, {needs}: uft builds prompts with open_clip's "
            "CLIP tokenizer (SimpleTokenizer) only"
        )
    return None


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


def text_tower(clip: nn.Module) -> nn.Module:
    """The module holding the text tower's parts (``token_embedding``, ``positional_embedding``, ``transformer``,
    ``ln_final``, ``text_projection``, ``attn_mask``): open_clip's ``CLIP`` copies them onto itself, while
    ``CustomTextCLIP`` (SigLIP, EVA, ...) and ``CoCa`` keep them in their ``TextTransformer``, ``clip.text``."""
    text = getattr(clip, "text", None)
    return text if isinstance(text, TextTransformer) else clip


def _pooling(tower: nn.Module) -> tuple[str, int | None]:
    """The tower's pooling (``argmax``, ``eos``, ``last``, ...) and end-of-text id, named as its class names them."""
    if isinstance(tower, TextTransformer):
        return tower.pool_type, tower.eos_id
    return getattr(tower, "text_pool_type", "argmax"), getattr(tower, "text_eos_id", None)


@dataclass(frozen=True)
class TextPaths:
    """How ``uft`` runs a model's text tower on prompt embeddings; every path gives open_clip's ``encode_text``
    features (to float rounding). The table of ``docs/models.md#backbones`` says which families take which.

    Attributes:
        truncate: run only up to the last prompt's pooled (end-of-text) token. Exact for a causal tower that pools
            there: no position after it can change the feature.
        share_prefix: run the positions alike in every prompt (start token and context) once, every prompt attending
            to them. Exact for a causal tower of open_clip's standard blocks: those positions see only each other.
        own_forward: run open_clip's own ``TextTransformer.forward`` with its token lookup replaced by the prompt
            embeddings, over the full context: for towers whose attention mask depends on the tokens or that append
            a class token (CoCa), which uft's own pass does not mirror. Otherwise uft's own pass runs the tower.
    """

    truncate: bool
    share_prefix: bool
    own_forward: bool


def text_paths(clip: nn.Module) -> TextPaths:
    """Which :class:`TextPaths` the text tower of ``clip`` takes.

    A tower without a causal mask (SigLIP's, ``no_causal_mask``) lets every position see every other one, padding and
    class name included: neither speed path is exact there, and it runs over the full context.
    """
    tower = text_tower(clip)
    # CoCa appends a class token after the text and masks the padding out of its attention (as does use_pad_mask).
    own_forward = getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False)
    causal = getattr(tower, "attn_mask", None) is not None and not own_forward
    return TextPaths(
        truncate=causal and _pooling(tower)[0] in ("argmax", "eos"),
        share_prefix=causal and _blocks_share_prefix(tower),
        own_forward=own_forward,
    )


def pooled_length(clip: nn.Module, tokens: Tensor, multiple: int = 1) -> int:
    """How many leading positions the text tower must run over for exact features of every row of ``tokens``.

    CLIP's text transformer is causal and reads each text's feature at its end-of-text token, so nothing after the
    last row's end-of-text token can change a feature: the length is that position plus one, rounded up to a
    ``multiple``, at most the context length. No rounding by default: the text tower's linear layers see K x length
    tokens whatever the length, so padding positions only adds work (measured in ``bench/step_bench.py``). A tower
    without a causal mask, or one that pools another position (``first``, ``last``, none), runs over the full
    context (:func:`text_paths`). Reads ``tokens`` on the host: compute it once per token set, not in a training step.
    """
    full = tokens.shape[1]
    if not text_paths(clip).truncate:
        return full
    pool, eos_id = _pooling(text_tower(clip))
    end = tokens.argmax(dim=-1) if pool == "argmax" else (tokens == eos_id).int().argmax(dim=-1)
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

    Mirrors open_clip's ``encode_text`` after the embedding lookup, over the first ``length`` positions only
    (default :func:`pooled_length`; ``tokens.shape[1]`` for the full context): the features are those of the
    full-length pass. ``tokens`` locates the pooling position (the end-of-text token) exactly as the tower would for
    the same text.

    ``shared_prefix``: the number of leading positions whose embeddings are the same in every row (the start token
    and a shared prompt context). When the tower is causal, their activations are the same in every row too: they are
    computed once and every row attends to them (exact; standard open_clip blocks only, others run every row in
    full; :func:`text_paths`). With ``chunk_size``, the texts are encoded that many at a time and, when gradients are
    recorded, each chunk's activations are recomputed in the backward pass (activation checkpointing): the memory
    kept for the backward pass is then one chunk's inputs instead of every layer's activations of all texts, for one
    more forward pass of the text tower. Returns unnormalised features.
    """
    length = pooled_length(clip, tokens) if length is None else length
    embeddings, tokens = embeddings[:, :length], tokens[:, :length]
    paths = text_paths(clip)
    shared = shared_prefix if 0 < shared_prefix < int(tokens.shape[1]) and paths.share_prefix else 0
    encode = _encode_with_own_forward if paths.own_forward else _encode_positions
    if chunk_size is None or chunk_size >= len(tokens):
        return encode(text_tower(clip), embeddings, tokens, shared)
    parts = []
    for emb, tok in zip(embeddings.split(chunk_size), tokens.split(chunk_size)):
        if torch.is_grad_enabled() and emb.requires_grad:
            parts.append(checkpoint(encode, text_tower(clip), emb, tok, shared, use_reentrant=False))
        else:
            parts.append(encode(text_tower(clip), emb, tok, shared))
    return torch.cat(parts)


def _encode_positions(tower: nn.Module, embeddings: Tensor, tokens: Tensor, shared: int = 0) -> Tensor:
    length = tokens.shape[1]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = embeddings.to(cast_dtype) + tower.positional_embedding[:length].to(cast_dtype)
    mask = None if tower.attn_mask is None else tower.attn_mask[:length, :length].contiguous()
    if shared:
        x = _shared_prefix_transformer(tower.transformer, x[:1, :shared], x[:, shared:], mask)
        tokens = tokens[:, shared:]  # the end-of-text token lies after the shared prefix
    else:
        x = tower.transformer(x, attn_mask=mask)
    x = tower.ln_final(x)
    x = open_clip.transformer.text_global_pool(x, tokens, *_pooling(tower))
    if tower.text_projection is not None:
        x = tower.text_projection(x) if isinstance(tower.text_projection, nn.Linear) else x @ tower.text_projection
    return x


def _encode_with_own_forward(tower: nn.Module, embeddings: Tensor, tokens: Tensor, shared: int = 0) -> Tensor:
    """open_clip's ``TextTransformer.forward`` on ``tokens`` with the token lookup's output replaced by
    ``embeddings`` (:class:`TextPaths` ``own_forward``); ``shared`` is unused (no speed path applies)."""
    handle = tower.token_embedding.register_forward_hook(lambda module, args, output: embeddings.to(output.dtype))
    try:
        out = tower(tokens)
    finally:
        handle.remove()
    return out[0] if isinstance(out, tuple) else out  # (pooled, tokens) for a tower with output_tokens (CoCa)


def _blocks_share_prefix(tower: nn.Module) -> bool:
    """Whether the text tower is a stack of open_clip's standard blocks, which the shared-prefix pass mirrors."""
    transformer = tower.transformer
    return transformer.batch_first and all(
        type(block) is open_clip.transformer.ResidualAttentionBlock
        and not hasattr(block, "ln_1_kv")
        and block.attn.batch_first
        and block.attn._qkv_same_embed_dim
        and block.attn.bias_k is None
        and not block.attn.add_zero_attn
        for block in transformer.resblocks
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
    length, shared, embedding = pooled_length(clip, tokens), common_prefix(tokens), text_tower(clip).token_embedding
    tokens = tokens[:, :length].to(embedding.weight.device)
    return encode_text_embeddings(clip, embedding(tokens), tokens, length, chunk_size, shared)


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
    """open_clip's tokenizer for ``model_name``, built once (building one reads its whole vocabulary).

    Raises:
        InputError: when it is not open_clip's CLIP tokenizer, whose start, end-of-text and padding tokens the
            prompts are built around (:func:`refuse_text_side` says so before loading, for a named architecture).
    """
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except (ImportError, OSError, RuntimeError, ValueError) as err:  # a Hugging Face tokenizer out of reach
        raise InputError(f"{model_name}: cannot build its tokenizer ({type(err).__name__}: {first_line(err)})") from err
    if not isinstance(tokenizer, SimpleTokenizer):
        raise InputError(
            f"{model_name}: its tokenizer is {type(tokenizer).__name__}: uft builds prompts with open_clip's CLIP "
            f"tokenizer (SimpleTokenizer) only (see {BACKBONES_DOC})"
        )
    return tokenizer


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
