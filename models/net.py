"""A uniform wrapper so every architecture gives distillation the three things SSD-KD needs."""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn


class Features(NamedTuple):
    """What one forward pass yields for distillation.

    feature_map: ``B x C x H x W`` last convolutional map (MobileNetV2 ``features[18]``, ResNet ``layer4``)
    embedding:   ``B x D`` globally average-pooled ``feature_map`` (D == C)
    logits:      ``B x num_classes``
    """

    feature_map: torch.Tensor
    embedding: torch.Tensor
    logits: torch.Tensor


class Classifier(nn.Module):
    """``body`` (image -> last feature map) + global average pool + ``head`` (dropout + linear).

    ``forward`` returns logits only, so exported graphs are plain classifiers;
    ``forward_features`` returns :class:`Features` for distillation.
    """

    def __init__(self, body: nn.Module, head: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> Features:
        fmap = self.body(x)
        emb = torch.flatten(nn.functional.adaptive_avg_pool2d(fmap, 1), 1)
        return Features(fmap, emb, self.head(emb))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).logits


def fold_batchnorm(model: Classifier) -> Classifier:
    """An eval-mode copy of ``model`` whose every Conv -> BatchNorm pair is folded into the conv.

    Same outputs up to float rounding (eval BN is an affine map); a frozen teacher's forward gets faster on CPU
    because BN is no longer a separate memory-bound pass. ``model`` itself is left untouched.
    """
    from torch.fx.experimental.optimization import fuse

    folded = copy.deepcopy(model).eval()
    folded.body = fuse(folded.body)
    return folded
