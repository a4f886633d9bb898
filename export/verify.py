"""Run each artifact in its real runtime on validation images and compare it with PyTorch fp32.

The comparison is on identical preprocessed inputs (the artifact's own sidecar decides layout and integer
quantisation of the input, and dequantisation of the output), so any difference is the conversion's. Each artifact's
expected calibration error is given at T = 1 and at its contract's temperature; the gate never looks at it (a
temperature changes no argmax).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distill.metrics import agreement, balanced_accuracy, balanced_accuracy_bootstrap, percentile_interval
from export.calibration import ImageSet
from export.report import Verification
from export.runtimes import RUNTIMES, Run
from models.calibration import assess
from models.preprocessing import Preprocessing, softmax

RELIABILITY_PNG = "reliability.png"


@dataclass(frozen=True)
class Gate:
    """Pass/fail rule for every verified artifact (fp32 passes it trivially; it exists for int8 and fp16).

    ``max_bacc_drop`` is in percentage points of balanced accuracy below the PyTorch fp32 reference;
    ``min_agreement`` is the fraction of images whose top-1 class matches PyTorch fp32.
    """

    max_bacc_drop: float = 1.0
    min_agreement: float = 0.97
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"gate agreement must be a fraction in [0, 1], got {self.min_agreement}")
        if self.max_bacc_drop < 0:
            raise ValueError(f"gate balanced-accuracy drop must be >= 0 points, got {self.max_bacc_drop}")

    def check(self, v: Verification, reference_bacc: float) -> list[str]:
        """Reasons the artifact fails the gate (empty when it passes)."""
        reasons = []
        if v.agreement is not None and v.agreement < self.min_agreement:
            ties = (f" ({100 * v.tied_top1:.1f}% of images tie for the top class on the output grid)"
                    if v.tied_top1 else "")
            reasons.append(f"top-1 agreement with PyTorch fp32 {100 * v.agreement:.1f}% < "
                           f"{100 * self.min_agreement:.1f}%{ties}")
        if v.balanced_accuracy is not None:
            drop = 100 * (reference_bacc - v.balanced_accuracy)
            if drop > self.max_bacc_drop:
                ci = (f"; 95% interval of the change {v.bacc_change_ci[0]:+.1f} to {v.bacc_change_ci[1]:+.1f} pt"
                      if v.bacc_change_ci else "")
                reasons.append(f"balanced accuracy {100 * v.balanced_accuracy:.1f}% is {drop:.1f} pt below fp32 "
                               f"{100 * reference_bacc:.1f}% (limit {self.max_bacc_drop:.1f} pt{ci})")
        return reasons

    def apply(self, v: Verification, reference_bacc: float | None) -> Verification:
        """Set ``v``'s status: failed with the reasons; with the gate off, "ungated" instead of failed (the
        reasons are still given, so ``--no-gate`` never labels a failing artifact "passed")."""
        reasons = self.check(v, reference_bacc) if reference_bacc is not None else []
        if reasons:
            v.status = "failed" if self.enabled else "ungated"
            v.reason = "; ".join(reasons) if self.enabled else "gate off; would fail: " + "; ".join(reasons)
        return v

    def to_json(self) -> dict:
        return {"enabled": self.enabled, "max_bacc_drop_pt": self.max_bacc_drop, "min_agreement": self.min_agreement}


def reference_logits(model: torch.nn.Module, images: ImageSet, batch: int = 32) -> np.ndarray:
    """PyTorch fp32 logits on the NCHW float inputs every artifact is compared against."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = np.ascontiguousarray(images.rows(i, i + batch).transpose(0, 3, 1, 2))
            out.append(model(torch.from_numpy(x)).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def scores(logits: np.ndarray, labels: np.ndarray) -> dict:
    pred = logits.argmax(1)
    return {"accuracy": float((pred == labels).mean()), "balanced_accuracy": balanced_accuracy(labels, pred),
            "n_images": int(len(labels))}


def run_artifact(run: Run, pre: Preprocessing, images: ImageSet) -> np.ndarray:
    """Dequantized outputs (logits or probabilities, as ``pre.output_kind`` says) of every image, fed one at a time
    (the artifacts have a static batch of 1)."""
    return np.concatenate([pre.values(np.asarray(run(images.model_input(pre, i, i + 1))))
                           for i in range(len(images))]).reshape(len(images), -1)


def bacc_change_interval(pred: np.ndarray, ref_pred: np.ndarray, labels: np.ndarray,
                         groups: np.ndarray | None = None, resamples: int = 2000, level: float = 0.95,
                         seed: int = 0) -> list[float]:
    """Percentile interval (points) of ``bacc(pred) - bacc(ref_pred)`` under a paired cluster bootstrap of
    ``groups`` (lesions) within each class (:func:`distill.metrics.balanced_accuracy_bootstrap`)."""
    replicates = balanced_accuracy_bootstrap(labels, pred, ref_pred=ref_pred, groups=groups, resamples=resamples,
                                             seed=seed)
    return percentile_interval(replicates, level)


def compare(values: np.ndarray, ref: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None,
            output_kind: str = "logits", temperature: float = 1.0) -> Verification:
    """An artifact's outputs (``N x C`` logits or probabilities, per ``output_kind``) against the PyTorch fp32
    logits ``ref``; argmax ties go to the lowest class index, as in the app. Fidelity is judged at T = 1 (the
    outputs themselves); ``temperature`` only moves the calibration error."""
    probs = values.astype(np.float64) if output_kind == "probabilities" else softmax(values.astype(np.float64))
    d_soft = np.abs(probs - softmax(ref.astype(np.float64)))
    cal = assess(values, labels, temperature, kind=output_kind) if len(labels) else None
    return Verification(
        status="passed",
        agreement=agreement(values.argmax(1), ref.argmax(1)),
        tied_top1=float(((values == values.max(1, keepdims=True)).sum(1) > 1).mean()),
        max_abs_dsoftmax=float(d_soft.max()),
        mean_l1_dsoftmax=float(d_soft.sum(1).mean()),
        max_abs_dlogit=float(np.abs(values - ref).max()) if output_kind == "logits" else None,
        bacc_change_ci=bacc_change_interval(values.argmax(1), ref.argmax(1), labels, groups) if len(labels) else None,
        ece_before=cal.before.ece if cal else None,
        ece_after=cal.after.ece if cal else None,
        **scores(values, labels),
    )


def reference_calibration(ref: np.ndarray, images: ImageSet, temperature: float, fitted: bool, out_dir: Path,
                          title: str) -> dict:
    """ECE of the PyTorch fp32 logits at T = 1 and at the checkpoint's ``temperature`` on the verification inputs,
    and their reliability diagram, ``out_dir / RELIABILITY_PNG``. ``fitted``: the checkpoint has a temperature of
    its own (else T = 1 and one curve is drawn)."""
    from distill.plots import plot_reliability  # matplotlib only once there are figures to draw

    cal = assess(ref, images.labels, temperature)
    curves = [("T = 1", cal.before)]
    if fitted:
        curves.append((f"T = {temperature:.2f} (the checkpoint's)", cal.after))
    plot_reliability([(f"PyTorch fp32, {len(images)} val inputs ({images.orientations} orientations)", curves)],
                     out_dir / RELIABILITY_PNG, title)
    return {**cal.to_json(), "fitted": fitted, "reliability": RELIABILITY_PNG}


def verify_artifact(path: Path, runtime: str, pre: Preprocessing, images: ImageSet | None, ref: np.ndarray | None,
                    reference_bacc: float | None, gate: Gate, threads: int = 1) -> Verification:
    """Run one artifact on the validation images, loaded by its runtime's one loader (``export.runtimes``), and
    apply the gate."""
    if runtime not in RUNTIMES:
        raise ValueError(f"no loader for runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    if images is None or ref is None or not len(images):
        return Verification(status="not_run", reason="no validation images (pass --val ROOT)")
    run = RUNTIMES[runtime].load(path, threads=threads).run
    return gate.apply(compare(run_artifact(run, pre, images), ref, images.labels, images.groups, pre.output_kind,
                              pre.temperature),
                      reference_bacc)
