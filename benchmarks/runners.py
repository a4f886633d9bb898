"""One runner per runtime, all with the same small interface: ``load()``, ``activate()``, ``run(x)``.

Runtimes are imported lazily inside ``load()`` so that a memory probe of one runtime (a fresh
subprocess, see ``benchmarks.memory``) never pays for importing the others, and so that this module
never imports torch unless the PyTorch reference is run.

Threads are pinned explicitly for every runtime: torch intra-op via ``set_num_threads`` (re-applied in
``activate()`` because it is process-global and runners are interleaved) and inter-op 1; ONNX Runtime
``intra_op_num_threads`` and ``inter_op_num_threads=1`` with sequential execution; LiteRT
``num_threads``. Batch-1 inference has no inter-op parallelism, so one inter-op thread is the honest setting.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # importing benchmarks.artifacts imports models -> torch, which a memory probe must not pay for
    from benchmarks.artifacts import Artifact

_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8"}


@dataclass(frozen=True)
class InputSpec:
    """What the preprocessing contract promises about the model input (plain fields, so a memory probe can
    use it without importing ``models``, which imports torch).

    A ``--reference`` file has no contract: its spec is read from the model itself (``read_model``), with
    layout ``"model"`` and the full ``shape``, and it is fed random data of that shape and dtype.
    """

    layout: str  # NCHW, NHWC, or "model" (shape read from the model)
    input_size: int | None
    dtype: str  # float32 / float16 / int8 / uint8
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    shape: tuple[int, ...] | None = None  # the full input shape, when it is not a square 3-channel image

    def to_json(self) -> dict[str, Any]:
        return {"layout": self.layout, "input_size": self.input_size, "dtype": self.dtype,
                "mean": list(self.mean), "std": list(self.std), "shape": list(self.shape) if self.shape else None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InputSpec:
        size, shape = d["input_size"], d.get("shape")
        return cls(d["layout"], int(size) if size is not None else None, d["dtype"], tuple(d["mean"]),
                   tuple(d["std"]), tuple(shape) if shape else None)

    @classmethod
    def of_model(cls, shape: list[Any] | tuple[Any, ...], dtype: str) -> InputSpec:
        """The model's own input; dynamic dimensions (None, -1, or a name) become 1: batch 1."""
        return cls("model", None, dtype, shape=tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape))

    def random_input(self, seed: int = 0) -> np.ndarray:
        """Random data of this shape and dtype: latency of these models does not depend on the values."""
        rng = np.random.default_rng(seed)
        shape = self.shape or _image_shape(self.layout, self.input_size or 0)
        if self.dtype in ("int8", "uint8"):
            info = np.iinfo(_NP_DTYPES[self.dtype])
            return rng.integers(info.min, info.max, shape, endpoint=True).astype(_NP_DTYPES[self.dtype])
        return rng.uniform(-1.0, 1.0, shape).astype(_NP_DTYPES.get(self.dtype, np.float32))


def _image_shape(layout: str, size: int) -> tuple[int, ...]:
    return (1, 3, size, size) if layout == "NCHW" else (1, size, size, 3)


# "Whatever the model declares": the spec a runner gets while ``read_model`` reads a contract-less file's input.
MODEL_INPUT = InputSpec("model", None, "any")


class RunnerError(Exception):
    """The runtime failed to load or run the artifact: the row is 'failed'."""


class Unsupported(Exception):
    """The runtime cannot run on this machine at all (e.g. CoreML off macOS): the row is 'unsupported'."""


