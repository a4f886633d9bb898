"""The float model int8 is quantized from: weights rounded (GPTQ) onto the converters' int8 grid, output shifts
folded into biases."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from export.calibration import read_split_images
from export.onnx_export import ONNX_INT8_SCHEMES
from export.verify import reference_logits
from export.weight_rounding import gptq, int8_ready, round_to_int8_grid
from models import load_checkpoint
from models.net import fold_batchnorm


def test_round_to_int8_grid_by_hand() -> None:
    w = torch.tensor([[1.0, -0.5, 0.26], [0.0, 0.0, 0.0], [-2.54, 0.01, 0.0]])
    q = round_to_int8_grid(w)
    torch.testing.assert_close(q[0], torch.tensor([127, -64, 33]) / 127.0)  # -63.5 rounds to even, 33.02 -> 33
    assert torch.equal(q[1], torch.zeros(3))  # an all-zero channel stays zero, no NaN
    torch.testing.assert_close(q[2], torch.tensor([-127, 0, 0]) * (2.54 / 127))  # 0.5 rounds to even: 0
    torch.testing.assert_close(round_to_int8_grid(q), q)  # idempotent: a converter re-rounding changes nothing


def _weighted_error(w: torch.Tensor, q: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    d = (w - q).double()
    return torch.einsum("rk,rkl,rl->r", d, cov.expand(len(d), -1, -1), d)


@pytest.mark.parametrize("shared", [True, False], ids=["conv", "depthwise"])
def test_gptq_beats_nearest_under_the_input_covariance_and_keeps_the_grid(shared: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    rows, k = 24, 18
    w = torch.randn(rows, k, generator=gen, dtype=torch.float64)
    # strongly correlated inputs, as neighbouring pixels and channels are: nearest rounding ignores that
    mix = torch.randn(k, k, generator=gen, dtype=torch.float64) + 3 * torch.ones(k, k, dtype=torch.float64)
    x = torch.randn(rows if not shared else 1, 4000, k, generator=gen, dtype=torch.float64) @ mix
    cov = x.transpose(1, 2) @ x / x.shape[1]
    q = gptq(w, cov)
    step = w.abs().amax(1, keepdim=True) / 127
    steps = q / step
    torch.testing.assert_close(steps, steps.round(), atol=1e-9, rtol=0)
    assert steps.abs().max() <= 127 + 1e-9
    # the largest weight keeps its 127 steps, so max|q| / 127 gives back the grid step a converter will use
    torch.testing.assert_close(q.abs().amax(1, keepdim=True) / 127, step)
    near, ours = _weighted_error(w, round_to_int8_grid(w), cov), _weighted_error(w, q, cov)
    assert ours.sum() < 0.5 * near.sum()


def test_gptq_on_uncorrelated_inputs_is_nearest_rounding() -> None:
    w = torch.randn(8, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(gptq(w, torch.eye(10, dtype=torch.float64)[None]), round_to_int8_grid(w))


def test_gptq_on_a_degenerate_covariance_is_nearest_rounding() -> None:
    """Constant calibration images leave a covariance that is zero, or zero up to float cancellation (slightly
    negative eigenvalues): nothing to compensate against, and no Cholesky failure either."""
    w = torch.randn(6, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(gptq(w, torch.zeros(1, 9, 9, dtype=torch.float64)), round_to_int8_grid(w))
    v = torch.ones(9, dtype=torch.float64)
    noisy = (torch.outer(v, v) * 1e-3 - 1e-9 * torch.eye(9, dtype=torch.float64))[None]  # rank 1, not PSD
    q = gptq(w, noisy)
    steps = q / (w.abs().amax(1, keepdim=True) / 127)
    torch.testing.assert_close(steps, steps.round(), atol=1e-9, rtol=0)


def test_a_dead_input_channel_leaves_gptq_on_the_other_channels_of_a_depthwise_conv() -> None:
    """A depthwise channel whose input is always zero (a dead ReLU6 upstream) has a zero covariance: that channel is
    rounded to nearest, the others still get GPTQ's compensation."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    x = torch.randn(4, 2000, 9, generator=gen, dtype=torch.float64) @ (torch.ones(9, 9, dtype=torch.float64) + 0.3)
    x[0] = 0.0
    cov = x.transpose(1, 2) @ x / x.shape[1]
    q = gptq(w, cov)
    torch.testing.assert_close(q[0], round_to_int8_grid(w)[0])
    assert (_weighted_error(w, q, cov)[1:] < _weighted_error(w, round_to_int8_grid(w), cov)[1:]).all()


@pytest.fixture(scope="module")
def model_and_calib(trained_checkpoint):
    model, card = load_checkpoint(trained_checkpoint)
    pre = card.preprocessing()
    calib = read_split_images(card.data["root"], "train", card, Path(trained_checkpoint), pre, 200)
    return model.eval(), pre, calib


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]


