"""Pretrain the tiny world CLIP (``uft-world-vit``) contrastively on procedurally rendered image-caption pairs.

This makes the demo's CLIP from nothing but a seed: images of every category of :mod:`uft.world` in the
pretraining styles, each with a generated caption, and the symmetric InfoNCE loss of CLIP (Radford et al., 2021).
Reproduce the shipped checkpoint (about 20 minutes on 2 CPU cores)::

    python -m uft.pretrain --out data/world/uft-world-vit.pt

The checkpoint is an open_clip state dict stored in float16, with the token-embedding rows of tokens that never
occurred in a caption set to zero (they were never trained; zeros make the file compress well). It loads like any
local checkpoint file: ``--model.model_name uft-world-vit --model.pretrained data/world/uft-world-vit.pt``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from uft.clip import ImagePreprocess, preprocess_of, tokenize
from uft.data.transforms import eval_transform
from uft.world import CATEGORIES, STYLES, render, sample_pair

MODEL = "uft-world-vit"
PRETRAIN_STYLES = ("photo", "clipart", "painting", "sketch")
#: Sketches are rare in pretraining, as a style the model has seen only a little of.
STYLE_WEIGHTS = (0.32, 0.32, 0.32, 0.04)


class PairDataset(Dataset):
    """Item ``i`` is a rendered (image, caption tokens) pair drawn from a generator seeded by ``(seed, i)``: the
    stream is the same for any number of workers."""

    def __init__(self, length: int, seed: int, transform, size: int) -> None:
        self.length, self.seed, self.transform, self.size = length, seed, transform, size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        image, _, _, text = sample_pair(rng, PRETRAIN_STYLES, self.size, STYLE_WEIGHTS)
        return self.transform(image), tokenize(MODEL, [text])[0]


def clip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric cross-entropy over the image-text similarity matrix of a batch (matching pairs on the diagonal)."""
    logits = logit_scale.exp().clamp(max=100) * image_features @ text_features.T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


@torch.no_grad()
def zero_shot_accuracy(model, preprocess: ImagePreprocess, per_class: int, seed: int) -> dict[str, float]:
    """Accuracy over all categories with the prompt 'a photo of a <category>.', for each style."""
    model.eval()
    names = [c.replace("_", " ") for c in CATEGORIES]
    text = F.normalize(model.encode_text(tokenize(MODEL, [f"a photo of a {n}." for n in names])), dim=-1)
    transform = eval_transform(preprocess)
    result = {}
    for style in STYLES:
        rng = np.random.default_rng([seed, 7919, STYLES.index(style)])
        images, labels = [], []
        for category in range(len(CATEGORIES)):
            for _ in range(per_class):
                images.append(transform(render(category, style, rng, preprocess.size)[0]))
                labels.append(category)
        features = F.normalize(model.encode_image(torch.stack(images)), dim=-1)
        result[style] = float(((features @ text.T).argmax(-1) == torch.tensor(labels)).float().mean())
    model.train()
    return result


def save_checkpoint(model, seen_tokens: torch.Tensor, path: Path) -> int:
    """Float16 state dict with never-seen token rows zeroed; returns the file size in bytes."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    unseen = torch.ones(state["token_embedding.weight"].shape[0], dtype=torch.bool)
    unseen[seen_tokens] = False
    state["token_embedding.weight"][unseen] = 0
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path.stat().st_size


def pretrain(
    out: Path, steps: int, batch_size: int, lr: float, seed: int, workers: int, eval_per_class: int = 20
) -> dict[str, float]:
    """Train from a seed, save the checkpoint to ``out``, return the saved model's zero-shot accuracy per style."""
    torch.manual_seed(seed)
    model = open_clip.create_model(MODEL)
    preprocess = preprocess_of(model)
    transform = eval_transform(preprocess)
    loader = DataLoader(
        PairDataset(steps * batch_size, seed, transform, preprocess.size),
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    # The token table has 49,408 rows of which a caption vocabulary touches a few dozen: sparse gradients and a
    # sparse Adam keep the untouched rows out of every step (a dense AdamW step over them cost as much as a backward).
    model.token_embedding.sparse = True
    dense = [p for n, p in model.named_parameters() if n != "token_embedding.weight"]
    optimizers = [
        torch.optim.AdamW(dense, lr=lr, weight_decay=0.1, foreach=True),
        torch.optim.SparseAdam([model.token_embedding.weight], lr=lr),
    ]
    schedules = [
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1) for opt in optimizers
    ]
    seen = torch.zeros(model.token_embedding.weight.shape[0], dtype=torch.bool)
    model.train()
    start = time.time()
    for step, (images, tokens) in enumerate(loader, start=1):
        seen[tokens.unique()] = True
        loss = clip_loss(
            model.encode_image(images, normalize=True), model.encode_text(tokens, normalize=True), model.logit_scale
        )
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt, schedule in zip(optimizers, schedules):
            opt.step()
            schedule.step()
        if step % 100 == 0 or step == steps:
            print(f"step {step}/{steps}  loss {loss.item():.3f}  {time.time() - start:.0f}s", flush=True)
    for name in CATEGORIES:  # class names reach the prompts even if a caption never spelled one out
        seen[tokenize(MODEL, [name.replace("_", " ")])[0].unique()] = True
    model.token_embedding.sparse = False
    size = save_checkpoint(model, seen.nonzero().squeeze(1), out)
    # Report on the saved (float16) weights, exactly what users load.
    shipped = open_clip.create_model(MODEL, pretrained=str(out))
    accuracy = zero_shot_accuracy(shipped, preprocess, per_class=eval_per_class, seed=seed)
    print(f"saved {out} ({size / 2**20:.1f} MiB) after {time.time() - start:.0f}s")
    print("zero-shot accuracy over all categories:", {k: round(v, 3) for k, v in accuracy.items()})
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/world/uft-world-vit.pt"))
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="rendering processes beside the training one")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pretrain(args.out, args.steps, args.batch_size, args.lr, args.seed, args.workers)


if __name__ == "__main__":
    main()
