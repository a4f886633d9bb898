"""Term 2 (and the core of terms 3-4): temperature-scaled KL divergence from teacher to student."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(t / T) || softmax(s / T))`` summed over classes, divided by the row count, times ``T**2``.

    student_logits, teacher_logits: ``R x K``. Returns a scalar. The teacher is a constant (detached).
    """
    if student_logits.shape[0] == 0:
        # Selection can keep no rows; batchmean would divide by zero. A zero tied to the graph keeps backward() valid.
        return student_logits.sum() * 0
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits.detach() / temperature, dim=1)
    # T**2 keeps the gradient magnitude independent of T (Hinton et al.).
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2
