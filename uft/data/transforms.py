"""Image transforms built from a CLIP's own preprocessing config (size, mean, std)."""

from __future__ import annotations

from torchvision import transforms as T

from uft.clip import ImagePreprocess


def train_transform(pre: ImagePreprocess, scale: tuple[float, float] = (0.5, 1.0)) -> T.Compose:
    """RandomResizedCrop (bicubic) and horizontal flip, then CLIP normalisation."""
    return T.Compose(
        [
            T.RandomResizedCrop(pre.size, scale=scale, interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )


def eval_transform(pre: ImagePreprocess) -> T.Compose:
    """Bicubic resize of the short side and center crop, then CLIP normalisation."""
    return T.Compose(
        [
            T.Resize(pre.size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(pre.size),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )
