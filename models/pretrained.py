"""Reading local pretrained state dicts, and fine-tuning from weights whose BatchNorm was folded into the
convolutions.

The offline MobileNetV2 ImageNet state dict (dequantized from Google's int8 TFLite model) has every
BatchNorm set to identity (weight 1, mean 0, var 1 - eps) with the conv bias moved into the BN bias.
In eval mode that is the pretrained function, but in train mode BN would normalise with batch
statistics and destroy it. :func:`reestimate_folded_batchnorm` sets each BN to the statistics of its
input on real images so eval output is unchanged and train mode starts from the pretrained function.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from models.errors import InputError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A local state dict (also one wrapped as ``{"state_dict": ...}``), loaded with ``weights_only=True``; a file
    that is not one is a one-line :class:`InputError` naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise InputError(f"{path}: not a loadable state dict ({type(e).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a state dict (a {type(state).__name__})")
    return state


def is_folded_batchnorm(model: nn.Module, atol: float = 1e-6) -> bool:
    """True if every BatchNorm is the identity-with-bias left by BN folding."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    return bool(bns) and all(
        torch.allclose(m.weight, torch.ones_like(m.weight), atol=atol)
        and torch.allclose(m.running_mean, torch.zeros_like(m.running_mean), atol=atol)
        and torch.allclose(m.running_var, torch.full_like(m.running_var, 1 - m.eps), atol=atol)
        for m in bns
    )


@torch.no_grad()
def reestimate_folded_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate folded BN layers from real images, keeping the eval-mode function.

    For a BN with input y (the bias-free conv output) and folded bias b, with per-channel mean m and
    variance v of y measured on ``batches``: running_mean=m, running_var=v, weight=sqrt(v+eps),
    bias=m+b. Then eval output (y-m)/sqrt(v+eps)*sqrt(v+eps)+m+b = y+b is unchanged.
    Returns the number of images seen. One pass suffices because the eval function is unchanged.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sums: dict[nn.Module, list[torch.Tensor]] = {}

    def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        y = inputs[0].double()
        s = sums.setdefault(mod, [torch.zeros(y.shape[1], dtype=torch.float64)] * 2 + [0])
        s[0] = s[0] + y.sum(dim=(0, 2, 3))
        s[1] = s[1] + (y * y).sum(dim=(0, 2, 3))
        s[2] += y.shape[0] * y.shape[2] * y.shape[3]

    handles = [m.register_forward_hook(hook) for m in bns]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for x in batches:
            model(x)
            seen += x.shape[0]
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError("reestimate_folded_batchnorm needs at least one batch of images")
    for m in bns:
        s1, s2, n = sums[m]
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0)
        b = m.bias.double()
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.weight.copy_(torch.sqrt(var + m.eps))
        m.bias.copy_(mean + b)
    return seen
