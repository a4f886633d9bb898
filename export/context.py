"""What every target module receives: the model, its card, the base preprocessing and the calibration images.

Each target module exposes ``build(job, spec) -> Preprocessing``: write ``job.out_dir / spec.file`` atomically
and return the artifact's preprocessing contract (layout, dtypes, scales) for its sidecar. Intermediate files
(the float model that int8 is quantized from, onnx2tf's SavedModels) go to ``job.work_dir`` and ``job.cache`` so
sibling artifacts reuse them instead of converting twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from export.calibration import ImageSet
from export.formats import DEFAULT_TFLITE_ROUTE
from export.weight_rounding import INT8_QMAX, int8_ready
from models.checkpoint import ModelCard
from models.errors import InputError
from models.preprocessing import Preprocessing


@dataclass
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
    bias_correction: bool = True
    cache: dict[str, Any] = field(default_factory=dict)

    def need_calib(self, what: str) -> ImageSet:
        if self.calib is None:
            raise InputError(f"{what} needs calibration images: pass --calib ROOT")
        return self.calib

    def int8_source(self, qmax: int = INT8_QMAX) -> torch.nn.Module:
        """The float model an int8 artifact whose weights have ``qmax`` steps a side is quantized from: the model
        itself when ``bias_correction`` is off, else :func:`export.weight_rounding.int8_ready` (weights on that
        grid, biases corrected on the calibration images). One per grid, shared by the artifacts that use it."""
        key = f"int8_source/{qmax}"
        if key not in self.cache:
            self.cache[key] = (int8_ready(self.model, self.need_calib("int8"), self.pre, qmax=qmax)
                               if self.bias_correction else self.model)
        return self.cache[key]
