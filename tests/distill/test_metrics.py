"""The metrics every stage reports (distill.metrics), on hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distill.metrics import (
    agreement,
    balanced_accuracy,
    balanced_accuracy_bootstrap,
    class_recall,
    classification_metrics,
    paired_bacc_change,
    percentile_interval,
)


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


def _predictions(n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n, p=[0.7, 0.2, 0.06, 0.04])
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, 4, n))
    return y, pred


def test_balanced_accuracy_interval_brackets_the_estimate_and_resamples_lesions():
    y, pred = _predictions()
    point = 100 * balanced_accuracy(y, pred)
    low, high = percentile_interval(balanced_accuracy_bootstrap(y, pred))
    assert low < point < high and high - low > 5  # 12-21 images in the small classes: several points wide
    # every image seen 4 times (4 views of one lesion): resampling lesions gives exactly the per-image interval of
    # the untiled set, resampling images pretends there were 4x as many and is too narrow
    tiled_y, tiled_pred, lesion = np.repeat(y, 4), np.repeat(pred, 4), np.repeat(np.arange(len(y)), 4)
    by_lesion = percentile_interval(balanced_accuracy_bootstrap(tiled_y, tiled_pred, groups=lesion))
    by_image = percentile_interval(balanced_accuracy_bootstrap(tiled_y, tiled_pred))
    assert by_lesion == pytest.approx([low, high])
    assert by_image[1] - by_image[0] < 0.7 * (high - low)


def test_paired_change_is_far_narrower_than_either_interval():
    y, pred = _predictions()
    better = pred.copy()
    wrong = np.flatnonzero(pred != y)[:10]
    better[wrong] = y[wrong]  # fixes 10 errors, changes nothing else
    ids = [f"img{i}" for i in range(len(y))]
    record = {"image": ids, "group": ids, "label": y.tolist()}
    a, b = {**record, "pred": better.tolist()}, {**record, "pred": pred.tolist()}
    c = paired_bacc_change(a, b)
    assert c["change_pt"] == pytest.approx(100 * (balanced_accuracy(y, better) - balanced_accuracy(y, pred)))
    assert 0 <= c["ci_pt"][0] <= c["change_pt"] <= c["ci_pt"][1]  # only fixes: the change cannot be negative
    single = percentile_interval(balanced_accuracy_bootstrap(y, pred))
    assert c["ci_pt"][1] - c["ci_pt"][0] < 0.5 * (single[1] - single[0])
    assert paired_bacc_change(b, b) == {"change_pt": 0.0, "ci_pt": [0.0, 0.0], "n": len(y)}
    with pytest.raises(ValueError, match="not of the same images"):
        paired_bacc_change(a, {**b, "image": ids[::-1]})
