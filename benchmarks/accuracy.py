"""Accuracy of each artifact on labelled images, with preprocessing strictly from its sidecar.

Every artifact gets its input from its own ``preprocessing.json`` (``Preprocessing.pixels`` then
``model_input``, ``logits`` to dequantize), the exact contract the Android app implements, so a contract
bug shows up here as lost accuracy rather than hiding behind a benchmark-only preprocessing path.
Top-1 agreement and softmax MAE are against the PyTorch fp32 reference on the same images, both at T = 1; the
expected calibration error is given at T = 1 and at the sidecar's temperature (what the app shows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.runners import Runner
from distill.metrics import agreement, balanced_accuracy, class_recall
from models.calibration import assess
from models.errors import InputError
from models.preprocessing import Preprocessing


@dataclass(frozen=True)
class EvalSet:
    root: Path
    paths: tuple[Path, ...]
    class_names: tuple[str, ...]  # per image
    split: str | None

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for c in self.class_names:
            counts[c] = counts.get(c, 0) + 1
        return {"root": str(self.root), "split": self.split, "images": len(self.paths), "counts": counts}


def load_eval_set(root: str | Path, split: str | None = None, split_file: str | Path | None = None,
                  max_images: int | None = None) -> EvalSet:
    """Read a labelled dataset (ISIC 2019 layout or class folders), optionally one split of it.

    ``max_images`` keeps a class-stratified prefix (every k-th image in a stable order) so a quick run still
    sees every class.
    """
    from distill.data import load_labeled_images, load_split
    from distill.data.check import require_readable_images

    ds = load_labeled_images(root)
    records = ds.records
    if split is not None:
        if split_file is None:
            raise InputError(f"--split {split} needs a split file (--split-file, or a checkpoint whose card names one)")
        ids = set(load_split(split_file, ds).ids(split))
        records = [r for r in records if r.image_id in ids]
        if not records:
            raise InputError(f"{split_file}: the {split} split is empty")
    records = sorted(records, key=lambda r: r.image_id)
    if max_images is not None and max_images < len(records):
        if max_images < 1:
            raise InputError(f"--max-images must be >= 1, got {max_images}")
        step = len(records) / max_images
        records = [records[int(i * step)] for i in range(max_images)]
    require_readable_images(records, root, progress=False)  # bad data is a one-line error before any timing
    return EvalSet(Path(root), tuple(r.path for r in records), tuple(ds.classes[r.label] for r in records), split)


class PixelCache:
    """Decoded, resized pixels per (image, size, resize method): shared by artifacts with the same geometry."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Path, int, str], np.ndarray] = {}

    def get(self, pre: Preprocessing, path: Path) -> np.ndarray:
        key = (path, pre.input_size, pre.resize)
        if key not in self._cache:
            self._cache[key] = pre.pixels(path)
        return self._cache[key]


def predict(runner: Runner, pre: Preprocessing, evalset: EvalSet, cache: PixelCache) -> np.ndarray:
    """Class probabilities (N x C) at T = 1 of one loaded runner over the evaluation set, batch 1 as on the phone."""
    runner.activate()
    out = [pre.probabilities(np.asarray(runner.run(pre.model_input(cache.get(pre, p)))), calibrated=False)[0]
           for p in evalset.paths]
    return np.stack(out)


def label_indices(evalset: EvalSet, labels: tuple[str, ...], source: str) -> np.ndarray:
    missing = sorted(set(evalset.class_names) - set(labels))
    if missing:
        raise InputError(f"{source}: dataset class(es) {', '.join(missing)} are not among the model's labels "
                         f"({', '.join(labels)})")
    return np.array([labels.index(c) for c in evalset.class_names])


def metrics(probs: np.ndarray, evalset: EvalSet, labels: tuple[str, ...], source: str,
            ref_probs: np.ndarray | None = None, ref_labels: tuple[str, ...] | None = None, *,
            temperature: float = 1.0) -> dict[str, Any]:
    """accuracy, balanced accuracy (mean recall over classes present), per-class recall, agreement with
    the reference (top-1 by label name, so label order may differ), softmax MAE, and the calibration at T = 1 and at
    ``temperature`` with its reliability bins; ``probs`` and ``ref_probs`` are class probabilities at T = 1
    (:func:`predict`)."""
    y = label_indices(evalset, labels, source)
    pred = probs.argmax(axis=1)
    recall = class_recall(y, pred, len(labels))
    out: dict[str, Any] = {"n": int(len(y)), "accuracy": float((pred == y).mean()),
                           "balanced_accuracy": balanced_accuracy(y, pred),
                           "per_class_recall": {name: None if np.isnan(r) else float(r)
                                                for name, r in zip(labels, recall)},
                           "per_class_n": {name: int((y == i).sum()) for i, name in enumerate(labels)},
                           "agreement_with_torch": None, "softmax_mae_vs_torch": None,
                           "calibration": assess(probs, y, temperature, kind="probabilities").to_json(diagrams=True)}
    if ref_probs is not None and ref_labels is not None:
        if set(ref_labels) != set(labels):
            raise InputError(f"{source}: labels {labels} differ from the PyTorch reference's {ref_labels}")
        order = [ref_labels.index(name) for name in labels]  # reference columns in this artifact's order
        ref = ref_probs[:, order]
        out["agreement_with_torch"] = agreement(ref.argmax(axis=1), pred)
        out["softmax_mae_vs_torch"] = float(np.abs(ref - probs).mean())
    return out
