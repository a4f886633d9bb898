"""TFLite target: fp32, fp16, full-integer int8 (int8 I/O and float I/O) and a16w8 (int8 weights, 16-bit
activations, float I/O), NHWC input, no stray transposes.

Two routes build the files; ``Job.tflite_route`` picks one:

- ``litert`` (default, this module): litert-torch converts the PyTorch model with channel-last I/O (NHWC is part of
  the traced graph), then ai-edge-quantizer derives fp16, static int8 and a16w8 from that fp32 flatbuffer. The
  integer graphs end in softmax; int8's head runs with 16-bit activations (see ``HEAD_OPS``). No TensorFlow.
- ``onnx2tf`` (:mod:`export.tflite_onnx2tf`): static ONNX -> onnx2tf SavedModel -> TF Lite converter with a
  representative dataset of real calibration images; all-int8, int8 logits out (the TF converter takes one
  precision per model).

litert is the default because ai-edge-quantizer takes a precision per op, so the head can keep 16-bit activations;
the TF converter takes one precision per model, and its all-int8 file puts the logits on an 8-bit grid that turns
near-ties between the top two classes into exact ties, which the agreement gate then counts as disagreements on
uncertain models. The comparison of the routes is in docs/int8.md.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from export import tflite_metadata
from export._util import quiet
from export.context import Job, Reference
from export.formats import ArtifactSpec
from export.report import Verification
from models.atomic import atomic_write_bytes
from models.preprocessing import Preprocessing

# The classifier head runs with 16-bit activations (8-bit weights): the logits and the softmax that follows them.
# An 8-bit logit grid (~0.1 logit at these ranges) turns every near-tie between the top two classes into an exact
# tie, which argmax then settles by class index (the lowest wins); on uncertain models, with many near-ties, that
# alone can break the agreement gate and favours the low-index classes. The backbone, where the time goes, stays int8.
HEAD_OPS = ("FULLY_CONNECTED", "SOFTMAX")
# The precisions built from the integer graph (:meth:`Job.int8_source`, GPTQ-rounded int8 weights, then softmax);
# a16w8 is TFLite's 16x8 mode: the same int8 weights with 16-bit activations everywhere.
INTEGER_PRECISIONS = ("int8", "a16w8")


def build(job: Job, spec: ArtifactSpec) -> Preprocessing:
    """Write ``spec.file`` with the job's TFLite route, with model metadata (:mod:`export.tflite_metadata`), and
    return its preprocessing contract."""
    path = job.out_dir / spec.file
    if job.tflite_route == "onnx2tf":
        from export import tflite_onnx2tf

        tflite_onnx2tf.build(job, spec, path)
        pre = io_contract(path, job.pre)
    else:
        atomic_write_bytes(path, _fp32_bytes(job) if spec.precision == "fp32" else _quantize(job, spec))
        # the int8 graphs end in their own softmax, so the 8-bit output grid lands on probabilities (_WithSoftmax)
        pre = io_contract(path, job.pre,
                          "probabilities" if spec.precision in INTEGER_PRECISIONS else job.pre.output_kind)
    # the contract is read back from the bare file, then travels inside it
    atomic_write_bytes(path, tflite_metadata.attach(inline_buffers(path.read_bytes()), card=job.card, pre=pre))
    return pre


def verify(job: Job, spec: ArtifactSpec, pre: Preprocessing, reference: Reference) -> Verification:
    """Run the file in LiteRT against PyTorch fp32, and count its ops (:func:`op_histogram`)."""
    path = job.out_dir / spec.file
    verification = reference.verify(path, spec.runtime, pre)
    verification.checks["op_histogram"] = op_histogram(path)
    return verification


def int8_float_source(job: Job) -> Path:
    """The float flatbuffer this job's int8 TFLite artifacts are quantized from (the per-layer drift baseline)."""
    if job.tflite_route == "onnx2tf":
        from export import tflite_onnx2tf

        return tflite_onnx2tf.int8_float_source(job)
    _fp32_bytes(job, int8_graph=True)
    return _litert_path(job, int8_graph=True)


def _litert_path(job: Job, int8_graph: bool) -> Path:
    return job.work_dir / f"litert_fp32_{'int8_graph' if int8_graph else 'model'}.tflite"


