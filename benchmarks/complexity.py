"""MACs and parameters of the checkpoint's network: one forward pass with hooks on Conv2d and Linear.

Only convolutions and linear layers are counted (they are > 99 % of a CNN's multiply-accumulates);
batch-norm, activations and pooling are left out, as in most published MAC counts. Deterministic: it
depends on the architecture and input size only. Quantized artifacts have the same MACs (fewer bits each).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def count_macs(model: Any, input_size: int) -> int:
    import torch
    from torch import nn

    total = 0

    def conv_hook(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        nonlocal total
        total += inp[0].numel() // m.in_features * m.in_features * m.out_features

    handles = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
    return int(total)


def model_complexity(checkpoint: str | Path) -> dict[str, Any]:
    """Architecture facts from the checkpoint's card plus counted parameters and MACs (batch 1)."""
    from models import count_parameters, load_checkpoint

    model, card = load_checkpoint(checkpoint)
    return {"checkpoint": str(Path(checkpoint).resolve()), "arch": card.arch, "width": card.width,
            "num_classes": card.num_classes, "labels": list(card.labels), "input_size": card.input_size,
            "params": int(count_parameters(model)), "macs": count_macs(model, card.input_size),
            "macs_counted": "Conv2d + Linear, batch 1"}
