"""CoreML target: an ML program ``.mlpackage`` that Xcode shows as an image classifier.

The image input takes RGB pixels in [0, 255] of the contract's size (the app crops and resizes as
:mod:`models.preprocessing` defines); the normalisation ``(v / 255 - mean) / std`` is folded into the input's
scale/bias when std is the same for all channels, otherwise the per-channel part runs as the first ops of the
graph. A ``ClassifierConfig`` carries the labels. fp16 is the ML program default; int8 quantizes the weights
(``linear_quantize_weights``). Activation int8 (``coremltools.optimize.torch`` calibration) is not shipped: it
would need tuning to agree with fp32, and CoreML numerics cannot be checked on Linux, so it could not be gated.

On Linux CoreML cannot predict: :func:`verify` checks what can be verified (spec, I/O, op histogram, quantized
weight blobs, reload) and the report says plainly that numerics were not checked.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from export import model_facts
from export._util import quiet
from export.context import Job, Reference
from export.formats import ArtifactSpec
from export.report import Verification
from models.atomic import atomic_path
from models.preprocessing import Preprocessing

NOT_RUN_REASON = "CoreML prediction needs macOS; numerics not checked on Linux"
INPUT_NAME = "image"


class _Normalize(nn.Module):
    """Per-channel part of the normalisation when it cannot be folded into the image input's scalar scale."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x in [0, 1]
        return self.model((x - self.mean) * self.inv_std)


def _traced_and_input(job: Job):
    import coremltools as ct

    pre, s = job.pre, job.pre.input_size
    if len(set(pre.std)) == 1:
        # Fully folded: y = v * scale + bias with scale = 1 / (255 std), bias_c = -mean_c / std.
        module, scale, bias = job.model, 1.0 / (255.0 * pre.std[0]), [-m / pre.std[0] for m in pre.mean]
    else:
        module, scale, bias = _Normalize(job.model, pre.mean, pre.std), 1.0 / 255.0, [0.0, 0.0, 0.0]
    with quiet(job.quiet):  # torch.jit.trace warns that it is deprecated; coremltools needs it (or torch.export)
        traced = torch.jit.trace(module.eval(), torch.zeros(1, 3, s, s))
    image = ct.ImageType(name=INPUT_NAME, shape=(1, 3, s, s), scale=scale, bias=bias,
                         color_layout=ct.colorlayout.RGB)
    return traced, image


def _fp16_model(job: Job):
    """Convert once; the int8 artifact quantizes the weights of this same program."""
    if "coreml_fp16" not in job.cache:
        import coremltools as ct

        traced, image = _traced_and_input(job)
        with quiet(job.quiet):
            ml = ct.convert(traced, inputs=[image], classifier_config=ct.ClassifierConfig(list(job.pre.labels)),
                            convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
                            minimum_deployment_target=ct.target.iOS16, skip_model_load=True)
        ml.short_description = model_facts.description(job.card, job.pre)  # Xcode's model page shows it
        ml.author, ml.license = model_facts.AUTHOR, model_facts.licence(job.card)
        ml.version = model_facts.version(job.card)
        ml.input_description[INPUT_NAME] = f"RGB image {job.pre.input_size}x{job.pre.input_size}, centre-cropped"
        ml.user_defined_metadata.update(model_facts.string_metadata(job.card, _contract(job.pre)))
        job.cache["coreml_fp16"] = ml
    return job.cache["coreml_fp16"]


def _int8_model(job: Job):
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    config = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
    with quiet(job.quiet):
        ml = linear_quantize_weights(_fp16_model(job), config=config)
    ml.user_defined_metadata["quantization"] = "int8 weights (linear symmetric, per-channel); fp16 activations"
    return ml


def build(job: Job, spec: ArtifactSpec) -> Preprocessing:
    ml = _fp16_model(job) if spec.precision == "fp16" else _int8_model(job)
    path = job.out_dir / spec.file
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory(dir=job.out_dir, prefix=".mlpackage-") as stage:
        # coremltools insists on the .mlpackage suffix; stage on the same filesystem, then hand over to the rename.
        staged = Path(stage) / spec.file
        with quiet(job.quiet):
            ml.save(str(staged))
        os.replace(staged, tmp)
    return dataclasses.replace(_contract(job.pre), model_file=spec.file)


def _contract(pre: Preprocessing) -> Preprocessing:
    """The contract of both CoreML files: an image input that takes pixels, the normalisation inside the model."""
    return dataclasses.replace(
        pre, layout="NHWC",
        extra={"coreml_input": "image", "note": "feed RGB pixels 0-255 after the crop/resize; the model normalises"},
    )


def _ops(spec) -> Counter:
    fn = spec.mlProgram.functions["main"]
    return Counter(op.type for op in fn.block_specializations[fn.opset].operations)


def _labels(spec) -> list[str]:
    fn = spec.mlProgram.functions["main"]
    ops = fn.block_specializations[fn.opset].operations
    cls = next((op for op in ops if op.type == "classify"), None)
    if cls is None:
        return []
    arg = cls.inputs["classes"].arguments[0]
    if arg.HasField("value"):  # saved programs inline the label list into the classify op
        values = arg.value.immediateValue.list.values
    else:
        const = next(op for op in ops if op.type == "const" and op.outputs[0].name == arg.name)
        values = const.attributes["val"].immediateValue.list.values
    return [v.immediateValue.tensor.strings.values[0] for v in values]


def verify(job: Job, spec: ArtifactSpec, pre: Preprocessing, reference: Reference) -> Verification:
    """Everything Linux can verify about a saved ``.mlpackage`` against the job's contract; numerics are explicitly
    not run (CoreML predicts only on macOS), so ``pre`` and ``reference`` go unused."""
    import coremltools as ct

    path = job.out_dir / spec.file
    problems: list[str] = []
    with quiet(job.quiet):
        ml = ct.models.MLModel(str(path), skip_model_load=True)  # reload from disk, as Xcode would
    s = ml.get_spec()
    desc = s.description
    image = desc.input[0].type.imageType if desc.input else None
    ops = _ops(s)
    weights = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    checks = {
        "model_type": s.WhichOneof("Type"),
        "input": {"name": desc.input[0].name, "width": image.width, "height": image.height,
                  "color": ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.colorSpace)}
        if image is not None else None,
        "outputs": [o.name for o in desc.output],
        "predicted_feature": desc.predictedFeatureName,
        "labels": _labels(s),
        "op_histogram": dict(sorted(ops.items())),
        "weight_bytes": weights.stat().st_size if weights.is_file() else 0,
        "int8_weight_ops": ops.get("constexpr_affine_dequantize", 0) + ops.get("constexpr_blockwise_shift_scale", 0),
    }
    if checks["model_type"] != "mlProgram":
        problems.append(f"not an ML program ({checks['model_type']})")
    if image is None or (image.width, image.height) != (job.pre.input_size,) * 2:
        problems.append(f"input is not a {job.pre.input_size}x{job.pre.input_size} image")
    if checks["labels"] != list(job.pre.labels):
        problems.append(f"classifier labels {checks['labels']} != model labels {list(job.pre.labels)}")
    if not checks["weight_bytes"]:
        problems.append("no weight blob")
    if spec.precision == "int8" and not checks["int8_weight_ops"]:
        problems.append("no int8 weight ops (constexpr_affine_dequantize) found")
    if problems:
        return Verification(status="failed", reason="; ".join(problems), checks=checks)
    return Verification(status="not_run", reason=NOT_RUN_REASON, checks=checks)
