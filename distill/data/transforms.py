"""Training augmentation (the paper's imgaug pipeline in torchvision.transforms.v2) and the shared
deterministic geometry from :mod:`models.preprocessing`.

Official imgaug pipeline: p=0.25 scale 1-2x, h-flip 0.5, v-flip 0.2, p=0.25 rotate +-120 deg,
p=0.25 Gaussian blur, p=0.1 coarse dropout, p=0.25 brightness/hue/saturation.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2


def train_augment() -> v2.Compose:
    """Augmentations on a ``3 x H x W`` float tensor in [0, 1] (before normalisation)."""
    return v2.Compose([
        v2.RandomApply([v2.RandomAffine(degrees=0.0, scale=(1.0, 2.0))], p=0.25),
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomVerticalFlip(p=0.2),
        v2.RandomApply([v2.RandomRotation(120.0)], p=0.25),
        v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 2.0))], p=0.25),
        v2.RandomApply([v2.ColorJitter(brightness=0.25, saturation=0.25, hue=0.05)], p=0.25),
        # imgaug's CoarseDropout zeroes a coarse grid of patches; erasing a block is the torchvision analogue.
        v2.RandomErasing(p=0.1, scale=(0.02, 0.12), value=0.0),
    ])


def normalize_tensor(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return (x - m) / s
