"""What every target module receives: the model, its card, the base preprocessing and the calibration images, and
what its artifacts are verified against.

Each target module (named by its row of :data:`export.formats.FORMATS`) exposes

- ``build(job, spec) -> Preprocessing``: write ``job.out_dir / spec.file`` atomically and return the artifact's
  preprocessing contract (layout, dtypes, scales) for its sidecar;
- ``verify(job, spec, pre, reference) -> Verification``: check the written file, in its runtime where that runs
  here (:meth:`Reference.verify`).

Intermediate files (the float model that int8 is quantized from, onnx2tf's SavedModels) go to ``job.work_dir`` and
``job.cache`` so sibling artifacts reuse them instead of converting twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.calibration import ImageSet
from export.formats import DEFAULT_TFLITE_ROUTE
from export.report import Verification
from export.verify import Gate, verify_artifact
from export.weight_rounding import INT8_QMAX, int8_ready
from models.checkpoint import ModelCard
from models.errors import InputError
from models.preprocessing import Preprocessing


def int8_weights(rounding_fixes: bool) -> dict[str, bool]:
    """What the report and the int8 metadata record about the int8 weights. One switch sets both fixes (see
    :meth:`Job.int8_source`); both are recorded so that a reader sees everything it turned off."""
    return {"gptq_rounding": rounding_fixes, "bias_correction": rounding_fixes}


@dataclass(kw_only=True)
class Job:
    model: torch.nn.Module
    card: ModelCard
    pre: Preprocessing  # NCHW float32 at the export size, labels from the card
    out_dir: Path
    work_dir: Path
    calib: ImageSet | None = None
    threads: int = 2
    quiet: bool = True
    tflite_route: str = DEFAULT_TFLITE_ROUTE
    dynamic_batch: bool = False
    onnx_int8: str = "portable"  # a key of export.onnx_export.ONNX_INT8_SCHEMES
    rounding_fixes: bool = True  # GPTQ rounding and bias correction of the int8 weights, together
    cache: dict[str, Any] = field(default_factory=dict)

    def need_calib(self, what: str) -> ImageSet:
        if self.calib is None:
            raise InputError(f"{what} needs calibration images: pass --calib ROOT")
        return self.calib

    def int8_source(self, qmax: int = INT8_QMAX) -> torch.nn.Module:
        """The float model an int8 artifact whose weights have ``qmax`` steps a side is quantized from: the model
        itself when ``rounding_fixes`` is off (the converter rounds its weights to nearest), else
        :func:`export.weight_rounding.int8_ready` (weights GPTQ-rounded onto that grid, biases corrected on the
        calibration images). One per grid, shared by the artifacts that use it."""
        key = f"int8_source/{qmax}"
        if key not in self.cache:
            self.cache[key] = (int8_ready(self.model, self.need_calib("int8"), self.pre, qmax=qmax)
                               if self.rounding_fixes else self.model)
        return self.cache[key]


@dataclass(frozen=True, kw_only=True)
class Reference:
    """PyTorch fp32 on the validation images, which every artifact is compared with, and the gate it must pass;
    ``images`` is None when no validation images were given (artifacts are then not verified)."""

    images: ImageSet | None
    logits: np.ndarray | None
    balanced_accuracy: float | None
    gate: Gate

    def verify(self, path: Path, runtime: str, pre: Preprocessing) -> Verification:
        """Run ``path`` in ``runtime`` on the validation images and apply the gate."""
        return verify_artifact(path, runtime, pre, self.images, self.logits, self.balanced_accuracy, self.gate)
