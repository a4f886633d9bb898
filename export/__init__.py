"""Export stage (``ssdkd-export``): ONNX, TFLite and CoreML artifacts with calibrated int8, each verified in its
real runtime against PyTorch fp32 on validation images.

>>> from export import export
>>> report = export("runs/student/best.pt", targets="tflite", int8=True)
>>> report.passed, report.path

Converters are imported only when their target runs, so ``import export`` stays cheap.
"""

from export.pipeline import export
from export.report import ArtifactRecord, ExportReport, Verification
from export.verify import Gate

__all__ = ["ArtifactRecord", "ExportReport", "Gate", "Verification", "export"]
