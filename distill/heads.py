"""Trainable heads SSD-KD adds on top of the backbones (neither is exported with the student)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SSHead(nn.Sequential):
    """Self-supervision projection ``D -> D``: Linear - ReLU - Linear, on the pooled ``B x D`` embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))


class ConvReg(nn.Sequential):
    """Projects the student's map ``B x C_in x H x W`` to the teacher's ``B x C_out x H x W`` for the Gram term.

    1x1 conv (with bias, as the official FitNet-style ConvReg) - BatchNorm2d - ReLU; in train mode the
    BatchNorm uses the statistics of all rows in the batch (all 4B rotations in SSD-KD).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel_size=1), nn.BatchNorm2d(c_out), nn.ReLU())


def similarity_logits(head_rot: torch.Tensor, head_orig: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every rotated row with every original: ``3B x d``, ``B x d`` -> ``3B x B``.

    Entry ``(j, b)`` = cos(head_rot[j], head_orig[b]); the correct column for row j is ``j // 3``.
    Same value as the official ``F.cosine_similarity`` over broadcast ``3B x B x d`` pairs (each norm clamped at
    1e-8), as one matrix product of the normalised rows: that never materialises the ``3B x B x d`` pairs.
    """
    return F.normalize(head_rot, dim=-1, eps=1e-8) @ F.normalize(head_orig, dim=-1, eps=1e-8).t()
