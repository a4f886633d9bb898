"""Error-level ranking: which rotated rows the teacher is trusted on (SSKD's selection, terms 3 and 4)."""

from __future__ import annotations

import torch


def true_rank(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0-based position of the true column in each row's descending sort.

    scores: ``R x K``; target: ``R`` column indices. Returns ``R`` (int64); 0 means the row is ranked correctly.
    Ties are broken by column index (stable sort) so the result is deterministic.
    """
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    return (order == target.unsqueeze(1)).int().argmax(dim=1)


def select_rows(scores: torch.Tensor, target: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep every correctly ranked row plus ``int(n_wrong * ratio)`` wrong rows with the smallest rank.

    scores: ``R x K``; target: ``R``. Returns a bool mask ``R``. Ties in rank are broken by row index.
    ``int`` truncates as the official code does: ratio 0.75 of 1-3 wrong rows drops one.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    rank = true_rank(scores, target)
    n_wrong = int((rank > 0).sum())
    n_keep = rank.shape[0] - n_wrong + int(n_wrong * ratio)
    kept = torch.argsort(rank, stable=True)[:n_keep]
    mask = torch.zeros_like(rank, dtype=torch.bool)
    mask[kept] = True
    return mask
