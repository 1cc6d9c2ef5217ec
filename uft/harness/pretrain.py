"""Pretrain the tiny world CLIP (``uft-world-vit``) contrastively on procedurally rendered image-caption pairs.

This makes the demo's CLIP from nothing but a seed: images of every category of :mod:`uft.world` in the
pretraining styles, each with a generated caption, and the symmetric InfoNCE loss of CLIP (Radford et al., 2021).
Reproduce the shipped checkpoint ``data/world/uft-world-vit.pt`` (about 21 minutes on 2 CPU cores) and check the
new one against the shipped one's record (``make reproduce-world``)::

    OMP_WAIT_POLICY=PASSIVE python -m uft.harness.pretrain --out build/world/uft-world-vit.pt \\
        --reference data/world/uft-world-vit.json

(``OMP_WAIT_POLICY=PASSIVE``, read when torch loads OpenMP, lets idle OpenMP threads sleep instead of spinning,
which leaves the CPU to the rendering worker: 15% faster on 2 cores; the results do not change.)

Beside the checkpoint it writes a record (``.json``: settings, time, size, SHA-256 of the file and of the weights,
zero-shot accuracy per style).
The checkpoint is an open_clip state dict stored in float16, with the token-embedding rows of tokens that never
occurred in a caption set to zero (they were never trained; zeros make the file compress well). It loads like any
local checkpoint file: ``--model.model_name uft-world-vit --model.pretrained data/world/uft-world-vit.pt``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
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
from uft.prompts import class_prompt, class_text
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
        return self.transform(image), caption_tokens(text)


@functools.lru_cache(maxsize=1 << 16)
def caption_tokens(text: str) -> Tensor:
    """Token ids of one caption (cached: captions repeat, and rendering shares the CPU with training)."""
    return tokenize(MODEL, [text])[0]


def clip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric cross-entropy over the image-text similarity matrix of a batch (matching pairs on the diagonal)."""
    logits = logit_scale.exp().clamp(max=100) * image_features @ text_features.T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


@torch.no_grad()
def zero_shot_accuracy(model, preprocess: ImagePreprocess, per_class: int, seed: int) -> dict[str, float]:
    """Accuracy over all categories with the prompt 'a photo of a <category>.', for each style."""
    model.eval()
    prompts = [class_prompt("a photo of a", c) for c in CATEGORIES]
    text = F.normalize(model.encode_text(tokenize(MODEL, prompts)), dim=-1)
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
        seen[tokenize(MODEL, [class_text(name)])[0].unique()] = True
    model.token_embedding.sparse = False
    size = save_checkpoint(model, seen.nonzero().squeeze(1), out)
    # Report on the saved (float16) weights, exactly what users load.
    shipped = open_clip.create_model(MODEL, pretrained=str(out))
    accuracy = zero_shot_accuracy(shipped, preprocess, per_class=eval_per_class, seed=seed)
    seconds = time.time() - start
    print(f"saved {out} ({size / 2**20:.1f} MiB) after {seconds:.0f}s")
    print("zero-shot accuracy over all categories:", {k: round(v, 3) for k, v in accuracy.items()})
    record = dict(
        model=MODEL, seed=seed, steps=steps, batch_size=batch_size, lr=lr, seconds=round(seconds),
        bytes=size, sha256=sha256_of(out), weights_sha256=weights_sha256(out), eval_per_class=eval_per_class,
        zero_shot_accuracy=accuracy,
    )  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return accuracy


def sha256_of(path: Path) -> str:
    """SHA-256 of the file (its bytes include the file's name: torch.save archives under the stem)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_sha256(path: Path) -> str:
    """SHA-256 of a checkpoint's tensors (names, dtypes, shapes, values): the same for the same weights under any
    file name."""
    digest = hashlib.sha256()
    state = torch.load(path, map_location="cpu", weights_only=True)
    for name in sorted(state):
        tensor = state[name].contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def compare_to_reference(accuracy: dict[str, float], reference: Path, tolerance: float = 0.01) -> list[str]:
    """Styles whose zero-shot accuracy differs from the record ``reference`` (a checkpoint's ``.json``) by more
    than ``tolerance``, as printable lines; empty when the run reproduces it."""
    expected = json.loads(reference.read_text())["zero_shot_accuracy"]
    return [
        f"{style}: {accuracy.get(style, float('nan')):.3f} here, {value:.3f} in {reference}"
        for style, value in expected.items()
        if not abs(accuracy.get(style, float("nan")) - value) <= tolerance
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/world/uft-world-vit.pt"), help="new checkpoint file")
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="rendering processes beside the training one")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    parser.add_argument(
        "--reference",
        type=Path,
        help="record of a checkpoint (data/world/uft-world-vit.json): fail unless zero-shot accuracy is within a point",
    )
    args = parser.parse_args(argv)
    for path in (args.out, args.out.with_suffix(".json")):  # the checkpoint and its record
        if path.exists():
            sys.exit(f"uft.harness.pretrain: error: {path} already exists; remove it or choose another --out")
    if args.reference is not None and not args.reference.is_file():
        sys.exit(f"uft.harness.pretrain: error: --reference {args.reference}: no such file")
    torch.set_num_threads(args.threads)
    accuracy = pretrain(args.out, args.steps, args.batch_size, args.lr, args.seed, args.workers)
    if args.reference is not None:
        differences = compare_to_reference(accuracy, args.reference)
        made, reference = (json.loads(p.read_text()) for p in (args.out.with_suffix(".json"), args.reference))
        same = made["weights_sha256"] == reference["weights_sha256"]
        print(f"weights {'bit-identical to' if same else 'differ from'} the reference's (SHA-256 of the tensors)")
        if differences:
            sys.exit("zero-shot accuracy differs by more than a point:\n  " + "\n  ".join(differences))
        print(f"reproduced: zero-shot accuracy within a point of {args.reference} for every style")


if __name__ == "__main__":
    main()
