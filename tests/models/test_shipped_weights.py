"""The ImageNet MobileNetV2 weights shipped in models/weights/ (fp16): they load completely into the fp32 model,
keep the folded-BatchNorm marker, and predict ImageNet classes as the fp32 original in ../shared does."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import torchvision
import yaml

from models import InputError, build_model
from models.architectures import load_backbone_state
from models.preprocessing import load_rgb, normalize, resize_center_crop
from models.pretrained import is_folded_batchnorm
from tests.conftest import REPO, SAMPLE

SHIPPED = REPO / "models" / "weights" / "mobilenet_v2_1.0_imagenet_fp16.pth"
MILITARY_UNIFORM = 652  # torchvision's 1000-class index (the TFLite file's 653, after its background class)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _imagenet_model(path: Path) -> torch.nn.Module:
    model = torchvision.models.mobilenet_v2()
    load_backbone_state(model, path)
    return model.eval()


def _images() -> torch.Tensor:
    """A photo ImageNet knows (matplotlib's Grace Hopper, in uniform) and five lesions; 224 px, mean/std 0.5."""
    paths = [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    paths += sorted((SAMPLE / "ISIC_2019_Training_Input").glob("*.jpg"))[:5]
    x = [normalize(resize_center_crop(load_rgb(p), 224), (0.5,) * 3, (0.5,) * 3) for p in paths]
    return torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2).contiguous()


def test_shipped_weights_are_a_complete_fp16_torchvision_state_dict() -> None:
    state = _state(SHIPPED)
    own = torchvision.models.mobilenet_v2().state_dict()
    assert list(state) == list(own)
    for k, v in state.items():
        assert v.shape == own[k].shape, k
        if v.is_floating_point():
            # kernels and the classifier matrix in fp16; 1-D BatchNorm/bias tensors exact in fp32
            assert v.dtype == (torch.float16 if v.ndim >= 2 else torch.float32), k
    assert SHIPPED.stat().st_size < 8_000_000
    assert (SHIPPED.parent / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_shipped_weights_load_every_backbone_tensor_into_the_fp32_model() -> None:
    state = _state(SHIPPED)
    model = build_model("mobilenet_v2", 8, weights=SHIPPED)
    loaded = {f"features.{k}": v for k, v in model.body.state_dict().items()}
    backbone = [k for k in state if not k.startswith("classifier.")]
    assert sorted(backbone) == sorted(loaded)
    for k in backbone:
        assert loaded[k].dtype == (torch.int64 if k.endswith("num_batches_tracked") else torch.float32), k
        assert torch.equal(loaded[k], state[k].to(loaded[k].dtype)), k
    # the folded-BatchNorm marker survives, so build_from_config re-estimates BN before fine-tuning
    assert is_folded_batchnorm(model.body)
    assert model.head[-1].out_features == 8


def test_demo_config_starts_the_student_from_the_shipped_weights() -> None:
    cfg = yaml.safe_load((REPO / "configs" / "cpu_demo.yaml").read_text())
    assert (REPO / cfg["student"]["weights"]).resolve() == SHIPPED.resolve()
    assert (cfg["student"]["arch"], cfg["student"]["width"]) == ("mobilenet_v2", 1.0)
    assert cfg["student"]["mean"] == cfg["student"]["std"] == [0.5, 0.5, 0.5]


def test_shipped_fp16_weights_equal_the_fp32_original_and_predict_the_same(shared_weights) -> None:
    fp32, fp16 = _state(shared_weights), _state(SHIPPED)
    assert list(fp32) == list(fp16)
    for k, v in fp32.items():
        expected = v.half().float() if v.is_floating_point() and v.ndim >= 2 else v
        assert torch.equal(fp16[k].to(expected.dtype), expected), k
        if v.is_floating_point():  # within fp16 rounding: half an ulp, 2**-11 relative
            assert torch.allclose(fp16[k].float(), v, rtol=2**-11, atol=1e-7), k

    x = _images()
    with torch.no_grad():
        a, b = _imagenet_model(shared_weights)(x), _imagenet_model(SHIPPED)(x)
    diff = float((a - b).abs().max())
    assert diff < 0.15, f"fp16 weights moved an ImageNet logit by {diff:.3f}"
    assert int(a[0].argmax()) == int(b[0].argmax()) == MILITARY_UNIFORM
    # Top-1 agrees wherever the fp32 model's top-2 margin exceeds what the logit change could flip.
    top2 = a.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * diff
    assert clear.sum() >= 4
    assert torch.equal(a.argmax(1)[clear], b.argmax(1)[clear])


def test_shipped_weights_fit_width_one_only() -> None:
    with pytest.raises(InputError, match="does not fit"):
        build_model("mobilenet_v2", 8, weights=SHIPPED, width=0.5)
