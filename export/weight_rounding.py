"""The float model that int8 artifacts are quantized from: weights rounded to int8 by GPTQ, biases corrected.

Both steps use the same statistics of each conv/linear layer's input patches on the calibration images (their mean
``mu`` and covariance ``C``), gathered in one pass of the float model:

- **Rounding.** Rounding each weight to its nearest int8 value ignores how the errors of one output channel combine:
  its output error is ``dw . x``, whose variance is ``dw^T C dw``. GPTQ (Frantar et al., ICLR 2023, after Optimal
  Brain Quantization) rounds the weights of a channel one at a time and moves the not-yet-rounded ones to cancel,
  under ``C``, the error just made, so the errors of a channel's weights cancel in its output instead of adding up.
  What is left of the int8 error afterwards comes mostly from the 8-bit activations (docs/int8.md).
- **Bias correction.** Whatever the rounding, the weight error shifts the *mean* output whenever the inputs are not
  zero-mean (every layer after a ReLU6): ``E[dw . x] = dw . mu``, a bias the next layers carry on and amplify.
  Empirical bias correction (Nagel et al., "Data-Free Quantization", ICCV 2019, section 4.2) adds it back into the
  bias. That is why the rounding minimises the centred ``C``, not ``E[x x^T]``: the mean part is corrected exactly.

The weights land on exactly the grid the converter uses (per output channel symmetric, ``max|w| / qmax``, integers
in [-qmax, qmax]): ``qmax`` = 127 is TF Lite's and onnxruntime's per-channel int8 scheme, 64 onnxruntime's 7-bit
``reduce_range`` scheme (the portable ONNX int8, see :mod:`export.onnx_export`). GPTQ keeps each channel's largest
weight at +-qmax steps so that the converter derives the same scale from the rounded weights, and its own weight
quantization then reproduces these values and the correction survives conversion. Rounding for one grid and letting
the converter re-round to another would throw the compensation away, so the grid is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from export.calibration import ImageSet
from models.net import Classifier, fold_batchnorm
from models.preprocessing import Preprocessing

INT8_QMAX = 127  # full int8 weights: [-127, 127]
ROUNDINGS = ("gptq", "nearest")
# GPTQ's dampening: a fraction of the mean input variance added to the diagonal of C, so that directions the
# calibration images never excite (constant or dead input channels) cannot drive the compensation.
DAMPING = 0.01


def _grid_step(w: torch.Tensor, qmax: int) -> torch.Tensor:
    """Per output channel (first dim) of ``w``, its grid step ``max|w_c| / qmax``, shaped to broadcast."""
    step = w.abs().flatten(1).amax(1).clamp(min=torch.finfo(w.dtype).tiny) / qmax
    return step.view(-1, *[1] * (w.ndim - 1))


def round_to_int8_grid(w: torch.Tensor, qmax: int = INT8_QMAX) -> torch.Tensor:
    """``w`` (output channels first) rounded per output channel to ``k * max|w_c| / qmax``, ``k`` in [-qmax, qmax]."""
    step = _grid_step(w, qmax)
    return torch.round(w / step).clamp(-qmax, qmax) * step


def _patches(layer: nn.Conv2d | nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``(groups, samples, K)``: the input vectors each output of ``layer`` is a dot product with, K being the
    weight's fan-in (``in_channels / groups * kh * kw`` for a conv), zero padding included as the conv sees it."""
    if isinstance(layer, nn.Linear):
        return x.reshape(1, -1, x.shape[-1])
    p = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # N x (C k k) x positions
    n, ck, positions = p.shape
    g = layer.groups
    return p.view(n, g, ck // g, positions).permute(1, 0, 3, 2).reshape(g, n * positions, ck // g)


@dataclass
class _InputStats:
    """Running sums of one layer's input patches, per group: float64 across batches (~10^7 samples in all), each
    batch's products in float32."""

    total: torch.Tensor | float = 0.0
    outer: torch.Tensor | float = 0.0
    count: int = 0

    def add(self, p: torch.Tensor) -> None:
        self.total = self.total + p.sum(1, dtype=torch.float64)
        self.outer = self.outer + (p.transpose(1, 2) @ p).double()
        self.count += p.shape[1]

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.total / self.count
        return mu, self.outer / self.count - mu[:, :, None] * mu[:, None, :]


def gptq(w: torch.Tensor, cov: torch.Tensor, qmax: int = INT8_QMAX) -> torch.Tensor:
    """``w`` (rows x K) rounded to the per-row grid of ``qmax`` steps, columns in order, each row's rounding error
    compensated on its later columns so as to minimise ``dw^T cov dw``. ``cov`` is ``(1, K, K)`` (shared by all
    rows) or ``(rows, K, K)``. Each row's largest weight keeps its +-qmax steps (so the grid step is recoverable
    from the result) and every value stays within +-qmax steps."""
    rows, k = w.shape
    u = _inverse_cholesky(cov).expand(rows, k, k)
    w = w.double().clone()
    step = _grid_step(w, qmax)[:, 0]
    top = w.abs().argmax(1)
    top_sign = torch.sign(w[torch.arange(rows), top])
    q = torch.empty_like(w)
    for i in range(k):
        steps = torch.round(w[:, i] / step).clamp(-qmax, qmax)
        q[:, i] = torch.where(top == i, top_sign * qmax, steps) * step
        err = (w[:, i] - q[:, i]) / u[:, i, i]
        w[:, i + 1:] -= err[:, None] * u[:, i, i + 1:]
    return q


def _inverse_cholesky(cov: torch.Tensor) -> torch.Tensor:
    """Per group, the upper Cholesky factor of the dampened ``cov^-1`` (row i: how column i's error spreads onto
    the later columns). Where Cholesky fails even with heavy dampening the factor is the identity, i.e. nearest
    rounding: calibration images that barely vary (a constant grey set) leave a covariance that is zero up to float
    cancellation, with nothing to compensate against."""
    k = cov.shape[-1]
    eye = torch.eye(k, dtype=torch.float64)
    finite = torch.isfinite(cov).flatten(1).all(1)
    cov = torch.where(finite[:, None, None], cov, eye)
    scale = torch.diagonal(cov, dim1=1, dim2=2).mean(1).clamp(min=1e-12)[:, None, None]
    u = eye.repeat(len(cov), 1, 1)
    done = ~finite
    for damping in (DAMPING, 0.1, 1.0):  # more dampening until the float noise in cov no longer breaks Cholesky
        chol, info = torch.linalg.cholesky_ex(cov + damping * scale * eye)
        factor, info_inv = torch.linalg.cholesky_ex(torch.cholesky_inverse(chol), upper=True)
        ok = (info == 0) & (info_inv == 0) & ~done
        u[ok] = factor[ok]
        done |= ok
        if bool(done.all()):
            break
    return u


@torch.no_grad()
def int8_ready(model: Classifier, calib: ImageSet, pre: Preprocessing, rounding: str = "gptq",
               batch_size: int = 16, *, qmax: int = INT8_QMAX) -> Classifier:
    """A copy of ``model`` with BatchNorm folded, every conv/linear weight on the grid of ``qmax`` steps per side
    and its bias corrected.

    ``calib`` are the calibration images (``pre`` gives their NCHW float layout); ``rounding`` is "gptq" or
    "nearest"; ``qmax`` is the converter's weight range (127 int8, 64 onnxruntime's 7-bit). The returned model
    computes the same function as ``model`` up to weight rounding, with each layer's mean output on ``calib`` (given
    float inputs) unchanged. ``model`` itself is left untouched.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    ready = fold_batchnorm(model)
    layers = [m for m in ready.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    stats = {m: _InputStats() for m in layers}
    hooks = [m.register_forward_pre_hook(lambda m, inputs: stats[m].add(_patches(m, inputs[0]))) for m in layers]
    try:
        for start in range(0, len(calib), batch_size):
            ready(torch.from_numpy(calib.model_input(pre, start, start + batch_size)))
    finally:
        for h in hooks:
            h.remove()
    for m in layers:
        mu, cov = stats[m].mean_cov()
        w = m.weight.double().flatten(1)
        rows, groups = w.shape[0], mu.shape[0]
        if rounding == "gptq":
            q = gptq(w, cov if groups == 1 else cov.repeat_interleave(rows // groups, 0), qmax)
        else:
            q = round_to_int8_grid(w, qmax)
        # mean output shift per channel: (w - q) . mu of the channel's group
        shift = ((w - q) * mu.repeat_interleave(rows // groups, 0)).sum(1).float()
        m.weight.copy_(q.view_as(m.weight))
        if m.bias is None:
            m.bias = nn.Parameter(shift)
        else:
            m.bias += shift
    return ready
