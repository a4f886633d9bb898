"""Classification metrics as the dermoscopy literature reports them (numpy only), defined once for every stage:
distillation reports, export verification (``export.verify``) and the benchmark harness (``benchmarks.accuracy``).

Balanced accuracy = mean per-class recall over the classes that have images (the ISIC challenge metric). A class
with no images has no recall: it is left out of the mean rather than counted as 0 or 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``K x K`` counts, rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def class_recall(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of classes ``0 .. num_classes - 1``; NaN for a class with no images."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(axis=1)
    return np.divide(np.diag(cm).astype(np.float64), support, out=np.full(num_classes, np.nan), where=support > 0)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``; NaN when there are no images."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if not len(y_true):
        return float("nan")
    recall = class_recall(y_true, y_pred, int(max(y_true.max(), y_pred.max())) + 1)
    return float(np.nanmean(recall))


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of images on which two predictions (class indices) name the same class."""
    return float(np.mean(np.asarray(pred_a) == np.asarray(pred_b)))


def balanced_accuracy_bootstrap(y_true: np.ndarray, pred: np.ndarray, *, ref_pred: np.ndarray | None = None,
                                groups: np.ndarray | None = None, resamples: int = 2000,
                                seed: int = 0) -> np.ndarray:
    """Bootstrap replicates (points) of ``bacc(pred)``, or of ``bacc(pred) - bacc(ref_pred)`` with ``ref_pred``.

    Within each class, ``groups`` (lesions; default: every image its own) are resampled with replacement and a
    class's recall is taken over the images of the drawn groups, so every class keeps roughly its count and
    near-duplicate images of one lesion move together. With ``ref_pred`` the bootstrap is paired: both predictions
    see the same resample, so only the images on which they differ move the replicates.
    """
    rng = np.random.default_rng(seed)
    y, pred = np.asarray(y_true), np.asarray(pred)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    total = np.zeros(resamples)
    classes = np.unique(y)
    for c in classes:
        rows = np.flatnonzero(y == c)
        hit = (pred[rows] == c).astype(np.float64)
        if ref_pred is not None:
            hit -= np.asarray(ref_pred)[rows] == c
        _, cluster = np.unique(groups[rows], return_inverse=True)
        per_group_hits = np.bincount(cluster, weights=hit)
        per_group_size = np.bincount(cluster).astype(np.float64)
        drawn = rng.integers(0, len(per_group_size), size=(resamples, len(per_group_size)))
        total += per_group_hits[drawn].sum(1) / per_group_size[drawn].sum(1)
    return total * 100 / len(classes)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> list[float]:
    """The central ``level`` percentile interval of bootstrap replicates."""
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(replicates, tail)), float(np.percentile(replicates, 100 - tail))]


def balanced_accuracy_ci95(y_true: np.ndarray, pred: np.ndarray, groups: Sequence) -> list[float]:
    """95 % interval of ``bacc(pred)`` as fractions, from 2,000 resamples of the lesions (``groups``) within each
    class: the spread that another split of this size would show."""
    low, high = percentile_interval(balanced_accuracy_bootstrap(y_true, pred, groups=np.asarray(groups)))
    return [low / 100, high / 100]


def paired_bacc_change(a: dict, b: dict, *, level: float = 0.95) -> dict:
    """``bacc(a) - bacc(b)`` in points and its paired lesion-bootstrap interval, from the ``predictions`` of two
    evaluations of the same images (``ssdkd-distill evaluate --out``); ``ValueError`` if the images differ."""
    if a["image"] != b["image"] or a["label"] != b["label"]:
        raise ValueError("the two evaluations are not of the same images (same split file and split?)")
    y, pa, pb = (np.asarray(v) for v in (a["label"], a["pred"], b["pred"]))
    replicates = balanced_accuracy_bootstrap(y, pa, ref_pred=pb, groups=np.asarray(a["group"]))
    return {"change_pt": 100 * (balanced_accuracy(y, pa) - balanced_accuracy(y, pb)),
            "ci_pt": percentile_interval(replicates, level), "n": len(y)}


def binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) statistic with average ranks for ties; NaN if one class is absent."""
    pos = positive.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, per-class precision/recall/F1, macro one-vs-rest AUC, confusion matrix.

    probs: ``N x K`` class probabilities (softmax outputs).
    """
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(labels)
    pred = probs.argmax(axis=1)
    cm = confusion_matrix(y, pred, k)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    recall = class_recall(y, pred, k)
    precision = np.divide(np.diag(cm).astype(np.float64), predicted, out=np.zeros(k), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    aucs = np.array([binary_auc(probs[:, c], y == c) for c in range(k)])
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "balanced_accuracy": balanced_accuracy(y, pred),
        "macro_auc": float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan"),
        "per_class": {
            name: {"precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
                   "auc": float(aucs[c]), "support": int(support[c])}
            for c, name in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
        "labels": list(labels),
    }
