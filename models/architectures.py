"""Built-in architectures: torchvision backbones re-wrapped as :class:`models.net.Classifier`."""

from __future__ import annotations

from pathlib import Path

import torchvision
from torch import nn

from models.errors import InputError
from models.net import Classifier
from models.pretrained import read_state_dict
from models.registry import register_model

_IMAGENET_ENUMS = {
    "resnet18": "ResNet18_Weights",
    "resnet50": "ResNet50_Weights",
    "mobilenet_v2": "MobileNet_V2_Weights",
    "mobilenet_v3_small": "MobileNet_V3_Small_Weights",
    "mobilenet_v3_large": "MobileNet_V3_Large_Weights",
}


def _torchvision(name: str, weights: str | Path | None, **kwargs) -> nn.Module:
    """Build the torchvision model and load ImageNet weights (download or local state dict)."""
    if weights == "imagenet":
        if kwargs.get("width_mult", 1.0) != 1.0:
            raise InputError(f"{name}: torchvision has ImageNet weights for width 1.0 only")
        enum = getattr(torchvision.models, _IMAGENET_ENUMS[name])
        return getattr(torchvision.models, name)(weights=enum.DEFAULT, **kwargs)
    model = getattr(torchvision.models, name)(**kwargs)
    if weights is not None:
        load_backbone_state(model, weights)
    return model


def load_backbone_state(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict, keeping every backbone tensor and skipping only a classifier whose
    class count differs. Any other mismatch is an error: silently half-loaded weights are worse."""
    state = read_state_dict(path)
    own = model.state_dict()
    kept, skipped = {}, []
    for k, v in state.items():
        if k in own and own[k].shape == v.shape:
            kept[k] = v
        elif k.startswith(("classifier.", "fc.")):
            skipped.append(k)
        else:
            raise InputError(f"{path}: tensor {k!r} does not fit {type(model).__name__} "
                             f"({tuple(v.shape)} vs {tuple(own[k].shape) if k in own else 'missing'})")
    missing = [k for k in own if k not in kept and not k.startswith(("classifier.", "fc."))]
    if missing:
        raise InputError(f"{path}: {len(missing)} backbone tensors missing, e.g. {missing[0]!r}")
    model.load_state_dict(kept, strict=False)


def _resnet(name: str, num_classes: int, weights) -> Classifier:
    m = _torchvision(name, weights)
    body = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)
    dim = m.fc.in_features
    return Classifier(body, nn.Linear(dim, num_classes), dim, num_classes)


@register_model("resnet18")
def resnet18(num_classes: int, weights=None) -> Classifier:
    return _resnet("resnet18", num_classes, weights)


@register_model("resnet50")
def resnet50(num_classes: int, weights=None) -> Classifier:
    return _resnet("resnet50", num_classes, weights)


@register_model("mobilenet_v2")
def mobilenet_v2(num_classes: int, weights=None, width: float = 1.0) -> Classifier:
    m = _torchvision("mobilenet_v2", weights, width_mult=width)
    dim = m.classifier[-1].in_features
    head = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, num_classes))
    return Classifier(m.features, head, dim, num_classes)


def _mobilenet_v3(name: str, num_classes: int, weights) -> Classifier:
    m = _torchvision(name, weights)
    head = m.classifier
    head[-1] = nn.Linear(head[-1].in_features, num_classes)
    return Classifier(m.features, head, head[0].in_features, num_classes)


@register_model("mobilenet_v3_small")
def mobilenet_v3_small(num_classes: int, weights=None) -> Classifier:
    return _mobilenet_v3("mobilenet_v3_small", num_classes, weights)


@register_model("mobilenet_v3_large")
def mobilenet_v3_large(num_classes: int, weights=None) -> Classifier:
    return _mobilenet_v3("mobilenet_v3_large", num_classes, weights)
