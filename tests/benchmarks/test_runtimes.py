"""The one runtime layer: export verification and the benchmark harness load a file through the same loader, so
they run it with the same session settings (a second loader with other settings makes these tests fail)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.artifacts import Artifact
from benchmarks.runners import InputSpec, RunnerError, make_runner
from export import runtimes
from export.calibration import ImageSet
from export.runtimes import RUNTIMES, Loaded, Runtime
from export.verify import Gate, verify_artifact
from models.preprocessing import Preprocessing

SIZE, LABELS = 4, ("a", "b", "c")


def _tiny_onnx(path: Path) -> Path:
    """NCHW float input, 3 logits: the per-channel mean of the image."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _images() -> ImageSet:
    x = np.random.default_rng(0).normal(size=(3, SIZE, SIZE, 3)).astype(np.float32)
    return ImageSet(x=x, labels=np.array([0, 1, 2]), root=Path("."), split="val", split_source="test")


def _verify(path: Path, runtime: str, threads: int):
    pre = Preprocessing(input_size=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), labels=LABELS)
    images = _images()
    ref = images.x.mean(axis=(1, 2))  # what the tiny model computes: the verification must pass with agreement 1
    return verify_artifact(path, runtime, pre, images, ref, None, Gate(), threads=threads)


def _bench_runner(path: Path, runtime: str, threads: int):
    artifact = Artifact(path.name, path, runtime, "fp32", "onnx", None, 1)
    return make_runner(artifact, threads, InputSpec("NCHW", SIZE, "float32"))


def test_runtime_keys_are_the_names_the_format_table_uses():
    from export.formats import FORMATS

    assert {f.runtime for f in FORMATS.values()} <= set(RUNTIMES)
    assert all(name == rt.name for name, rt in RUNTIMES.items())


def test_verifier_and_benchmark_open_onnx_sessions_with_the_same_options(tmp_path, monkeypatch):
    import onnxruntime as ort

    opened = []

    class Recording(ort.InferenceSession):
        def __init__(self, path, options, **kw):
            opened.append((options.intra_op_num_threads, options.inter_op_num_threads, options.execution_mode,
                           options.graph_optimization_level,
                           options.get_session_config_entry("session.intra_op.allow_spinning"), kw["providers"]))
            super().__init__(path, options, **kw)

    monkeypatch.setattr(ort, "InferenceSession", Recording)
    path = _tiny_onnx(tmp_path / "tiny.onnx")
    v = _verify(path, "onnxruntime", threads=2)
    runner = _bench_runner(path, "onnxruntime", threads=2)
    runner.load()
    assert v.status == "passed" and v.agreement == 1.0
    assert opened == [(2, 1, ort.ExecutionMode.ORT_SEQUENTIAL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "0",
                       ["CPUExecutionProvider"])] * 2
    assert runner.settings() == {"threads": 2, "intra_op_threads": 2, "inter_op_threads": 1,
                                 "execution_mode": "sequential", "graph_optimization_level": "all",
                                 "allow_spinning": False, "provider": "CPUExecutionProvider"}


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert"])
def test_verifier_and_benchmark_both_load_through_the_runtime_table(runtime, tmp_path, monkeypatch):
    calls = []

    def load(path: Path, *, threads: int) -> Loaded:
        calls.append((path, threads))
        return Loaded(run=lambda x: x.mean(axis=(2, 3)), input=((1, 3, SIZE, SIZE), "float32"),
                      settings={"loader": "the one"}, handle=None)

    monkeypatch.setitem(RUNTIMES, runtime, Runtime(runtime, lambda: None, load))
    path = tmp_path / "model.bin"
    _verify(path, runtime, threads=3)
    runner = _bench_runner(path, runtime, threads=3)
    runner.load()
    assert calls == [(path, 3), (path, 3)]
    assert runner.settings() == {"threads": 3, "loader": "the one"}


def test_a_file_the_runtime_cannot_load_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(runtimes.LoadError, match=r"^onnxruntime could not load broken\.onnx: \w+") as e:
        RUNTIMES["onnxruntime"].load(bad, threads=1)
    assert "\n" not in str(e.value)
    with pytest.raises(RunnerError, match="onnxruntime could not load broken.onnx"):
        _bench_runner(bad, "onnxruntime", threads=1).load()


def test_the_runtime_layer_does_not_import_torch():
    # A memory probe (benchmarks.memory) imports the runners in a fresh process and must pay only for the runtime
    # it measures: reaching the loaders through the export package must not import torch.
    import subprocess
    import sys

    code = "import sys, benchmarks.runners; print(sorted({'torch', 'onnxruntime'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
