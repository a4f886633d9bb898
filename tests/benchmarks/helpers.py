"""Small real artifacts for the benchmark tests, built without the export package.

ONNX fp32 (legacy exporter, opset 17) and ONNX int8 (ORT static QDQ, per-channel int8 weights, uint8
activations, calibrated on real images), each with its sidecar and an ``export_report.json`` following the
export contract, so the harness is exercised on the same layout the export stage writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models import load_checkpoint


def sample_images(root: Path, n: int) -> list[Path]:
    from distill.data import load_labeled_images

    recs = sorted(load_labeled_images(root).records, key=lambda r: r.image_id)
    step = max(1, len(recs) // n)
    return [r.path for r in recs[::step][:n]]


def make_onnx_export(ckpt: Path, out: Path, calib_root: Path, int8: bool = True) -> Path:
    """Write model_fp32.onnx (+ model_int8.onnx), sidecars, labels.txt and export_report.json into ``out``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    out.mkdir(parents=True, exist_ok=True)
    model, card = load_checkpoint(ckpt)
    pre = card.preprocessing()
    s = card.input_size
    fp32 = out / "model_fp32.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, s, s),), str(fp32), input_names=["input"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    artifacts = [("model_fp32.onnx", "fp32")]
    if int8:
        batches = [pre.model_input(pre.pixels(p)) for p in sample_images(calib_root, 16)]

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter(batches)

            def get_next(self) -> dict[str, np.ndarray] | None:
                x = next(self.it, None)
                return None if x is None else {"input": x}

        quantize_static(str(fp32), str(out / "model_int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        artifacts.append(("model_int8.onnx", "int8"))
    entries = []
    for name, precision in artifacts:
        side = name.replace(".onnx", ".preprocessing.json")
        (out / side).write_text(json.dumps(card.preprocessing(model_file=name).to_json(), indent=2))
        entries.append({"file": name, "target": "onnx", "precision": precision, "runtime": "onnxruntime",
                        "preprocessing": side, "size_bytes": (out / name).stat().st_size})
    (out / "labels.txt").write_text("\n".join(card.labels) + "\n")
    report = {"schema_version": 1, "checkpoint": str(Path(ckpt).resolve()), "card": card.to_json(),
              "artifacts": entries}
    (out / "export_report.json").write_text(json.dumps(report, indent=2))
    return out
