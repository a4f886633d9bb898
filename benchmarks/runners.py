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
    use it without importing ``models``, which imports torch)."""

    layout: str  # NCHW or NHWC
    input_size: int
    dtype: str  # float32 / float16 / int8 / uint8
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def to_json(self) -> dict[str, Any]:
        return {"layout": self.layout, "input_size": self.input_size, "dtype": self.dtype,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InputSpec:
        return cls(d["layout"], int(d["input_size"]), d["dtype"], tuple(d["mean"]), tuple(d["std"]))


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
        self.spec = spec  # checked against the model at load time

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
        s = self.spec.input_size
        return (1, 3, s, s) if self.spec.layout == "NCHW" else (1, s, s, 3)

    def check_input(self, shape: list[Any] | tuple[Any, ...], dtype: str) -> None:
        """Fail loudly when the sidecar and the model disagree: a silent transpose/cast would make every
        accuracy figure meaningless."""
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
