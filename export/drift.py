"""Per-layer diagnosis of a failed int8 artifact: which layers' outputs drift most from the float model.

Both runtimes ship a tool for it; this module only feeds them the same validation images and reduces their
answer to the worst few tensors by signal-to-quantization-noise ratio (SQNR, dB: lower is worse):

- ONNX: onnxruntime's ``qdq_loss_debug`` (float vs QDQ model, every intermediate tensor);
- TFLite: ai-edge-quantizer's ``validate`` (float vs quantized flatbuffer, every intermediate tensor); its "snr" is
  a power ratio, converted here to dB like onnxruntime's.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import numpy as np

from export.calibration import ImageSet
from export.context import Job
from export.formats import ArtifactSpec

N_IMAGES = 8
TOP = 5


def diagnose(job: Job, spec: ArtifactSpec, images: ImageSet, n_images: int = N_IMAGES, top: int = TOP) -> list[dict]:
    """``[{"tensor", "sqnr_db"}]`` for the ``top`` worst layers (empty when the target has no such tool)."""
    # The baseline is the float model the artifact was quantized from (bias-corrected, BatchNorm folded): its tensors
    # are the ones the int8 graph mirrors, so the tools can pair them up layer by layer.
    if spec.target == "onnx":
        from export.onnx_export import int8_float_source

        worst = _onnx(int8_float_source(job), job.out_dir / spec.file, images, job, n_images)
    elif spec.target == "tflite":
        from export.tflite_export import int8_float_source

        worst = _tflite(int8_float_source(job), job.out_dir / spec.file, images, job, n_images)
    else:
        return []
    finite = [(t, v) for t, v in worst.items() if v is not None and not math.isnan(v)]
    rows = [{"tensor": t, "sqnr_db": round(float(v), 2)} for t, v in sorted(finite, key=lambda kv: kv[1])[:top]]
    if spec.target == "tflite":
        _locate(rows, job.out_dir / spec.file)
    return rows


def _locate(rows: list[dict], path: Path) -> None:
    """Add the op that writes each tensor, its position in the graph and its shape: converter tensor names such as
    ``.../Classifier_model/torch.nn.modules.conv.Conv2d_2;42`` do not say where in the network a layer is."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    tensors = {t["name"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    writer = {o: (i, op["op_name"]) for i, op in enumerate(ops) for o in op["outputs"]}
    for row in rows:
        t = tensors.get(row["tensor"])
        if t is not None and t["index"] in writer:
            i, name = writer[t["index"]]
            row.update(op=f"{name} #{i} of {len(ops)}", shape=[int(d) for d in t["shape"]])


def _onnx(float_path: Path, qdq_path: Path, images: ImageSet, job: Job, n: int) -> dict[str, float]:
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from export._util import quiet
    from export.onnx_export import INPUT_NAME

    feeds = [{INPUT_NAME: images.model_input(job.pre, i, i + 1)} for i in range(min(n, len(images)))]
    with tempfile.TemporaryDirectory(prefix="ssdkd-drift-") as tmp, quiet(job.quiet):
        aug_f, aug_q = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        modify_model_output_intermediate_tensors(str(float_path), str(aug_f))
        modify_model_output_intermediate_tensors(str(qdq_path), str(aug_q))
        f_acts = collect_activations(str(aug_f), feeds)
        q_acts = collect_activations(str(aug_q), feeds)
        err = compute_activation_error(create_activation_matching(q_acts, f_acts))
    return {t: e.get("xmodel_err") for t, e in err.items()}


def _tflite(float_path: Path, q_path: Path, images: ImageSet, job: Job, n: int) -> dict[str, float]:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer
    from ai_edge_quantizer.utils.validation_utils import ValidationErrorMetric

    from export._util import quiet

    float_model = float_path.read_bytes()
    sig = Interpreter(model_content=float_model).get_signature_list()
    key = next(iter(sig))
    name = sig[key]["inputs"][0]
    nhwc = dataclasses.replace(job.pre, layout="NHWC")
    data = {key: [{name: images.model_input(nhwc, i, i + 1)} for i in range(min(n, len(images)))]}
    with quiet(job.quiet):
        q = quantizer.Quantizer(bytearray(float_model), previous_quantized_model=bytearray(q_path.read_bytes()))
        result = q.validate(data, error_metrics=[ValidationErrorMetric.SNR], num_threads=job.threads)
    sigres = result.get_signature_comparison_result(key)
    return {t: power_ratio_db(float(np.asarray(m.get("snr", np.nan)))) for t, m in sigres.intermediate_tensors.items()}


def power_ratio_db(ratio: float) -> float:
    """``10 log10(ratio)``; NaN for a ratio that is not positive (no signal to compare)."""
    return 10 * math.log10(ratio) if ratio > 0 else math.nan
