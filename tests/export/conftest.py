"""Export fixtures: one full export (all targets, int8 + fp16, Android assets) shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from export import ExportReport, Gate, export
from models import load_checkpoint, save_checkpoint

# The tiny model is verified on ~60 val images: one flipped image moves agreement by 1.7 points, so the e2e run
# uses a looser gate than the CLI default; test_gate.py checks the default gate's behaviour on its own.
E2E_GATE = Gate(max_bacc_drop=5.0, min_agreement=0.9)


@pytest.fixture(scope="session")
def export_checkpoint(trained_checkpoint, tmp_path_factory) -> Path:
    """The shared tiny checkpoint with BatchNorm statistics re-estimated on its training images.

    After seconds of training the running BN statistics lag the weights so badly that the eval-mode network
    predicts one class for every image, which would make top-1 agreement meaningless (any broken int8 model
    would "agree"). A cumulative BN pass over the train split fixes that without further training.
    """
    from distill.data import load_labeled_images, load_split

    model, card = load_checkpoint(trained_checkpoint)
    ckpt = Path(trained_checkpoint)
    ds = load_labeled_images(card.data["root"])
    split = load_split(ckpt.parent / "split.json", ds)
    pre = card.preprocessing()
    x = np.stack([pre.model_input(pre.pixels(r.path))[0] for r in ds.subset(split.train)])
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the whole pass
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(x))
    for m in bns:
        m.momentum = 0.1
    model.eval()
    out = tmp_path_factory.mktemp("export_ckpt")
    (out / "split.json").write_bytes((ckpt.parent / "split.json").read_bytes())
    return save_checkpoint(out / "best.pt", model, card)


@pytest.fixture(scope="session")
def exported(export_checkpoint, tmp_path_factory) -> ExportReport:
    out = tmp_path_factory.mktemp("export_all")
    return export(export_checkpoint, targets="all", int8=True, fp16=True, out_dir=out / "out",
                  android_demo=out / "android_demo", gate=E2E_GATE, val_size=None, verbose=False)
