"""The metrics every stage reports (distill.metrics), on hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distill.metrics import agreement, balanced_accuracy, class_recall, classification_metrics


def test_balanced_accuracy_leaves_out_a_class_with_no_images():
    y = np.array([0, 0, 0, 0, 2, 2])
    pred = np.array([0, 0, 1, 1, 2, 1])  # recall: class 0 2/4, class 1 no images, class 2 1/2
    assert np.allclose(class_recall(y, pred, 3), [0.5, np.nan, 0.5], equal_nan=True)
    assert balanced_accuracy(y, pred) == pytest.approx(0.5)  # not 1/3 (class 1 as 0) nor 2/3 (as 1)
    assert math.isnan(balanced_accuracy(np.array([], int), np.array([], int)))


def test_classification_metrics_uses_the_same_balanced_accuracy():
    y = np.array([0, 0, 0, 0, 2, 2])
    probs = np.eye(3)[[0, 0, 1, 1, 2, 1]]
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["balanced_accuracy"] == balanced_accuracy(y, probs.argmax(1))
    assert math.isnan(m["per_class"]["b"]["recall"]) and m["per_class"]["b"]["support"] == 0


def test_agreement_is_the_share_of_matching_predictions():
    assert agreement(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
