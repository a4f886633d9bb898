"""Term 1: class-weighted cross-entropy, with weights from the training split's label counts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """PyTorch's weighted mean ``sum_i w[y_i] * nll_i / sum_i w[y_i]``.

    logits: ``B x K``; target: ``B`` class indices; class_weights: ``K``. Returns a scalar.
    """
    # Weights usually live on the CPU in a config; move them so callers need not care about device/dtype.
    weight = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
    return F.cross_entropy(logits, target, weight=weight)


def class_weights_from_counts(counts: Sequence[int], *, power: float = 1.0) -> list[float]:
    """``round((N / N_c) ** power, 3)`` per class, N = total count. ``power`` 1 is the official recipe's
    ``(freq.sum() / freq).round(3)``; below 1 softens it (0.5: the square root; 0: every weight 1).

    counts: ``K`` label counts of the training split. Returns ``K`` weights.
    Raises ValueError naming the first class whose count is not positive (its weight would be infinite).
    """
    for index, count in enumerate(counts):
        if count <= 0:
            raise ValueError(f"class {index} has count {count}; every class needs a positive count to get a weight")
    total = sum(counts)
    return [round((total / count) ** power, 3) for count in counts]
