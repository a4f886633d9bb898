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
    """``N x D`` -> ``N**3`` cosines ``a_ijk = e_ij . e_ik``, ``e_ij = normalize(x_j - x_i)`` (eps 1e-12: e_ii = 0).

    Computed from the ``N x N`` inner-product matrix G instead of the ``N x N x D`` difference vectors:
    ``(x_j - x_i).(x_k - x_i) = (G_jk - G_ik) - (G_ij - G_ii)`` and ``|x_j - x_i|^2 = G_jj + G_ii - 2 G_ij``.
    Same value, ~D times less work: at 128 rows x 1280 dims it turns the slowest SSD-KD term into one of the cheapest.
    Angles do not change when every row is translated, so G is formed from the centred rows in float64: its entries
    are then on the scale of the differences, and the ``N**3`` part can run in the input's precision (float32: half
    the memory traffic of float64) with errors no larger than the official float32 difference vectors'.
    Entries with i == j or i == k (and exact duplicates) are exactly 0, as ``normalize`` makes them.
    """
    x = emb.double()
    x = x - x.mean(dim=0)
    g = x @ x.t()
    g = (g + g.t()) / 2  # exactly symmetric
    diag = g.diagonal()
    dist = (diag.unsqueeze(0) + diag.unsqueeze(1) - 2 * g).clamp(min=0).sqrt()  # [i, j] = |x_j - x_i|
    # 1/|x_j - x_i|, and 0 for a zero difference (normalize's e_ii = 0); the clamp keeps the unused branch finite,
    # or its NaN gradient would leak through where()
    inv = torch.where(dist > 1e-12, 1 / dist.clamp(min=1e-12), 0).to(emb.dtype)
    g_low = g.to(emb.dtype)
    shift = (g - diag.unsqueeze(1)).to(emb.dtype)  # [i, j] = G_ij - G_ii
    numerator = (g_low.unsqueeze(0) - g_low.unsqueeze(1)) - shift.unsqueeze(2)  # [i, j, k]
    return (numerator * inv.unsqueeze(2) * inv.unsqueeze(1)).flatten()


def rkd_angle(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (beta 1) between the triplet angle cosines, averaged over all ``N**3`` entries.

    student_emb: ``N x D_S``; teacher_emb: ``N x D_T``. Returns a scalar; teacher without grad.
    Invariant to scaling and translating either side. Memory is ``N**2 * D`` per side (128 rows x 2048: ~134 MB).
    """
    with torch.no_grad():
        teacher_angles = _angles(teacher_emb)
    return F.smooth_l1_loss(_angles(student_emb), teacher_angles)
