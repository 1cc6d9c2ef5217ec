"""CoOp-style learnable prompt context shared across classes (Zhou et al., "Learning to Prompt for
Vision-Language Models", IJCV 2022)."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from uft.errors import InputError


def class_text(class_name: str) -> str:
    """How a class name is written in a prompt: underscores read as spaces (``Alarm_Clock`` -> ``Alarm Clock``)."""
    return class_name.replace("_", " ")


def class_prompt(context: str, class_name: str) -> str:
    """The text of one class prompt: ``<context> <class name>.``"""
    return f"{context} {class_text(class_name)}."


def template_prompt(template: str, class_name: str) -> str:
    """A fixed template with the class name in place of ``{}`` (``"a sketch of a {}."``)."""
    return template.format(class_text(class_name))


class PromptLearner(nn.Module):
    """Learnable context vectors placed before every class name: ``[SOT] ctx_1 .. ctx_M <class name> . [EOT]``.

    The context is initialised from the token embeddings of ``ctx_init``, so before training each class prompt
    embeds exactly as the text ``"<ctx_init> <class name>."``, the zero-shot prompt.

    Args:
        class_names: names of the known classes, in class-id order.
        tokens_of: the model's tokenizer, ``list[str] -> LongTensor (n, context_length)``.
        token_embedding: the model's (frozen) token embedding table.
        ctx_init: the words whose embeddings initialise the context; their token count is the context length M.
    """

    def __init__(self, class_names: list[str], tokens_of, token_embedding: nn.Embedding, ctx_init: str) -> None:
        super().__init__()
        init_tokens = tokens_of([ctx_init])[0]
        n_ctx = int((init_tokens != 0).sum()) - 2  # minus start- and end-of-text
        if n_ctx < 1:
            raise ValueError(f"ctx_init must contain at least one token, got {ctx_init!r}")
        placeholder = " ".join(["X"] * n_ctx)
        self.texts = [class_prompt(placeholder, name) for name in class_names]  # the context as placeholder words
        tokens = tokens_of(self.texts)
        with torch.no_grad():
            self.ctx = nn.Parameter(token_embedding(init_tokens[None])[0, 1 : 1 + n_ctx].clone())
            embedded = token_embedding(tokens)
        self.n_ctx = n_ctx
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("prefix", embedded[:, :1].clone(), persistent=False)
        self.register_buffer("suffix", embedded[:, 1 + n_ctx :].clone(), persistent=False)

    @property
    def shared_prefix(self) -> int:
        """Leading positions embedded alike in every class prompt: the start token and the context."""
        return 1 + self.n_ctx

    def forward(self, length: int | None = None) -> Tensor:
        """Prompt embeddings of shape (K, length, width): the first ``length`` positions (default: the whole
        context), e.g. up to the last end-of-text token (:func:`uft.clip.pooled_length`)."""
        ctx = self.ctx.unsqueeze(0).expand(self.prefix.shape[0], -1, -1)
        suffix = self.suffix if length is None else self.suffix[:, : max(length - 1 - self.n_ctx, 0)]
        return torch.cat([self.prefix, ctx, suffix], dim=1)


def check_prompt_lengths(class_names: list[str], prompts: PromptLearner, cut: list[int], length: int | None) -> None:
    """Class prompts ``cut`` at the text context of ``length`` tokens (the tokenizer cuts there, :func:`
    uft.clip.cut_texts`): each such name is a warning, and two names whose prompts are the same after the cut (the
    model could not tell them apart) are an error."""
    for i in cut:
        warnings.warn(
            f"class name {class_names[i]!r} is cut: its prompt (with {prompts.n_ctx} context tokens) is longer than "
            f"the {length} tokens of the text context; the words after the cut are not read",
            stacklevel=2,
        )
        for j in range(len(class_names)):
            if j != i and torch.equal(prompts.tokens[i], prompts.tokens[j]):
                raise InputError(
                    f"class names {class_names[min(i, j)]!r} and {class_names[max(i, j)]!r} give the same prompt "
                    f"once cut at the {length} tokens of the text context: shorten them so that they differ early"
                )