class _WithSoftmax(torch.nn.Module):
    """The int8 graph: :meth:`Job.int8_source` followed by softmax. A 16-bit softmax output requantized to int8
    has a step of 1/256 in probability, which near a tie between two classes (p ~ 0.45 each) is ~0.01 logit, ten
    times finer than an 8-bit logit grid; far from a tie the coarse end of the probability scale costs nothing."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=-1)


def _fp32_bytes(job: Job, int8_graph: bool = False) -> bytes:
    """litert-torch conversion of the float model (fp16 is derived from it) or of the int8 graph; each cached."""
    tmp = _litert_path(job, int8_graph)
    key = tmp.stem
    if key not in job.cache:
        import litert_torch

        s = job.pre.input_size
        model = _WithSoftmax(job.int8_source()) if int8_graph else job.model
        with quiet(job.quiet), torch.no_grad():
            nhwc = litert_torch.to_channel_last_io(model.eval(), args=[0])
            edge = litert_torch.convert(nhwc, (torch.zeros(1, s, s, 3),))
            edge.export(str(tmp))
        job.cache[key] = tmp.read_bytes()
    return job.cache[key]


def _recipe(spec: ArtifactSpec) -> list:
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    op = qtyping.TFLOperationName
    rm = recipe_manager.RecipeManager()
    if spec.precision == "fp16":
        rm.add_weight_only_config(regex=".*", operation_name=op.ALL_SUPPORTED, num_bits=16,
                                  algorithm_key=AlgorithmName.FLOAT_CASTING)
        return rm.get_quantization_recipe()
    # Static range quantization: int8 per-channel symmetric weights, int8 per-tensor asymmetric activations, and
    # int16 (symmetric) activations in the head; the quantizer requantizes where the two meet. a16w8: int16
    # activations on every op.
    bits = 16 if spec.precision == "a16w8" else 8
    rm.add_static_config(regex=".*", operation_name=op.ALL_SUPPORTED, activation_num_bits=bits, weight_num_bits=8)
    for name in HEAD_OPS:
        rm.add_static_config(regex=".*", operation_name=getattr(op, name), activation_num_bits=16,
                             weight_num_bits=8)
    if spec.io_dtype == "float32":
        # Leave the graph's input and output in float: the quantizer then inserts QUANTIZE/DEQUANTIZE at the
        # edges and everything in between still runs in integers.
        rm.add_quantization_config(".*", op.INPUT, algorithm_key=AlgorithmName.NO_QUANTIZE)
        rm.add_quantization_config(".*", op.OUTPUT, algorithm_key=AlgorithmName.NO_QUANTIZE)
    return rm.get_quantization_recipe()


def _calibration(job: Job, spec: ArtifactSpec, float_model: bytes) -> dict:
    """Min/max of every tensor over all calibration images; shared by the int8 and int8-float-I/O variants.

    ai-edge-quantizer's default statistic is a moving average (factor 0.95) of per-image min/max, which keeps
    roughly the last twenty images' typical extremes: on the zoo student it clipped the logits to [-3.3, +3.3]
    of their [-9.7, +16.5] range and agreement with fp32 fell to 83%. The global min/max is what the TF
    converter and onnxruntime calibrate with too.
    """
    if "aeq_calibration" not in job.cache:
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer.calibrator import Calibrator
        from ai_edge_quantizer.recipe_manager import RecipeManager
        from ai_edge_quantizer.utils.qsv_utils import min_max_update

        calib = job.need_calib("TFLite int8")
        nhwc = dataclasses.replace(job.pre, layout="NHWC")
        sig = Interpreter(model_content=float_model).get_signature_list()
        key = next(iter(sig))
        name = sig[key]["inputs"][0]
        data = {key: [{name: calib.model_input(nhwc, i, i + 1)} for i in range(len(calib))]}
        # the int8-I/O recipe names every tensor any integer variant quantizes
        recipe = RecipeManager()
        recipe.load_quantization_recipe(_recipe(dataclasses.replace(spec, precision="int8", io_dtype="int8")))
        with quiet(job.quiet):
            # Quantizer.calibrate() has no way to choose the statistic, hence the Calibrator itself
            cal = Calibrator(float_model, num_threads=job.threads, qsv_update_func=min_max_update)
            cal.calibrate(data, recipe)
        job.cache["aeq_calibration"] = cal.get_model_qsvs()
    return job.cache["aeq_calibration"]


def _quantize(job: Job, spec: ArtifactSpec) -> bytes:
    from ai_edge_quantizer import quantizer

    float_model = _fp32_bytes(job, int8_graph=spec.precision in INTEGER_PRECISIONS)
    q = quantizer.Quantizer(bytearray(float_model), _recipe(spec))
    with quiet(job.quiet):
        result = q.quantize(_calibration(job, spec, float_model) if q.need_calibration else None,
                            enable_progress_report=False)
    model = inline_buffers(bytes(result.quantized_model))
    return _probability_grid(model) if spec.precision == "int8" and spec.io_dtype == "int8" else model


def external_buffers(model: bytes) -> list[int]:
    """Indices of the buffers whose bytes live after the flatbuffer (``Buffer.offset``/``size``)."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(model, 0)
    return [i for i in range(m.BuffersLength()) if m.Buffers(i).Offset() > 1]


