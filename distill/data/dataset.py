"""A torch Dataset over :class:`Record` lists using the shared deterministic preprocessing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from distill.data.records import Record
from distill.data.transforms import normalize_tensor, train_augment
from models.preprocessing import load_pixels, normalize


class ImageDataset(Dataset):
    """Yields ``(3 x size x size float32, label)``.

    Evaluation images go through exactly :mod:`models.preprocessing` (what export, benchmarks and the
    app use); training images add the augmentation in between geometry and normalisation.
    """

    def __init__(self, records: Sequence[Record], size: int, mean: Sequence[float], std: Sequence[float],
                 train: bool = False, augmentation: str = "official") -> None:
        self.records = list(records)
        self.size = size
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = train_augment(augmentation) if train else None

    def __len__(self) -> int:
        return len(self.records)

    def targets(self) -> list[int]:
        return [r.label for r in self.records]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        r = self.records[i]
        pixels = load_pixels(r.path, self.size)
        if self.augment is None:
            x = torch.from_numpy(normalize(pixels, self.mean, self.std).transpose(2, 0, 1).copy())
        else:
            x = torch.from_numpy(np.ascontiguousarray((pixels / 255.0).astype(np.float32).transpose(2, 0, 1)))
            x = normalize_tensor(self.augment(x).clamp_(0.0, 1.0), self.mean, self.std)
        return x, r.label
