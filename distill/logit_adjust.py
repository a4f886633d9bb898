"""Post-hoc logit adjustment: move a trained classifier's decisions to the balanced prior, folded into its bias.

Cross-entropy weighted by ``(N / N_c) ** p`` trains a model whose softmax carries the train prior to the power
``1 - p`` (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021): ``p = 1`` (the official weights)
leaves none, ``p = 0.5`` half of it. Subtracting ``tau * log(prior)`` from the logits with ``tau = 1 - p`` removes
what is left, which is what balanced accuracy and per-class recall reward. The shift is a constant per class, so it
goes into the last linear layer's bias: the adjusted checkpoint has the same architecture, exports unchanged and
costs nothing at run time; its features (what distillation and int8 calibration see) do not change.

An operating point is the same kind of shift on one class only: the smallest offset on, say, melanoma's logit that
gives that class a chosen recall on the val split, paid for with the other classes' recall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from distill.data import ImageDataset, LabeledImages, Split, load_labeled_images, load_split
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


def recall_offset(logits: np.ndarray, labels: np.ndarray, cls: int, min_recall: float) -> float:
    """The smallest offset (>= 0) to add to class ``cls``'s logit so that at least ``min_recall`` of the rows labelled
    ``cls`` predict it.

    A row of ``cls`` is called ``cls`` once the offset exceeds its margin (best other logit minus its own), so the
    answer is the ``ceil(min_recall * n)``-th smallest margin, plus a hair so that a tie goes to ``cls``.
    """
    if not 0 < min_recall <= 1:
        raise InputError(f"--min-recall: a recall must be in (0, 1], got {min_recall}")
    own = logits[labels == cls]
    if len(own) == 0:
        raise InputError(f"class index {cls}: no val images, so its recall cannot be set")
    margins = np.sort(np.delete(own, cls, axis=1).max(axis=1) - own[:, cls])
    # - 1e-9: 0.7 * 10 is 7.000000000000001 in floats, and ceil must still say 7 rows
    needed = float(margins[math.ceil(min_recall * len(margins) - 1e-9) - 1])
    return max(0.0, needed + 1e-4)


def adjust_checkpoint(checkpoint: str | Path, data_root: str | Path, *, out: str | Path,
                      tau: float | None = None, split_file: str | Path | None = None) -> dict:
    """Write ``out``: ``checkpoint`` with ``-tau * log(train prior)`` folded into its bias (``tau`` default:
    :func:`balancing_tau`), its card's metrics re-measured on the val split and its temperature refitted there.
    Returns the new val metrics."""
    src = _Source.load(checkpoint, data_root, out, split_file)
    if "logit_adjustment" in src.card.training:
        raise InputError(f"{src.path}: already logit-adjusted (tau {src.card.training['logit_adjustment']['tau']}); "
                         "adjust the unadjusted checkpoint instead")
    tau = balancing_tau(src.card) if tau is None else float(tau)
    if tau == 0:
        raise InputError(f"{src.path}: trained with loss.class_weight_power 1 (balanced already), so tau = 0 "
                         "changes nothing; pass --tau to shift it anyway")
    prior = class_prior([r.label for r in src.ds.subset(src.split.ids("train"))], src.card.num_classes,
                        where=str(src.split_file))
    log_prior = torch.from_numpy(np.log(prior)).float()
    record = {"tau": tau, "prior": [round(float(q), 6) for q in prior], "prior_split": "train"}
    m = src.save_shifted(-tau * (log_prior - log_prior.mean()),  # centred: softmax ignores a common offset
                         "logit_adjustment", record, f"logit-adjusted tau {tau:g}")
    return {**m, "tau": tau}


def set_operating_point(checkpoint: str | Path, data_root: str | Path, *, out: str | Path, label: str,
                        min_recall: float, split_file: str | Path | None = None) -> dict:
    """Write ``out``: ``checkpoint`` with the smallest offset on ``label``'s logit that brings that class's val recall
    to ``min_recall`` (:func:`recall_offset`) folded into its bias; metrics and temperature re-measured on val.

    The screening use of a melanoma classifier: buy sensitivity for one class with the other classes' recall. The
    point is chosen on the val split, never the test split. Returns the new val metrics."""
    src = _Source.load(checkpoint, data_root, out, split_file)
    if label not in src.card.labels:
        raise InputError(f"--min-recall: {label!r} is not one of the checkpoint's labels {list(src.card.labels)}")
    if "operating_point" in src.card.training:
        raise InputError(f"{src.path}: already has an operating point ({src.card.training['operating_point']}); "
                         "set it on the source checkpoint instead")
    cls = src.card.labels.index(label)
    logits, ys = src.val_logits()
    if not (ys == cls).any():
        raise InputError(f"{src.split_file}: the val split has no {label} images, so its recall cannot be set")
    offset = recall_offset(logits, ys, cls, min_recall)
    shift = torch.zeros(src.card.num_classes)
    shift[cls] = offset
    record = {"label": label, "min_recall": min_recall, "offset": round(offset, 6),
              "val_recall_before": float((logits[ys == cls].argmax(axis=1) == cls).mean())}
    m = src.save_shifted(shift, "operating_point", record, f"{label} recall >= {min_recall:g}",
                         logits=(logits + shift.numpy(), ys))
    return {**m, "operating_point": record}


@dataclass
class _Source:
    """A checkpoint with its dataset and split, whose last bias a post-hoc adjustment shifts."""

    path: Path
    dest: Path
    model: Classifier
    card: ModelCard
    ds: LabeledImages
    split: Split
    split_file: Path

    @classmethod
    def load(cls, checkpoint: str | Path, data_root: str | Path, out: str | Path,
             split_file: str | Path | None) -> _Source:
        ckpt, dest = Path(checkpoint), Path(out)
        if dest.resolve() == ckpt.resolve():
            raise InputError(f"{dest}: write the adjusted checkpoint to a new file (--out), not over its source")
        model, card = load_checkpoint(ckpt)
        ds = load_labeled_images(data_root)
        if list(ds.classes) != list(card.labels):
            raise InputError(f"{data_root}: classes {list(ds.classes)} are not the checkpoint's {card.labels}")
        sf = Path(split_file) if split_file else ckpt.parent / card.data.get("split_file", "split.json")
        return cls(ckpt, dest, model, card, ds, load_split(sf, ds), sf)

    def val_logits(self) -> tuple[np.ndarray, np.ndarray]:
        val = ImageDataset(self.ds.subset(self.split.ids("val")), self.card.input_size, self.card.mean,
                           self.card.std)
        return predict_logits(self.model, DataLoader(val, batch_size=64), torch.device("cpu"))

    def save_shifted(self, shift: torch.Tensor, key: str, record: dict, what: str, *,
                     logits: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
        """Shift the bias, re-measure the card's metrics on val, save to ``dest`` under ``training[key]`` (with the
        source's path and metrics) and refit the temperature; the val metrics and the calibration record.

        ``logits``: the shifted model's val logits and labels when the caller has them (the source's plus ``shift``,
        which is what the new bias gives), so the val images are not run through the model again."""
        shift_bias(self.model, shift)
        logits, ys = logits if logits is not None else self.val_logits()
        m = classification_metrics(ys, torch.softmax(torch.from_numpy(logits), dim=1).numpy(), list(self.ds.classes))
        provenance = {"source": str(self.path), "source_metrics": self.card.metrics}
        training = {**self.card.training, key: {**record, **provenance}}
        shifted = replace(self.card, training=training, calibration={},
                          metrics={**{k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_auc")},
                                   "split": "val", "n": m["n"]})
        save_checkpoint(self.dest, self.model, shifted)
        title = f"{self.card.arch} ({self.card.training.get('method', '?')}, {what})"
        return {**m, "calibration": calibrate(self.dest, shifted, logits, ys, "val", title)}
