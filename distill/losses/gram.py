"""Term 7: intra-instance Gram (channel-correlation) distillation on the last feature maps."""

from __future__ import annotations

import torch

# sqrt'(0) is infinite, and the RMSE is exactly 0 whenever student and teacher Grams match. Clamping the MSE here
# keeps the gradient finite (0 below the floor) and changes the value only when the RMSE is below sqrt(1e-12) = 1e-6.
_MSE_FLOOR = 1e-12


def gram_matrix(fmap: torch.Tensor) -> torch.Tensor:
    """``B x C x H x W`` -> ``B x C x C``: ``F @ F^T / (C * H * W)`` per row, with F the ``C x HW`` map."""
    batch, channels, height, width = fmap.shape
    flat = fmap.reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)


def gram_loss(student_fmap_projected: torch.Tensor, teacher_fmap: torch.Tensor) -> torch.Tensor:
    """RMSE over all rows and entries of the Gram matrices: ``sqrt(mean((G_S - G_T)**2))``; a scalar.

    student_fmap_projected: ``B x C_T x H x W`` (student map after :class:`distill.heads.ConvReg`);
    teacher_fmap: ``B x C_T x H x W``, treated as a constant. Returns at least 1e-6 (see ``_MSE_FLOOR``).
    """
    if student_fmap_projected.shape != teacher_fmap.shape:
        raise ValueError(
            f"projected student map {tuple(student_fmap_projected.shape)} must match the teacher map "
            f"{tuple(teacher_fmap.shape)}; project the student with ConvReg(C_S, C_T) first"
        )
    with torch.no_grad():
        teacher_gram = gram_matrix(teacher_fmap)
    mse = (gram_matrix(student_fmap_projected) - teacher_gram).pow(2).mean()
    return mse.clamp(min=_MSE_FLOOR).sqrt()