class Runner(ABC):
    """Load once, then ``run`` a batch-1 input in the artifact's own layout/dtype and return the raw output."""

    runtime: str = ""

    def __init__(self, artifact: Artifact, threads: int | None, spec: InputSpec) -> None:
        self.artifact = artifact
        self.threads = threads
        self.spec = spec  # checked against the model at load time (MODEL_INPUT: only read the model's input)
        self.model_input: tuple[tuple[Any, ...], str] | None = None  # (shape, dtype) the model declares

    def import_runtime(self) -> None:  # noqa: B027 - optional hook, most runtimes need nothing here
        """Import the runtime's modules (separately from ``load`` so memory can tell import from load)."""

    @abstractmethod
    def load(self) -> None:
        """Load and prepare the model (what 'init' time measures)."""

    def activate(self) -> None:  # noqa: B027 - optional hook: only torch has process-global threads
        """Re-apply process-global settings before this runner's turn (interleaving)."""

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """One inference; returns the first output as a numpy array."""

    def settings(self) -> dict[str, Any]:
        """Thread and delegate settings actually in effect (recorded per row)."""
        return {"threads": self.threads}

    def expected_shape(self) -> tuple[int, ...]:
        return self.spec.shape or _image_shape(self.spec.layout, self.spec.input_size or 0)

    def check_input(self, shape: list[Any] | tuple[Any, ...], dtype: str) -> None:
        """Fail loudly when the sidecar and the model disagree: a silent transpose/cast would make every
        accuracy figure meaningless."""
        self.model_input = (tuple(shape), dtype)
        if self.spec == MODEL_INPUT:  # reading a contract-less model's input: nothing to check it against
            return
        want = self.expected_shape()
        fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
        shape_ok = len(fixed) == len(want) and all(f is None or f == w for f, w in zip(fixed, want))
        if not shape_ok or dtype != self.spec.dtype:
            raise RunnerError(f"preprocessing contract says input {self.spec.layout} {self.spec.dtype} {list(want)} "
                              f"but the model expects {dtype} {list(shape)}")


class TorchRunner(Runner):
    runtime = "torch"

    def import_runtime(self) -> None:
        import torch  # noqa: F401

        from models import list_models

        list_models()  # imports torchvision and registers architectures: import cost, not model load cost

    def load(self) -> None:
        import torch

        from models import load_checkpoint

        self._torch = torch
        torch.set_num_threads(self.threads or 1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # already set (or inter-op pool started) in this process; the actual value is recorded
        self.model, _ = load_checkpoint(self.artifact.path)
        self.model.eval()
        self.check_input((1, 3, self.spec.input_size, self.spec.input_size), "float32")

    def activate(self) -> None:
        self._torch.set_num_threads(self.threads or 1)
        # Read back while this runner is active: the setting is process-global and other runners change it.
        self._applied = (self._torch.get_num_threads(), self._torch.get_num_interop_threads())

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(x)).numpy()

    def settings(self) -> dict[str, Any]:
        intra, inter = getattr(self, "_applied", (None, None))
        return {"threads": self.threads, "intra_op_threads": intra, "inter_op_threads": inter, "mode": "eager fp32"}


