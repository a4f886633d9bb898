"""The SSD-KD batch layout: each image at four rotations, interleaved image-major (row ``4b + r``)."""

from __future__ import annotations

import torch

NUM_ROTATIONS = 4


def rotate_batch(x: torch.Tensor) -> torch.Tensor:
    """``B x C x H x W`` -> ``4B x C x H x W``; row ``4b + r`` is image b rotated ``r * 90`` degrees counter-clockwise.

    Matches the official loader's ``np.rot90(img, r)`` on the H x W plane. Needs ``H == W`` so all rotations stack.
    """
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotate_batch needs a B x C x H x W batch with H == W, got shape {tuple(x.shape)}")
    rotated = torch.stack([torch.rot90(x, r, dims=(-2, -1)) for r in range(NUM_ROTATIONS)], dim=1).flatten(0, 1)
    # Keep a channels_last batch channels_last, or every network's first conv pays a relayout of all 4B rows.
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return rotated.contiguous(memory_format=torch.channels_last) if cl else rotated


def split_rotations(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``4B x ...`` -> (originals ``B x ...``, rotated ``3B x ...``).

    Originals are rows 0, 4, 8, ...; rotated row j is image ``j // 3`` at rotation ``j % 3 + 1``.
    """
    if t.shape[0] % NUM_ROTATIONS:
        raise ValueError(f"expected a multiple of {NUM_ROTATIONS} rows (4 rotations per image), got {t.shape[0]}")
    grouped = t.unflatten(0, (-1, NUM_ROTATIONS))
    return grouped[:, 0], grouped[:, 1:].flatten(0, 1)


def rotated_targets(y: torch.Tensor) -> torch.Tensor:
    """Labels ``B`` -> ``3B``, one per rotated row of :func:`split_rotations` (rotation keeps the class)."""
    return y.repeat_interleave(NUM_ROTATIONS - 1)
