"""One runner per artifact, all with the same small interface: ``load()``, ``activate()``, ``run(x)``.

Every runner loads its file through the runtime's one loader in ``export.runtimes``, the loader export verification
uses, so a file is benchmarked with the session settings it was verified with (threads pinned for every runtime;
the settings are listed there). Runtimes are imported lazily inside ``load()`` so that a memory probe of one runtime
(a fresh subprocess, see ``benchmarks.memory``) never pays for importing the others, and so that this module never
imports torch unless the PyTorch reference is run. Torch's thread count is process-global, so the torch runner
re-applies it in ``activate()`` before each of its turns (runners are interleaved).
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export.runtimes import RUNTIMES, Loaded, LoadError, RuntimeUnavailable

if TYPE_CHECKING:  # importing benchmarks.artifacts imports models -> torch, which a memory probe must not pay for
    from benchmarks.artifacts import Artifact

_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8}


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


class RuntimeRunner(Runner):
    """An artifact loaded by its runtime's loader in ``export.runtimes``."""

    loaded: Loaded

    def import_runtime(self) -> None:
        RUNTIMES[self.artifact.runtime].imports()

    def load(self) -> None:
        try:
            self.loaded = RUNTIMES[self.artifact.runtime].load(self.artifact.path, threads=self.threads or 1)
        except RuntimeUnavailable as e:
            raise Unsupported(str(e)) from None
        except LoadError as e:
            raise RunnerError(str(e)) from None
        if self.loaded.input is not None:
            self.check_input(*self.loaded.input)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.loaded.run(x)

    def settings(self) -> dict[str, Any]:
        return {"threads": self.threads, **self.loaded.settings}


class TorchRunner(RuntimeRunner):
    def activate(self) -> None:
        import torch  # already imported by load(): a lookup, not an import

        torch.set_num_threads(self.threads or 1)
        # Read back while this runner is active: the setting is process-global and other runners change it.
        self._applied = (torch.get_num_threads(), torch.get_num_interop_threads())

    def settings(self) -> dict[str, Any]:
        intra, inter = getattr(self, "_applied", (None, None))
        return {"threads": self.threads, "intra_op_threads": intra, "inter_op_threads": inter, "mode": "eager fp32"}


class CoreMLRunner(RuntimeRunner):
    def load(self) -> None:
        super().load()
        first = self.loaded.handle.get_spec().description.input[0]
        self.image_input = first.type.WhichOneof("Type") == "imageType"

    def run(self, x: np.ndarray) -> np.ndarray:
        if not self.image_input:
            return self.loaded.run(x)
        from PIL import Image

        # An ImageType input folds the normalisation into the model: undo the contract's normalisation
        # to hand it the same pixels (exact up to float rounding).
        hwc = x[0].transpose(1, 2, 0) if self.spec.layout == "NCHW" else x[0]
        pixels = (hwc.astype(np.float64) * np.asarray(self.spec.std) + np.asarray(self.spec.mean)) * 255.0
        return self.loaded.run(Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)))

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "threads": None}  # CoreML has no thread setting


# Runtimes whose runner does more than load and run: torch re-applies its process-global threads, CoreML feeds
# an image input.
_RUNNERS: dict[str, type[RuntimeRunner]] = {**dict.fromkeys(RUNTIMES, RuntimeRunner), "torch": TorchRunner,
                                            "coreml": CoreMLRunner}


def make_runner(artifact: Artifact, threads: int | None, spec: InputSpec) -> Runner:
    return _RUNNERS[artifact.runtime](artifact, threads, spec)


def read_model(artifact: Artifact) -> tuple[InputSpec, str]:
    """A contract-less (``--reference``) .tflite/.onnx file's own input spec and its precision, read from the
    model: loaded once by its runtime, so a file the runtime cannot load raises ``RunnerError`` here."""
    runner = RuntimeRunner(artifact, 1, MODEL_INPUT)
    runner.load()
    assert runner.model_input is not None
    shape, dtype = runner.model_input
    if artifact.runtime == "litert":
        precision = _tflite_precision(dtype, runner.loaded.handle.get_tensor_details())
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
    """Python's version and the installed runtimes', recorded with every benchmark."""
    from export._util import package_versions  # imports models (torch): only the harness asks for versions

    return {"python": sys.version.split()[0],
            **package_versions(("torch", "onnxruntime", "ai-edge-litert", "coremltools", "numpy"))}


def load_input(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)
