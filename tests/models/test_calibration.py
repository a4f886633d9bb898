"""Temperature scaling, ECE and reliability bins (models.calibration), the contract's temperature
(models.preprocessing) and the model card's calibration record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import InputError, ModelCard
from models.calibration import (
    T_MAX,
    T_MIN,
    Calibration,
    assess,
    expected_calibration_error,
    fit,
    fit_temperature,
    nll,
    reliability,
)
from models.preprocessing import Preprocessing, softmax, tempered


def _tempered_sample(true_t: float, n: int = 20000, k: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and labels drawn from softmax(z / true_t): the NLL-optimal temperature is true_t."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, (n, k))
    p = softmax(z / true_t)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return z, np.minimum(y, k - 1)


@pytest.mark.parametrize("true_t", [0.6, 1.0, 2.5])
def test_fit_recovers_the_temperature_labels_were_drawn_at(true_t: float) -> None:
    z, y = _tempered_sample(true_t)
    t = fit_temperature(z, y)
    assert t == pytest.approx(true_t, rel=0.05)
    assert nll(z, y, t) <= min(nll(z, y, true_t), nll(z, y, 1.0)) + 1e-9  # the fit is the sample's minimum
    assert fit_temperature(z, y) == t  # deterministic


def test_a_calibrated_set_has_a_small_ece_an_overconfident_one_a_large_one() -> None:
    z, y = _tempered_sample(1.0)
    assert expected_calibration_error(softmax(z), y) < 0.02
    z, y = _tempered_sample(3.0)  # the model's own softmax(z) is far too sure of itself
    before = expected_calibration_error(softmax(z), y)
    c = fit(z, y)
    assert before > 0.15 and c.before.ece == pytest.approx(before)
    assert c.after.ece < 0.02 and c.temperature == pytest.approx(3.0, rel=0.05)


def test_a_temperature_never_changes_the_argmax() -> None:
    z, _ = _tempered_sample(2.0, n=2000)
    for t in (T_MIN, 0.5, 1.7, T_MAX):
        assert np.array_equal(tempered(z, t).argmax(1), z.argmax(1))
        probs = softmax(z)
        assert np.array_equal(tempered(probs, t, "probabilities").argmax(1), z.argmax(1))


def test_tempering_probabilities_equals_tempering_logits() -> None:
    z, _ = _tempered_sample(1.0, n=50)
    np.testing.assert_allclose(tempered(softmax(z), 1.8, "probabilities"), softmax(z / 1.8), atol=1e-12)
    grid = np.array([[0.0, 0.75, 0.25]])  # an int8 output grid: zeros stay zero, the rest is renormalised
    root = np.sqrt(grid)
    np.testing.assert_allclose(tempered(grid, 2.0, "probabilities"), root / root.sum())
    assert np.array_equal(tempered(grid, 1.0, "probabilities"), grid)


def test_reliability_bins_by_hand() -> None:
    probs = np.array([[0.95, 0.05], [0.92, 0.08], [0.55, 0.45], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    r = reliability(probs, labels, bins=10)
    assert r.count == (0, 0, 0, 0, 0, 1, 1, 0, 0, 2) and r.n == 4
    assert r.confidence[9] == pytest.approx(0.935) and r.accuracy[9] == 0.5 and r.accuracy[0] is None
    # ECE = (1 |1 - .55| + 1 |1 - .7| + 2 |.5 - .935|) / 4
    assert r.ece == pytest.approx((0.45 + 0.3 + 2 * 0.435) / 4)
    assert reliability(np.array([[1.0, 0.0]]), np.array([0]), bins=15).count[-1] == 1  # 1.0 is in the top bin


def test_calibration_json_round_trip_and_bad_input() -> None:
    z, y = _tempered_sample(2.0, n=500)
    c = assess(z, y, 2.0)
    d = json.loads(json.dumps(c.to_json(diagrams=True)))
    assert Calibration.from_json(d) == c
    assert set(c.to_json()) == {"temperature", "ece_before", "ece_after", "n", "bins"}
    with pytest.raises(ValueError, match="at least one"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        assess(np.zeros((2, 3)), np.array([0, 3]), 1.0)
    with pytest.raises(ValueError, match="kind must be"):
        assess(np.zeros((2, 3)), np.array([0, 1]), 1.0, kind="scores")


def test_a_separable_set_stops_at_the_edge_of_the_search() -> None:
    z = np.array([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(z, np.array([0, 1])) == pytest.approx(T_MIN, rel=1e-5)
    assert fit_temperature(z, np.array([1, 0])) == pytest.approx(T_MAX, rel=1e-5)


def _pre(**kw) -> Preprocessing:
    return Preprocessing(input_size=8, mean=(0.5,) * 3, std=(0.5,) * 3, labels=("a", "b", "c"), **kw)


def test_the_contract_carries_the_temperature_and_old_contracts_load_as_one() -> None:
    pre = _pre(temperature=1.6)
    assert Preprocessing.from_json(json.loads(json.dumps(pre.to_json()))).temperature == 1.6
    old = pre.to_json()
    del old["temperature"]
    assert Preprocessing.from_json(old).temperature == 1.0
    logits = np.array([[2.0, -1.0, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(pre.probabilities(logits), softmax(logits / 1.6), atol=1e-7)
    np.testing.assert_allclose(pre.probabilities(logits, calibrated=False), softmax(logits), atol=1e-7)
    for bad in (0, -1.0, float("nan"), "2", None, True):
        with pytest.raises(InputError, match=rf"p.json: temperature must be a finite number > 0, got {bad!r}"):
            Preprocessing.from_json({**pre.to_json(), "temperature": bad}, "p.json")


def test_the_model_card_records_a_temperature_and_old_cards_mean_one() -> None:
    card = ModelCard(arch="mobilenet_v2", num_classes=3, labels=["a", "b", "c"], input_size=8, mean=[0.5] * 3,
                     std=[0.5] * 3)
    assert card.temperature == 1.0 and card.preprocessing().temperature == 1.0
    calibrated = ModelCard.from_json({**card.to_json(), "calibration": {"temperature": 1.4, "ece_before": 0.1}})
    assert calibrated.temperature == 1.4 and calibrated.preprocessing(input_size=16).temperature == 1.4
    with pytest.raises(InputError, match="calibration.temperature must be a finite number > 0"):
        ModelCard.from_json({**card.to_json(), "calibration": {"temperature": -2}})
