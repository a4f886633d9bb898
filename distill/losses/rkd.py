"""Terms 5 and 6: relational KD (Park et al., 2019) on pooled embeddings, as the official SSD-KD code computes it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _normalized_distances(emb: torch.Tensor) -> torch.Tensor:
    """``N x D`` -> ``N x N`` Euclidean distances divided by the mean of the strictly positive entries.

    The squared distance is expanded as ``|a|^2 + |b|^2 - 2ab`` and clamped at 1e-12 (so sqrt stays differentiable and
    rounding cannot go negative); the diagonal is then set to exactly 0. Off-diagonal duplicates give 1e-6, not 0.
    """
    squared_norm = emb.pow(2).sum(dim=1)
    squared = (squared_norm.unsqueeze(0) + squared_norm.unsqueeze(1) - 2 * emb @ emb.t()).clamp(min=1e-12)
    dist = squared.sqrt()
    dist = dist * (1 - torch.eye(len(emb), dtype=dist.dtype, device=dist.device))
    return dist / dist[dist > 0].mean()


def rkd_distance(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (beta 1) between normalised pairwise distances, averaged over all ``N**2`` entries incl. the diagonal.

    student_emb: ``N x D_S``; teacher_emb: ``N x D_T`` (dims may differ). Returns a scalar; teacher without grad.
    Invariant to scaling either side. With N < 2 there is no pair to normalise by, so the loss is a graph-tied 0.
    """
    if student_emb.shape[0] < 2:
        return student_emb.sum() * 0
    with torch.no_grad():
        teacher_dist = _normalized_distances(teacher_emb)
    return F.smooth_l1_loss(_normalized_distances(student_emb), teacher_dist)


def _angles(emb: torch.Tensor) -> torch.Tensor:
    """``N x D`` -> ``N**3`` cosines ``a_ijk = e_ij . e_ik``, ``e_ij = normalize(x_j - x_i)`` (eps 1e-12: e_ii = 0)."""
    diff = emb.unsqueeze(0) - emb.unsqueeze(1)  # [i, j] = x_j - x_i
    unit = F.normalize(diff, p=2, dim=2, eps=1e-12)
    return torch.bmm(unit, unit.transpose(1, 2)).flatten()


def rkd_angle(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (beta 1) between the triplet angle cosines, averaged over all ``N**3`` entries.

    student_emb: ``N x D_S``; teacher_emb: ``N x D_T``. Returns a scalar; teacher without grad.
    Invariant to scaling and translating either side. Memory is ``N**2 * D`` per side (128 rows x 2048: ~134 MB).
    """
    with torch.no_grad():
        teacher_angles = _angles(teacher_emb)
    return F.smooth_l1_loss(_angles(student_emb), teacher_angles)