class OrtRunner(Runner):
    runtime = "onnxruntime"

    def import_runtime(self) -> None:
        import onnxruntime  # noqa: F401

    def load(self) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads or 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning pool threads keep burning a core after their turn and would slow the next artifact in the
        # round-robin; without spinning every runtime gets the CPU it asks for.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.artifact.path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception zoo
            raise RunnerError(f"onnxruntime could not load {self.artifact.name}: {_first_line(e)}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        self.check_input(inp.shape, _ORT_DTYPES.get(inp.type, inp.type))

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def settings(self) -> dict[str, Any]:
        return {"threads": self.threads, "intra_op_threads": self.threads or 1, "inter_op_threads": 1,
                "execution_mode": "sequential", "allow_spinning": False, "provider": "CPUExecutionProvider"}


class LiteRTRunner(Runner):
    runtime = "litert"

    def import_runtime(self) -> None:
        import ai_edge_litert.interpreter  # noqa: F401

    def load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interp = Interpreter(model_path=str(self.artifact.path), num_threads=self.threads or 1)
            self.interp.allocate_tensors()
        except Exception as e:  # noqa: BLE001 - the interpreter raises RuntimeError/ValueError variously
            raise RunnerError(f"LiteRT could not load {self.artifact.name}: {_first_line(e)}") from None
        inp = self.interp.get_input_details()[0]
        self.input_index = inp["index"]
        self.output_index = self.interp.get_output_details()[0]["index"]
        self.check_input(tuple(int(d) for d in inp["shape"]), np.dtype(inp["dtype"]).name)

    def run(self, x: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self.input_index, x)
        self.interp.invoke()
        return self.interp.get_tensor(self.output_index)  # get_tensor copies

    def settings(self) -> dict[str, Any]:
        return {"threads": self.threads, "num_threads": self.threads or 1, "delegate": "XNNPACK (LiteRT default)"}


class CoreMLRunner(Runner):
    runtime = "coreml"

    def load(self) -> None:
        if sys.platform != "darwin":
            raise Unsupported("CoreML runs only on macOS")
        import coremltools as ct

        try:
            self.model = ct.models.MLModel(str(self.artifact.path), compute_units=ct.ComputeUnit.ALL)
        except Exception as e:  # noqa: BLE001
            raise RunnerError(f"coremltools could not load {self.artifact.name}: {_first_line(e)}") from None
        spec = self.model.get_spec()
        first = spec.description.input[0]
        self.input_name = first.name
        self.output_name = spec.description.output[0].name
        self.image_input = first.type.WhichOneof("Type") == "imageType"

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.image_input:
            from PIL import Image

            # An ImageType input folds the normalisation into the model: undo the contract's normalisation
            # to hand it the same pixels (exact up to float rounding).
            hwc = x[0].transpose(1, 2, 0) if self.spec.layout == "NCHW" else x[0]
            pixels = (hwc.astype(np.float64) * np.asarray(self.spec.std) + np.asarray(self.spec.mean)) * 255.0
            feed: Any = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
        else:
            feed = x
        return np.asarray(self.model.predict({self.input_name: feed})[self.output_name])

    def settings(self) -> dict[str, Any]:
        return {"threads": None, "compute_units": "ALL", "note": "CoreML has no thread setting"}


_RUNNERS: dict[str, type[Runner]] = {"torch": TorchRunner, "onnxruntime": OrtRunner, "litert": LiteRTRunner,
                                     "coreml": CoreMLRunner}


def make_runner(artifact: Artifact, threads: int | None, spec: InputSpec) -> Runner:
    return _RUNNERS[artifact.runtime](artifact, threads, spec)


def read_model(artifact: Artifact) -> tuple[InputSpec, str]:
    """A contract-less (``--reference``) .tflite/.onnx file's own input spec and its precision, read from the
    model: loaded once by its runtime, so a file the runtime cannot load raises ``RunnerError`` here."""
    runner = make_runner(artifact, 1, MODEL_INPUT)
    runner.load()
    assert runner.model_input is not None
    shape, dtype = runner.model_input
    if isinstance(runner, LiteRTRunner):
        precision = _tflite_precision(dtype, runner.interp.get_tensor_details())
    else:
        precision = _onnx_precision(artifact.path, dtype)
    return InputSpec.of_model(shape, dtype), precision


def _tflite_precision(input_dtype: str, tensors: list[dict[str, Any]]) -> str:
    """int8 for integer I/O, int8_fio for float I/O around 8-bit tensors (the export's naming), else by weights."""
    kinds = {np.dtype(t["dtype"]).name for t in tensors}
    if input_dtype in ("int8", "uint8"):
        return "int8"
    if kinds & {"int8", "uint8"}:
        return "int8_fio"
    return "fp16" if "float16" in kinds else "fp32"


# ONNX ops that only appear in quantized graphs (QDQ format, QOperator format, integer ops).
_ONNX_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}


def _onnx_precision(path: Path, input_dtype: str) -> str:
    try:
        import onnx  # installed with onnxruntime (the "onnx" extra)
    except ImportError:
        return "unknown"
    graph = onnx.load(str(path), load_external_data=False).graph  # op types only: weights are not needed
    ops = {n.op_type for n in graph.node}
    if ops & _ONNX_INT8_OPS or any(op.startswith("QLinear") for op in ops):
        return "int8"
    fp16 = input_dtype == "float16" or any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    return "fp16" if fp16 else "fp32"


def runtime_versions() -> dict[str, str | None]:
    """Installed versions from package metadata (no imports, so no import cost or side effects)."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for dist in ("torch", "onnxruntime", "ai-edge-litert", "coremltools", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def load_input(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)
