"""Terms 3 and 4: self-supervised knowledge (rotated-view KD and rotation-similarity KD), plus the SS head's loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.kd import kd_kl
from distill.losses.selection import select_rows

ROTATED_PER_IMAGE = 3


def _similarity_targets(sim: torch.Tensor) -> torch.Tensor:
    """Correct column per row of a ``3B x B`` similarity matrix: row j belongs to original ``j // 3``."""
    rows, cols = sim.shape
    if rows != ROTATED_PER_IMAGE * cols:
        raise ValueError(f"similarity matrix must be 3B x B (3 rotated rows per original), got {rows} x {cols}")
    return torch.arange(rows, device=sim.device) // ROTATED_PER_IMAGE


def rotation_kd(
    student_rot_logits: torch.Tensor,
    teacher_rot_logits: torch.Tensor,
    targets_rot: torch.Tensor,
    temperature: float = 4.0,
    ratio: float = 1.0,
) -> torch.Tensor:
    """KD on the rotated rows the teacher ranks well: :func:`kd_kl` over the rows kept by :func:`select_rows`.

    student_rot_logits, teacher_rot_logits: ``3B x K``; targets_rot: ``3B`` (each image's label, repeated).
    Ranked on the teacher's logits; batchmean divides by the number of kept rows. Returns a scalar.
    """
    keep = select_rows(teacher_rot_logits, targets_rot, ratio)
    return kd_kl(student_rot_logits[keep], teacher_rot_logits[keep], temperature)


def similarity_kd(
    student_sim: torch.Tensor,
    teacher_sim: torch.Tensor,
    temperature: float = 0.5,
    ratio: float = 0.75,
) -> torch.Tensor:
    """KD on the ``3B x B`` cosine matrices: softmax over the B originals at T, KL teacher || student, times ``T**2``.

    Rows are kept by :func:`select_rows` on the teacher's similarities with correct column ``j // 3``;
    batchmean divides by the number of kept rows. Returns a scalar.
    """
    keep = select_rows(teacher_sim, _similarity_targets(teacher_sim), ratio)
    return kd_kl(student_sim[keep], teacher_sim[keep], temperature)


def ss_head_loss(sim: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the raw ``3B x B`` cosine matrix (no temperature) against column ``j // 3``; a scalar.

    Trains the teacher's SS head (backbone frozen) before distillation, as the official script does.
    """
    return F.cross_entropy(sim, _similarity_targets(sim))
