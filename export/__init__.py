"""Export stage (``ssdkd-export``): ONNX, TFLite and CoreML artifacts with calibrated int8, each verified in its
real runtime against PyTorch fp32 on validation images.

>>> from export import ExportOptions, export
>>> report = export("runs/student/best.pt", targets="tflite", int8=True)
>>> report = export("runs/student/best.pt", ExportOptions(targets="all", int8=True), out_dir="runs/student/all")
>>> report.passed, report.path

The names below are imported when first used, so importing a light submodule (``export.runtimes``, which a
benchmark memory probe imports) does not import torch; converters are imported only when their target runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {"export": "export.pipeline", "ExportOptions": "export.options", "ArtifactRecord": "export.report",
          "ExportReport": "export.report", "Verification": "export.report", "Gate": "export.verify"}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
