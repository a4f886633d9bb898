"""ONNX target: fp32 (legacy exporter, opset 17, simplified, checked) and onnxruntime static QDQ int8.

The legacy TorchScript exporter is used because it can target opset 17; the dynamo exporter cannot go below
opset 18 and is much slower on these graphs.

Which int8 scheme (:data:`ONNX_INT8_SCHEMES`) is a question of the CPU the file will meet, which the exporter cannot
know. On x86, onnxruntime runs uint8 x int8 (u8s8) convolutions and matrix products either with VNNI's VPDPBUSD,
which sums four u8*s8 products into 32 bits, or, on CPUs without VNNI (AVX2-only, most AVX-512 parts before
Cascade Lake), with VPMADDUBSW, which adds *pairs* of u8*s8 products into a saturating 16-bit lane: two products
of 255 * 127 overflow it and the result is silently clamped. Full 8-bit weights are therefore only right on VNNI
(and on ARM, whose SDOT/UDOT have no such lane). With 7-bit weights (|w| <= 64 steps, onnxruntime's
``reduce_range``) a pair stays within 2 * 255 * 64 = 32640 < 32767, so the same file computes the same integers on
every CPU: that is the default. int8 activations (s8s8) do not help: onnxruntime rewrites them to u8s8 on x86.
The weights are GPTQ-rounded for the grid the scheme uses (:func:`export.weight_rounding.int8_ready`), so the
smaller grid costs little.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export import model_facts
from export._util import quiet
from export.calibration import ImageSet
from export.context import Job, Reference, int8_weights
from export.formats import ArtifactSpec
from export.report import Verification
from export.weight_rounding import INT8_QMAX
from models.atomic import atomic_save
from models.checkpoint import ModelCard
from models.preprocessing import Preprocessing

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass(frozen=True)
class OnnxInt8Scheme:
    """One way of quantizing the ONNX int8 file: uint8 activations, per-channel symmetric int8 weights with
    ``weight_qmax`` steps a side (64 = onnxruntime's 7-bit ``reduce_range``, 127 = full int8)."""

    name: str
    weight_qmax: int
    runs_right_on: str  # which CPUs compute it without saturation (recorded in the report and the metadata)

    @property
    def reduce_range(self) -> bool:
        return self.weight_qmax < INT8_QMAX

    def to_json(self) -> dict[str, object]:
        return {"scheme": self.name, "activations": "uint8",
                "weights": f"int8 per-channel, {self.weight_qmax} steps a side"
                           + (" (7-bit, reduce_range)" if self.reduce_range else ""),
                "runs_right_on": self.runs_right_on}


ONNX_INT8_SCHEMES: dict[str, OnnxInt8Scheme] = {
    s.name: s
    for s in (
        OnnxInt8Scheme("portable", 64, "every CPU: x86 with or without VNNI, ARM"),
        OnnxInt8Scheme("vnni", INT8_QMAX, "x86 with VNNI (AVX512-VNNI or AVX-VNNI) and ARM only: on x86 without VNNI "
                                          "onnxruntime's u8s8 kernels saturate and the outputs are wrong"),
    )
}
DEFAULT_ONNX_INT8 = "portable"


def build(job: Job, spec: ArtifactSpec) -> Preprocessing:
    """fp32, or int8 quantized from the GPTQ-rounded, bias-corrected float model (:meth:`Job.int8_source`); NCHW
    float32 I/O."""
    path = job.out_dir / spec.file
    with quiet(job.quiet):
        if spec.precision == "fp32":
            export_onnx_fp32(job.model, job.pre, job.card, path, job.dynamic_batch)
        else:
            scheme = ONNX_INT8_SCHEMES[job.onnx_int8]
            source = int8_float_source(job)
            export_onnx_fp32(job.int8_source(scheme.weight_qmax), job.pre, job.card, source, job.dynamic_batch)
            export_onnx_int8(source, job.need_calib("ONNX int8"), job.pre, path, scheme=scheme,
                             rounding_fixes=job.rounding_fixes)
    return job.pre


def verify(job: Job, spec: ArtifactSpec, pre: Preprocessing, reference: Reference) -> Verification:
    """Run the file in onnxruntime against PyTorch fp32."""
    return reference.verify(job.out_dir / spec.file, spec.runtime, pre)


def int8_float_source(job: Job) -> Path:
    """Where the float ONNX that ``model_int8.onnx`` is quantized from is written (the per-layer drift baseline)."""
    return job.work_dir / "int8_source.onnx"


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _set_metadata(model, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def export_onnx_fp32(model: torch.nn.Module, pre: Preprocessing, card: ModelCard, path: Path,
                     dynamic_batch: bool = False) -> None:
    """Export, simplify with onnxslim, check, embed metadata, then write ``path`` atomically.

    Batch is static 1 unless ``dynamic_batch``: onnx2tf and the mobile runtimes want a static shape.
    """
    import onnx
    import onnxslim

    s = pre.input_size
    with tempfile.TemporaryDirectory(prefix="ssdkd-onnx-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            model.eval(), (torch.zeros(1, 3, s, s),), str(raw), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
        )
        graph = onnxslim.slim(onnx.load(str(raw)))
    onnx.checker.check_model(graph, full_check=True)
    _set_metadata(graph, model_facts.string_metadata(card, pre))
    graph.doc_string = model_facts.description(card, pre)  # what Netron and onnx.helper.printable_graph show
    atomic_save(path, lambda tmp: onnx.save(graph, str(tmp)))


class _Reader:
    """onnxruntime CalibrationDataReader over the shared calibration images (NCHW float32, batch 1)."""

    def __init__(self, images: ImageSet, pre: Preprocessing) -> None:
        self.images, self.pre, self.i = images, pre, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.images):
            return None
        self.i += 1
        return {INPUT_NAME: self.images.model_input(self.pre, self.i - 1, self.i)}

    def rewind(self) -> None:
        self.i = 0


def export_onnx_int8(fp32_path: Path, calib: ImageSet, pre: Preprocessing, path: Path, *,
                     scheme: OnnxInt8Scheme = ONNX_INT8_SCHEMES[DEFAULT_ONNX_INT8],
                     rounding_fixes: bool = False) -> None:
    """Static QDQ int8: per-channel int8 weights on ``scheme``'s grid, uint8 activations MinMax-calibrated on real
    images.

    uint8 activations because u8s8 is onnxruntime's fast path on x86 (int8 activations are rewritten to it anyway).
    The node that writes the logits stays in float: an 8-bit grid on the logits (~0.1 logit) turns near-ties between
    the top classes into exact ties, which argmax settles by class index. It is one small matrix product on pooled
    features. ``rounding_fixes``: ``fp32_path`` is GPTQ-rounded and bias-corrected (recorded in the metadata).
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = _Reader(calib, pre)
    CalibrationDataReader.register(_Reader)
    with tempfile.TemporaryDirectory(prefix="ssdkd-onnx-int8-") as tmp:
        prepped, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
        head = [n.name for n in onnx.load(str(prepped)).graph.node if OUTPUT_NAME in n.output]
        quantize_static(str(prepped), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=head,
                        reduce_range=scheme.reduce_range,
                        extra_options={"CalibTensorRangeSymmetric": False})
        model = onnx.load(str(out))
    props = read_metadata(fp32_path)
    props["quantization"] = json.dumps({"format": "QDQ", **scheme.to_json(), "float_nodes": head,
                                        "calibration_images": len(calib), **int8_weights(rounding_fixes)})
    _set_metadata(model, props)
    model.doc_string = props["description"]
    onnx.checker.check_model(model)
    atomic_save(path, lambda tmp: onnx.save(model, str(tmp)))
