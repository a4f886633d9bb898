"""Test helpers that build small real artifacts quickly."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from distill.data import ImageDataset, load_labeled_images, make_split, save_split
from models import ModelCard, build_model, save_checkpoint


def train_tiny_checkpoint(out: Path, data_root: Path, size: int = 64, epochs: int = 12, seed: int = 0) -> Path:
    """Plain CE training of MobileNetV2-0.5 on the sample's train split; returns the checkpoint path.

    The split file is saved beside it as ``split.json`` so export can take calibration from train and
    verification from val.
    """
    torch.manual_seed(seed)
    ds = load_labeled_images(data_root)
    split = make_split(ds, seed=2021)
    save_split(out / "split.json", split, ds)
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    train = ImageDataset(ds.subset(split.train), size, mean, std, train=False)
    model = build_model("mobilenet_v2", len(ds.classes), width=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed))
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    _recalibrate_batchnorm(model, loader)
    card = ModelCard(arch="mobilenet_v2", width=0.5, num_classes=len(ds.classes), labels=list(ds.classes),
                     input_size=size, mean=list(mean), std=list(std),
                     data={"root": str(data_root), "split_file": "split.json", "split_seed": 2021},
                     training={"method": "scratch", "epochs": epochs, "note": "test fixture"})
    return save_checkpoint(out / "best.pt", model, card)


@torch.no_grad()
def _recalibrate_batchnorm(model: torch.nn.Module, loader: DataLoader) -> None:
    """Cumulative BN statistics over the train split.

    After seconds of training the running BN statistics lag the weights so badly that the eval-mode network
    predicts one class for every image, which would make int8 agreement meaningless (any broken model "agrees").
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for x, _ in loader:
        model(x)
    for m in bns:
        m.momentum = 0.1
    model.eval()


def assert_folding_keeps_the_function(model: torch.nn.Module, x: torch.Tensor) -> None:
    """``fold_batchnorm(model)`` (``model`` in eval mode) computes the same features and logits, with no BatchNorm
    left, and ``model`` itself keeps its BatchNorm."""
    from models.net import fold_batchnorm

    folded = fold_batchnorm(model)
    with torch.no_grad():
        for want, got in zip(model.forward_features(x), folded.forward_features(x), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
