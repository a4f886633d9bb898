"""Temperature scaling (Guo et al., 2017), the expected calibration error and reliability-diagram data (numpy only,
so distill, export and the benchmarks all use this one definition).

One scalar ``T > 0`` per model, fitted on held-out logits, makes ``softmax(logits / T)`` mean what it says.
Dividing every logit of an image by the same ``T`` keeps their order, so the argmax -- accuracy, top-1 agreement,
the export gate -- never changes; only the confidence does.

ECE is the standard one: ``bins`` equal-width bins of the top-1 probability on (0, 1] (15 by default), and
``sum_b n_b / n * |accuracy_b - mean confidence_b|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.preprocessing import OUTPUT_KINDS, tempered

ECE_BINS = 15
# The search range of T. A fitted T at an edge means the held-out set is (nearly) separable or the model is
# (nearly) constant: the edge is returned rather than a temperature that grows without bound.
T_MIN, T_MAX = 0.05, 20.0
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_LOG_T_TOLERANCE = 1e-7


def _checked(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    y = np.asarray(labels)
    if v.ndim != 2 or y.ndim != 1 or len(v) != len(y):
        raise ValueError(f"expected N x K scores and N labels, got shapes {v.shape} and {y.shape}")
    if not len(v):
        raise ValueError("calibration needs at least one labelled image, got none")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= v.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {v.shape[1]}), got {y.min()}..{y.max()}")
    if not np.isfinite(v).all():
        raise ValueError("scores contain NaN or infinity")
    return v, y


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z, y = _checked(logits, labels)
    z = z / temperature
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in ``[T_MIN, T_MAX]`` that minimises the mean NLL of ``labels`` under ``softmax(logits / T)``.

    The NLL is convex in ``1 / T`` (a log-sum-exp of terms linear in ``1 / T``, minus a linear term), so it has one
    minimum along ``log T`` and a golden-section search there finds it, deterministically, with no step size to tune.

    The NLL is unweighted although training weights its cross-entropy by class: the temperature is judged by the
    confidence a reader sees on images as they come (ECE over the held-out images), and class weights would fit it
    to another class mix than the one it is judged on.
    """
    z, y = _checked(logits, labels)
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(z, y, math.exp(a)), nll(z, y, math.exp(b))
    while hi - lo > _LOG_T_TOLERANCE:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(z, y, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(z, y, math.exp(b))
    return math.exp((lo + hi) / 2.0)


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data: per equal-width bin of top-1 probability, its image count, mean top-1 probability
    and accuracy (None for an empty bin)."""

    count: tuple[int, ...]
    confidence: tuple[float | None, ...]
    accuracy: tuple[float | None, ...]

    @property
    def bins(self) -> int:
        return len(self.count)

    @property
    def n(self) -> int:
        return int(sum(self.count))

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.bins + 1)

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean of ``|accuracy - confidence|`` over the bins."""
        gaps = [c * abs(a - p) for c, p, a in zip(self.count, self.confidence, self.accuracy) if c]
        return float(sum(gaps) / self.n)

    def to_json(self) -> dict:
        return {"count": list(self.count), "confidence": list(self.confidence), "accuracy": list(self.accuracy)}

    @classmethod
    def from_json(cls, d: dict) -> Reliability:
        return cls(tuple(d["count"]), tuple(d["confidence"]), tuple(d["accuracy"]))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Bin ``N x K`` class probabilities by their top-1 probability into ``bins`` equal-width bins on (0, 1]
    (bin ``i`` is ``(i / bins, (i + 1) / bins]``) and record each bin's count, mean confidence and accuracy."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    p, y = _checked(probs, labels)
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    hit_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    return Reliability(
        tuple(int(c) for c in count),
        tuple(float(s / c) if c else None for s, c in zip(conf_sum, count)),
        tuple(float(s / c) if c else None for s, c in zip(hit_sum, count)),
    )


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    return reliability(probs, labels, bins).ece


@dataclass(frozen=True)
class Calibration:
    """Calibration of one model's outputs on one labelled set: at T = 1 (``before``) and at ``temperature``."""

    temperature: float
    before: Reliability
    after: Reliability

    def to_json(self, *, diagrams: bool = False) -> dict:
        """``{"temperature", "ece_before", "ece_after", "n", "bins"}``, plus the reliability bins if ``diagrams``."""
        d = {"temperature": self.temperature, "ece_before": self.before.ece, "ece_after": self.after.ece,
             "n": self.before.n, "bins": self.before.bins}
        if diagrams:
            d |= {"reliability_before": self.before.to_json(), "reliability_after": self.after.to_json()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> Calibration:
        """Back from ``to_json(diagrams=True)``."""
        return cls(float(d["temperature"]), Reliability.from_json(d["reliability_before"]),
                   Reliability.from_json(d["reliability_after"]))


def assess(values: np.ndarray, labels: np.ndarray, temperature: float, *, kind: str = "logits",
           bins: int = ECE_BINS) -> Calibration:
    """ECE and reliability bins of model outputs (``kind``: logits, or the model's own probabilities) at T = 1 and
    at ``temperature``."""
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")
    v, y = _checked(values, labels)
    return Calibration(float(temperature), reliability(tempered(v, 1.0, kind), y, bins),
                       reliability(tempered(v, temperature, kind), y, bins))


def fit(logits: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Calibration:
    """Fit a temperature on held-out ``logits`` and ``labels`` and assess it on the same images."""
    return assess(logits, labels, fit_temperature(logits, labels), bins=bins)