def inline_buffers(model: bytes) -> bytes:
    """The same model with every weight buffer inside the flatbuffer.

    ai-edge-quantizer stores buffers after the flatbuffer (the layout meant for models over 2 GB); the LiteRT 1.4.x
    Android runtime (the last line that supports minSdk 23) has been reported to fail on such files ("Input tensor
    N lacks data"). The classic inline layout is read by every TFLite/LiteRT runtime; the numbers are unchanged.
    """
    if not external_buffers(model):
        return model
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromPackedBuf(model, 0)
    for buf in tree.buffers or []:
        if buf.offset is not None and buf.offset > 1:
            buf.data = np.frombuffer(model, dtype=np.uint8, count=buf.size, offset=buf.offset)
            buf.offset, buf.size = 0, 0
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _probability_grid(model: bytes) -> bytes:
    """Put the int8 probability output on the grid of TF Lite's own int8 softmax: scale 1/256, zero point -128.

    ai-edge-quantizer derives it from the symmetric int16 softmax before it, i.e. [-1, 1] in steps of 2/255,
    which spends half the codes on negative probabilities. The QUANTIZE op that writes the output computes its
    multiplier from the tensors' parameters when the model is loaded, so rewriting them in place is enough.
    """
    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(model)
    graph = schema.Model.GetRootAs(buf, 0).Subgraphs(0)
    q = graph.Tensors(graph.Outputs(0)).Quantization()
    q.ScaleAsNumpy()[0] = 1 / 256  # numpy views into buf
    q.ZeroPointAsNumpy()[0] = -128
    return bytes(buf)


def io_contract(path: Path, base: Preprocessing, output_kind: str | None = None) -> Preprocessing:
    """The sidecar contract read back from the file itself: NHWC, I/O dtypes and quantization parameters;
    ``output_kind`` defaults to ``base``'s."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]

    def side(d: dict) -> tuple[str, float | None, int | None]:
        dtype = np.dtype(d["dtype"]).name
        if dtype in ("int8", "uint8"):
            scale, zp = d["quantization"]
            return dtype, float(scale), int(zp)
        return dtype, None, None

    (idt, isc, izp), (odt, osc, ozp) = side(inp), side(out)
    # replace(), so every other field of the contract (the temperature among them) carries over unchanged
    return dataclasses.replace(
        base, layout="NHWC", input_dtype=idt, input_scale=isc, input_zero_point=izp, output_dtype=odt,
        output_scale=osc, output_zero_point=ozp, output_kind=output_kind or base.output_kind, model_file=path.name,
        extra={},
    )


def op_histogram(path: Path) -> dict[str, int]:
    """Builtin op counts, e.g. to prove there is no TRANSPOSE (NHWC end to end) and the int8 ops are int8."""
    from ai_edge_litert.interpreter import Interpreter

    # _get_ops_details is the interpreter's only op listing; before allocate_tensors() it shows the builtin ops,
    # not the XNNPACK DELEGATE node that replaces them at run time.
    it = Interpreter(model_path=str(path))
    return dict(Counter(op["op_name"] for op in it._get_ops_details()))
