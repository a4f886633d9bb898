"""A uniform wrapper so every architecture gives distillation the three things SSD-KD needs."""

from __future__ import annotations

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