@pytest.mark.parametrize("rounding", ["gptq", "nearest"])
def test_int8_ready_weights_are_on_the_grid_and_the_model_is_untouched(model_and_calib, rounding: str) -> None:
    model, pre, calib = model_and_calib
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ready = int8_ready(model, calib, pre, rounding)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ready.modules())
    for layer in _layers(ready):
        w = layer.weight.detach()
        steps = w / (w.abs().flatten(1).amax(1).clamp(min=1e-30) / 127).view(-1, *[1] * (w.ndim - 1))
        torch.testing.assert_close(steps, steps.round(), atol=1e-3, rtol=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bias_correction_restores_each_layers_mean_output(model_and_calib) -> None:
    model, pre, calib = model_and_calib
    x = torch.from_numpy(calib.model_input(pre))
    ready, folded = int8_ready(model, calib, pre), fold_batchnorm(model)
    # The second layer (depthwise) reads the first one's ReLU6 output: inputs with a non-zero mean, where rounded
    # weights shift the mean output and the correction must undo it.
    float_layer, ready_layer = _layers(folded)[1], _layers(ready)[1]
    seen = []
    float_layer.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0]))
    with torch.no_grad():
        folded(x)
        conv = functools.partial(torch.nn.functional.conv2d, seen[0], stride=float_layer.stride,
                                 padding=float_layer.padding, groups=float_layer.groups)
        want = conv(float_layer.weight, float_layer.bias).mean((0, 2, 3))
        got = conv(ready_layer.weight, ready_layer.bias).mean((0, 2, 3))
        uncorrected = conv(ready_layer.weight, float_layer.bias).mean((0, 2, 3))
    assert (got - want).abs().max() < 1e-5
    assert (uncorrected - want).abs().max() > 100 * (got - want).abs().max()


def test_gptq_rounding_brings_the_int8_weight_model_closer_to_fp32(model_and_calib) -> None:
    model, pre, calib = model_and_calib
    ref = reference_logits(model, calib)
    err = {r: float(((reference_logits(int8_ready(model, calib, pre, r), calib) - ref) ** 2).mean())
           for r in ("gptq", "nearest")}
    assert err["gptq"] < 0.7 * err["nearest"], err


def test_int8_ready_rejects_an_unknown_rounding(model_and_calib) -> None:
    with pytest.raises(ValueError, match="rounding must be one of"):
        int8_ready(*model_and_calib, rounding="stochastic")


def _onnx_int8_weights(path: Path) -> list[np.ndarray]:
    """Dequantized per-channel int8 conv weights of a QDQ model, in graph order."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    out = []
    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in init and init[node.input[0]].ndim == 4:
            q, scale = init[node.input[0]], init[node.input[1]]
            out.append(q.astype(np.float32) * scale.reshape(-1, 1, 1, 1))
    return out


@pytest.mark.slow
def test_onnxruntime_keeps_the_pre_rounded_weights(exported, model_and_calib) -> None:
    model, pre, calib = model_and_calib
    scheme = ONNX_INT8_SCHEMES[exported.settings["onnx_int8"]["scheme"]]
    ready = int8_ready(model, calib, pre, qmax=scheme.weight_qmax)  # the grid of the scheme the file was made with
    ready_convs = [m.weight.detach().numpy() for m in _layers(ready)[:-1]]
    onnx_convs = _onnx_int8_weights(exported.out_dir / "model_int8.onnx")
    assert exported.settings["gptq_rounding"] is True and exported.settings["bias_correction"] is True
    assert len(onnx_convs) == len(ready_convs)
    for want in ready_convs:  # graph order is not module order: each must have an exact twin in the QDQ model
        assert any(got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-7) for got in onnx_convs)


def _tflite_int8_conv_weights(path: Path) -> list[np.ndarray]:
    """Dequantized per-channel int8 4-D weights of a TFLite model (OHWI conv, 1HWO depthwise)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    out = []
    for t in it.get_tensor_details():
        qp = t["quantization_parameters"]
        if t["dtype"] == np.int8 and len(t["shape"]) == 4 and len(qp["scales"]) > 1:
            shape = [1] * 4
            shape[qp["quantized_dimension"]] = -1
            out.append(it.get_tensor(t["index"]).astype(np.float32) * qp["scales"].reshape(shape))
    return out


@pytest.mark.slow
def test_tflite_converter_keeps_the_pre_rounded_weights(exported, model_and_calib) -> None:
    model, pre, calib = model_and_calib
    convs = [m for m in _layers(int8_ready(model, calib, pre)) if isinstance(m, torch.nn.Conv2d)]
    tfl = _tflite_int8_conv_weights(exported.out_dir / "model_int8.tflite")
    assert len(tfl) == len(convs)
    for m in convs:
        w = m.weight.detach().numpy()
        want = w.transpose(1, 2, 3, 0) if m.groups > 1 else w.transpose(0, 2, 3, 1)  # 1HWO / OHWI
        assert any(got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-7) for got in tfl)


@pytest.mark.parametrize("qmax", [127, 64])
def test_gptq_lands_on_the_grid_of_the_requested_width(qmax: int) -> None:
    """The portable ONNX scheme has 7-bit weights (64 steps a side): GPTQ must round onto that grid itself, or
    onnxruntime would re-round its result and throw the compensation away."""
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(16, 27, generator=gen, dtype=torch.float64)
    x = torch.randn(400, 27, generator=gen, dtype=torch.float64)
    q = gptq(w, (x.T @ x / len(x))[None], qmax)
    steps = q / (w.abs().amax(1, keepdim=True) / qmax)
    torch.testing.assert_close(steps, steps.round(), atol=1e-6, rtol=0)
    assert (steps.round().abs().amax(1) == qmax).all()  # each row's largest keeps +-qmax, none beyond
    torch.testing.assert_close(round_to_int8_grid(q, qmax), q)  # the converter's own rounding changes nothing
