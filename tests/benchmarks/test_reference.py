"""--reference: third-party .tflite/.onnx files without a preprocessing contract race beside the user's artifacts
(latency and memory only, random input of the model's own shape and dtype) and the p50 ratio is printed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.artifacts import reference_file
from benchmarks.cli import main
from benchmarks.runners import read_model

QUICK = ["--runs", "3", "--min-seconds", "0", "--warmup", "1", "--no-memory", "--no-plots", "--no-progress"]


def tiny_onnx(path: Path) -> Path:
    """A conv -> global pool -> flatten fp32 ONNX with a dynamic batch dimension (no preprocessing contract)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any onnxruntime of the pinned range
    onnx.save(model, str(path))
    return path


def test_read_model_precision_and_input(google_int8_tflite: Path, onnx_export: Path, tmp_path: Path):
    spec, precision = read_model(reference_file(google_int8_tflite))
    assert (precision, spec.dtype, spec.shape) == ("int8", "uint8", (1, 224, 224, 3))
    x = spec.random_input()
    assert x.dtype == np.uint8 and x.shape == (1, 224, 224, 3)
    spec, precision = read_model(reference_file(tiny_onnx(tmp_path / "tiny.onnx")))
    assert (precision, spec.dtype, spec.shape) == ("fp32", "float32", (1, 3, 16, 16))  # dynamic batch -> 1
    assert read_model(reference_file(onnx_export / "model_int8.onnx"))[1] == "int8"  # QDQ nodes
    assert read_model(reference_file(onnx_export / "model_fp32.onnx"))[1] == "fp32"


def test_reference_rows_and_ratio(google_int8_tflite: Path, onnx_export: Path, tmp_path: Path, capsys):
    tiny = tiny_onnx(tmp_path / "tiny_ref.onnx")
    out = tmp_path / "out"
    assert main([str(onnx_export / "model_fp32.onnx"), "--runtimes", "onnxruntime", "--reference",
                 str(google_int8_tflite), "--reference", str(tiny), "--out", str(out), *QUICK]) == 0
    text = capsys.readouterr().out
    doc = json.loads((out / "results.json").read_text())
    rows = {r["artifact"]: r for r in doc["rows"]}
    assert list(rows) == ["model_fp32.onnx", google_int8_tflite.name, "tiny_ref.onnx"]  # torch left out
    assert rows["model_fp32.onnx"]["reference"] is False
    for name, runtime, precision in ((google_int8_tflite.name, "litert", "int8"),
                                     ("tiny_ref.onnx", "onnxruntime", "fp32")):
        r = rows[name]
        assert (r["reference"], r["runtime"], r["precision"], r["status"]) == (True, runtime, precision, "ok")
        assert r["accuracy"] is None and r["p50_ratio_to_torch"] is None and r["latency"]["n"] >= 3
        assert f"| {name} (reference) | {runtime} | {precision} | 1 | ok |" in text
    # Only the same runtime and precision family race: the fp32 ONNX against the fp32 ONNX reference.
    [ratio] = doc["reference_ratios"]
    mine, ref = rows["model_fp32.onnx"]["latency"]["p50_ms"], rows["tiny_ref.onnx"]["latency"]["p50_ms"]
    assert (ratio["artifact"], ratio["reference"], ratio["threads"]) == ("model_fp32.onnx", "tiny_ref.onnx", 1)
    assert ratio["p50_ratio"] == pytest.approx(mine / ref)
    assert f"- model_fp32.onnx / tiny_ref.onnx (1 thread): {mine / ref:.2f}x p50 latency" in text
    assert "random data of the model's own input shape and dtype" in doc["settings"]["input"]
    assert (out / "results.csv").read_text().splitlines()[0].endswith(",reference")


def test_references_only_race_with_memory(google_int8_tflite: Path, tmp_path: Path):
    """Two references and nothing else: the first is the baseline; memory is probed like any artifact's."""
    from benchmarks.harness import run_benchmark

    copy = shutil.copy(google_int8_tflite, tmp_path / "copy_int8.tflite")
    res = run_benchmark([], references=[google_int8_tflite, copy], threads="1", runs=3, min_seconds=0, warmup=1,
                        memory_runs=2, out=tmp_path / "out", plots=False, progress=False)
    assert res.failures == [] and all(r["reference"] for r in res.rows)
    for r in res.rows:
        assert r["memory"]["load_peak_delta_mb"] > 0 and r["memory"]["threads"] == 1
    [ratio] = res.doc["reference_ratios"]
    assert (ratio["artifact"], ratio["reference"]) == ("copy_int8.tflite", google_int8_tflite.name)
    md = res.files["md"].read_text()
    assert f"- copy_int8.tflite / {google_int8_tflite.name} (1 thread): " in md and "x p50 latency" in md


@pytest.mark.parametrize("name, problem", [("missing.tflite", "not found"), ("model.txt", "unknown type '.txt'")])
def test_bad_reference_is_one_line_and_exit_2(onnx_export: Path, tmp_path: Path, capsys, name: str, problem: str):
    bad = tmp_path / name
    if name.endswith(".txt"):
        bad.write_text("not a model")
    assert main([str(onnx_export), "--reference", str(bad), "--out", str(tmp_path / "o"), *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ssdkd-bench: --reference {bad}: {problem}; expected an existing .tflite or .onnx file"


def test_unloadable_reference_is_a_failed_row(tmp_path: Path, capsys):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    assert main(["--reference", str(bad), "--out", str(tmp_path / "o"), *QUICK]) == 1
    assert "onnxruntime could not load broken.onnx" in capsys.readouterr().err
    row = json.loads((tmp_path / "o" / "results.json").read_text())["rows"][0]
    assert row["status"].startswith("failed:") and row["reference"] is True
