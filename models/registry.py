"""Models built from a registry by name (as timm's ``create_model``)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from torch import nn

from models.errors import InputError
from models.net import Classifier

Builder = Callable[..., Classifier]
_REGISTRY: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator adding a builder ``fn(num_classes, weights, **kwargs) -> Classifier``."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int, weights: str | Path | None = None, **kwargs) -> Classifier:
    """Build a registered model with a ``num_classes`` head.

    ``weights``: ``None`` (random init), ``"imagenet"`` (torchvision's own download) or a path to a local
    torchvision-style state dict (e.g. the offline MobileNetV2 ImageNet weights). Extra keyword arguments
    (e.g. ``width`` for MobileNetV2) go to the builder.
    """
    _load_builtin()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"unknown model {name!r}{hint} (available: {', '.join(sorted(_REGISTRY))})")
    if num_classes < 2:
        raise InputError(f"num_classes must be >= 2, got {num_classes}")
    if weights is not None and weights != "imagenet" and not Path(weights).is_file():
        raise InputError(f"{weights}: weights file not found (use None, 'imagenet' or a state-dict path)")
    try:
        model = _REGISTRY[name](num_classes=num_classes, weights=weights, **kwargs)
    except TypeError as e:
        raise InputError(f"model {name!r} does not accept options {sorted(kwargs)} ({e})") from None
    model.arch = name
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_builtin() -> None:
    # Importing the module registers the built-in architectures; done lazily to keep `import models` cheap.
    import models.architectures  # noqa: F401
    import models.efficientnet_lite  # noqa: F401
