"""Training augmentation (the paper's imgaug pipeline in torchvision.transforms.v2) and the shared
deterministic geometry from :mod:`models.preprocessing`.

``data.augment`` picks a pipeline from :data:`AUGMENTATIONS`:

* ``official`` (default) - the official imgaug pipeline: p=0.25 scale 1-2x, h-flip 0.5, v-flip 0.2, p=0.25 rotate
  +-120 deg, p=0.25 Gaussian blur, p=0.1 coarse dropout, p=0.25 brightness/hue/saturation.
* ``dihedral`` - one of the 8 flips/right-angle turns of the square, uniformly, plus mild brightness/contrast/
  saturation jitter. Dermoscopy has no canonical orientation, so every dihedral view is an equally real image, and
  unlike a free rotation it needs no interpolation or corner fill.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

Augment = Callable[[torch.Tensor], torch.Tensor]


def official_augment() -> v2.Compose:
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


class RandomDihedral(torch.nn.Module):
    """One of the 8 symmetries of the square, uniformly: ``rot90`` by k in 0..3, then an h-flip with p=0.5.

    That covers the vertical flip too (v-flip = h-flip after a half turn). Needs ``H == W`` (images are square
    after :func:`models.preprocessing.resize_center_crop`); draws from torch's RNG, which the engine reseeds
    per epoch, so resume replays the same views.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"RandomDihedral needs a square image, got shape {tuple(x.shape)}")
        k = int(torch.randint(8, ()))
        x = torch.rot90(x, k % 4, dims=(-2, -1))
        return x.flip(-1) if k >= 4 else x


def dihedral_augment() -> v2.Compose:
    # No hue shift: lesion colour (blue-white veil, pigment network) is diagnostic; brightness/contrast/saturation
    # at +-10 % stand in for differences between dermatoscopes and lighting.
    return v2.Compose([RandomDihedral(), v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1)])


AUGMENTATIONS: dict[str, Callable[[], Augment]] = {
    "official": official_augment,
    "dihedral": dihedral_augment,
}


def train_augment(name: str = "official") -> Augment:
    """Augmentations on a ``3 x H x W`` float tensor in [0, 1] (before normalisation)."""
    try:
        return AUGMENTATIONS[name]()
    except KeyError:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {name!r}") from None


def normalize_tensor(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return (x - m) / s
