"""One loader per runtime, used both to verify an exported file (``export.verify``) and to benchmark it
(``benchmarks.runners``), so a file is run with the same session settings wherever this project runs it.

``RUNTIMES`` is keyed by the runtime names the format table (``export.formats``), the export report and the
benchmark results use. Every loader takes the thread count and returns a :class:`Loaded`: a batch-1 ``run``, the
input the model declares and the settings it was built with (recorded per benchmark row).

Settings, per runtime:

- ONNX Runtime: ``threads`` intra-op threads, one inter-op thread, sequential execution, every graph optimisation,
  CPU provider, and pool threads that do not spin. These are the benchmark harness's settings; verification ran with
  ORT's defaults for optimisation level and execution mode, which are these same values, and spinning only decides
  whether an idle pool thread busy-waits, so no output changes. Batch-1 inference has no inter-op parallelism, so
  one inter-op thread is the honest setting; a spinning pool keeps burning a core after its turn and would slow the
  next file in the benchmark's round-robin.
- LiteRT: ``num_threads`` = ``threads`` with its default XNNPACK delegate.
- CoreML: every compute unit (CoreML has no thread setting); macOS only.
- torch: a checkpoint in eager fp32, ``threads`` intra-op and one inter-op thread (both process-global).

Only numpy is imported here: each loader imports its runtime when called, so a benchmark memory probe of one
runtime (a fresh process, see ``benchmarks.memory``) pays for no other, and torch is never imported by accident.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Run = Callable[[Any], np.ndarray]  # one batch-1 input -> the model's first output

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8"}


class LoadError(Exception):
    """The runtime could not load the file (a one-line reason)."""


class RuntimeUnavailable(Exception):
    """The runtime cannot run on this machine at all (e.g. CoreML off macOS)."""


@dataclass(frozen=True)
class Loaded:
    """A model loaded by its runtime, ready for batch-1 inference."""

    run: Run
    # (shape, dtype name) the model declares for its first input, a dynamic dimension as the runtime gives it
    # (None, -1 or a name); None where the input is not a tensor to check (a CoreML image input)
    input: tuple[tuple[Any, ...], str] | None
    settings: dict[str, Any]  # what the session was built with
    handle: Any  # the runtime's own object, for runtime-specific reads (e.g. LiteRT tensor details)


@dataclass(frozen=True)
class Runtime:
    name: str
    imports: Callable[[], None]  # import the runtime's modules (timed apart from loading by benchmarks.memory)
    load: Callable[..., Loaded]  # load(path, *, threads) -> Loaded


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _import_onnxruntime() -> None:
    import onnxruntime  # noqa: F401


def load_onnxruntime(path: Path, *, threads: int) -> Loaded:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception zoo
        raise LoadError(f"onnxruntime could not load {Path(path).name}: {_first_line(e)}") from None
    inp = session.get_inputs()[0]
    feeds, outputs = inp.name, [session.get_outputs()[0].name]
    return Loaded(
        run=lambda x: session.run(outputs, {feeds: x})[0],
        input=(tuple(inp.shape), _ORT_DTYPES.get(inp.type, inp.type)),
        settings={"intra_op_threads": threads, "inter_op_threads": 1, "execution_mode": "sequential",
                  "graph_optimization_level": "all", "allow_spinning": False, "provider": "CPUExecutionProvider"},
        handle=session,
    )


def _import_litert() -> None:
    import ai_edge_litert.interpreter  # noqa: F401


def load_litert(path: Path, *, threads: int) -> Loaded:
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
    except Exception as e:  # noqa: BLE001 - the interpreter raises RuntimeError/ValueError variously
        raise LoadError(f"LiteRT could not load {Path(path).name}: {_first_line(e)}") from None
    inp = interp.get_input_details()[0]
    in_index, out_index = inp["index"], interp.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        interp.set_tensor(in_index, x)
        interp.invoke()
        return interp.get_tensor(out_index)  # a copy: the next invoke does not overwrite it

    return Loaded(run=run, input=(tuple(int(d) for d in inp["shape"]), np.dtype(inp["dtype"]).name),
                  settings={"num_threads": threads, "delegate": "XNNPACK (LiteRT default)"}, handle=interp)


def _import_coreml() -> None:
    """Nothing: coremltools is imported by the loader, only where CoreML can run (macOS)."""


def load_coreml(path: Path, *, threads: int) -> Loaded:
    """``threads`` is ignored: CoreML has no thread setting. ``run`` takes what the input is declared as: an array,
    or a PIL image for an image input (``handle.get_spec()`` says which)."""
    if sys.platform != "darwin":
        raise RuntimeUnavailable("CoreML runs only on macOS")
    import coremltools as ct

    try:
        model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.ALL)
    except Exception as e:  # noqa: BLE001
        raise LoadError(f"coremltools could not load {Path(path).name}: {_first_line(e)}") from None
    spec = model.get_spec().description
    name, output = spec.input[0].name, spec.output[0].name
    return Loaded(run=lambda x: np.asarray(model.predict({name: x})[output]), input=None,
                  settings={"compute_units": "ALL", "note": "CoreML has no thread setting"}, handle=model)


def _import_torch() -> None:
    import torch  # noqa: F401

    from models import list_models

    list_models()  # imports torchvision and registers architectures: import cost, not model load cost


def load_torch(path: Path, *, threads: int) -> Loaded:
    """A checkpoint in eager fp32. Torch's thread counts are process-global: a caller that interleaves runtimes
    re-applies ``torch.set_num_threads`` before each turn."""
    import torch

    from models import load_checkpoint

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (or the inter-op pool started) in this process: the value in effect is read back
    model, _ = load_checkpoint(path)
    model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    # the network is fully convolutional: any square size runs (the benchmark may run it at another size)
    return Loaded(run=run, input=((1, 3, None, None), "float32"),
                  settings={"intra_op_threads": threads, "inter_op_threads": torch.get_num_interop_threads(),
                            "mode": "eager fp32"}, handle=model)


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime("torch", _import_torch, load_torch),
    Runtime("onnxruntime", _import_onnxruntime, load_onnxruntime),
    Runtime("litert", _import_litert, load_litert),
    Runtime("coreml", _import_coreml, load_coreml),
)}
