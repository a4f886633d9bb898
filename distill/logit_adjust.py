"""Post-hoc logit adjustment: move a trained classifier's decisions to the balanced prior, folded into its bias.

Cross-entropy weighted by ``(N / N_c) ** p`` trains a model whose softmax carries the train prior to the power
``1 - p`` (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021): ``p = 1`` (the official weights)
leaves none, ``p = 0.5`` half of it. Subtracting ``tau * log(prior)`` from the logits with ``tau = 1 - p`` removes
what is left, which is what balanced accuracy and per-class recall reward. The shift is a constant per class, so it
goes into the last linear layer's bias: the adjusted checkpoint has the same architecture, exports unchanged and
costs nothing at run time; its features (what distillation and int8 calibration see) do not change.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from distill.data import ImageDataset, load_labeled_images, load_split
from distill.metrics import classification_metrics
from distill.stages import calibrate, predict_logits
from models import ModelCard, load_checkpoint, save_checkpoint
from models.errors import InputError
from models.net import Classifier


def balancing_tau(card: ModelCard) -> float:
    """``1 - loss.class_weight_power`` of the config the checkpoint was trained with (1 = official weights)."""
    power = card.training.get("config", {}).get("loss", {}).get("class_weight_power", 1.0)
    return 1.0 - float(power)


def class_prior(labels: list[int], num_classes: int, *, where: str) -> np.ndarray:
    """Class frequencies; every class must occur, since ``log(0)`` has no adjustment."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    if (counts == 0).any():
        raise InputError(f"{where}: no train images of class index {int(np.argmin(counts))}; "
                         "the prior needs every class")
    return counts / counts.sum()


def shift_bias(model: Classifier, shift: torch.Tensor) -> None:
    """Add ``shift`` (one value per class) to the bias of the model's last linear layer, in place."""
    linear = [m for m in model.head.modules() if isinstance(m, nn.Linear)][-1]
    if linear.bias is None:
        raise InputError(f"{type(model).__name__}: the classifier's last linear layer has no bias to adjust")
    with torch.no_grad():
        linear.bias += shift.to(linear.bias)


def adjust_checkpoint(checkpoint: str | Path, data_root: str | Path, *, out: str | Path,
                      tau: float | None = None, split_file: str | Path | None = None) -> dict:
    """Write ``out``: ``checkpoint`` with ``-tau * log(train prior)`` folded into its bias (``tau`` default:
    :func:`balancing_tau`), its card's metrics re-measured on the val split and its temperature refitted there.
    Returns the new val metrics."""
    ckpt, dest = Path(checkpoint), Path(out)
    if dest.resolve() == ckpt.resolve():
        raise InputError(f"{dest}: write the adjusted checkpoint to a new file (--out), not over its source")
    model, card = load_checkpoint(ckpt)
    if "logit_adjustment" in card.training:
        raise InputError(f"{ckpt}: already logit-adjusted (tau {card.training['logit_adjustment']['tau']}); "
                         "adjust the unadjusted checkpoint instead")
    tau = balancing_tau(card) if tau is None else float(tau)
    if tau == 0:
        raise InputError(f"{ckpt}: trained with loss.class_weight_power 1 (balanced already), so tau = 0 "
                         "changes nothing; pass --tau to shift it anyway")
    ds = load_labeled_images(data_root)
    if list(ds.classes) != list(card.labels):
        raise InputError(f"{data_root}: classes {list(ds.classes)} are not the checkpoint's {card.labels}")
    sf = Path(split_file) if split_file else ckpt.parent / card.data.get("split_file", "split.json")
    split = load_split(sf, ds)
    prior = class_prior([r.label for r in ds.subset(split.ids("train"))], card.num_classes, where=str(sf))
    log_prior = torch.from_numpy(np.log(prior)).float()
    shift_bias(model, -tau * (log_prior - log_prior.mean()))  # centred: softmax ignores a common offset

    val = ImageDataset(ds.subset(split.ids("val")), card.input_size, card.mean, card.std)
    logits, ys = predict_logits(model, DataLoader(val, batch_size=64), torch.device("cpu"))
    m = classification_metrics(ys, torch.softmax(torch.from_numpy(logits), dim=1).numpy(), list(ds.classes))
    summary = {k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_auc")}
    record = {"tau": tau, "prior": [round(float(q), 6) for q in prior], "prior_split": "train",
              "source": str(ckpt), "source_metrics": card.metrics}
    adjusted = replace(card, training={**card.training, "logit_adjustment": record},
                       metrics={**summary, "split": "val", "n": m["n"]}, calibration={})
    save_checkpoint(dest, model, adjusted)
    title = f"{card.arch} ({card.training.get('method', '?')}, logit-adjusted tau {tau:g})"
    return {**m, "tau": tau, "calibration": calibrate(dest, adjusted, logits, ys, "val", title)}
