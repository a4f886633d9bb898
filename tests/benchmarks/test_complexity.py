"""MAC counting: exact on a hand-computable net, and the published figures of two torchvision models."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from benchmarks.complexity import count_macs


def test_exact_on_a_tiny_network():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=4),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    conv = 4 * 8 * 8 * 3 * 9  # out elements x (in/groups) x k x k
    depthwise = 4 * 8 * 8 * 1 * 9
    assert count_macs(net, 8) == conv + depthwise + 4 * 2
    assert not any(m._forward_hooks for m in net.modules())  # hooks removed


def test_matches_published_mobilenet_v2_count():
    torch.manual_seed(0)
    assert count_macs(torchvision.models.mobilenet_v2(), 224) / 1e6 == pytest.approx(300, rel=0.01)  # 300 M MACs
