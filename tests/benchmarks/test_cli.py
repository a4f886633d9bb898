"""The ssdkd-bench command: exit codes, one-line errors, failed and unsupported rows, --compare."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main

QUICK = ["--runs", "10", "--min-seconds", "0.05", "--warmup", "1", "--no-memory", "--no-plots", "--no-progress"]


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/export"], "not found"),
    (["{x}", "--threads", "0"], "--threads must list integers >= 1"),
    (["{x}", "--runtimes", "tensorrt"], "unknown runtime 'tensorrt'"),
    (["{x}", "--target", "pixel9"], "unknown --target 'pixel9'"),
    (["{x}", "--runs", "0"], "--runs must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(onnx_export: Path, tmp_path: Path, capsys, args, message):
    args = [a.replace("{x}", str(onnx_export)) for a in args] + ["--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_contract_mismatch_fails_the_runtime_and_exit_1(onnx_export: Path, tmp_path: Path, capsys):
    """A sidecar that disagrees with the model (NHWC for an NCHW ONNX) is a failed row naming the runtime."""
    d = tmp_path / "bad"
    d.mkdir()
    shutil.copy(onnx_export / "model_fp32.onnx", d)
    side = json.loads((onnx_export / "model_fp32.preprocessing.json").read_text())
    (d / "model_fp32.preprocessing.json").write_text(json.dumps({**side, "layout": "NHWC"}))
    out = tmp_path / "out"
    assert main([str(d / "model_fp32.onnx"), "--out", str(out), *QUICK]) == 1
    err = capsys.readouterr().err
    assert "runtime(s) failed: onnxruntime" in err and "preprocessing contract says input NHWC" in err
    row = json.loads((out / "results.json").read_text())["rows"][0]
    assert row["status"].startswith("failed:") and row["latency"] is None  # still a row, with its status


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS CoreML actually runs")
def test_coreml_row_is_unsupported_off_macos(tmp_path: Path, capsys):
    pkg = tmp_path / "model_fp16.mlpackage"
    (pkg / "Data").mkdir(parents=True)
    (pkg / "Manifest.json").write_text("{}")
    (tmp_path / "model_fp16.preprocessing.json").write_text(json.dumps(
        {"schema_version": 1, "input_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "labels": ["a", "b"]}))
    assert main([str(pkg), "--out", str(tmp_path / "o"), "--runs", "10", "--min-seconds", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "unsupported: CoreML runs only on macOS" in out
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["rows"][0]["latency"] is None and doc["failures"] == []


def test_compare_files_and_after_a_run(host_results, onnx_export: Path, tmp_path: Path, capsys):
    old = copy.deepcopy(host_results.doc)
    for r in old["rows"]:
        r["latency"]["p50_ms"] *= 2  # the new run is then 50 % faster on every row
    old["rows"].append({**old["rows"][0], "artifact": "gone.onnx"})
    old_path = tmp_path / "old.json"
    old_path.write_text(json.dumps(old))
    assert main([str(host_results.files["json"]), "--compare", str(old_path)]) == 0
    text = capsys.readouterr().out
    assert "| model_int8.onnx | onnxruntime | 1 |" in text and "(-50.0%)" in text
    assert "| gone.onnx |" in text and "removed" in text
    # With a run: the comparison is printed and saved beside the new results.
    out = tmp_path / "new"
    assert main([str(onnx_export / "model_int8.onnx"), "--out", str(out), "--compare", str(old_path),
                 "--runtimes", "onnxruntime", *QUICK]) == 0
    saved = (out / "compare.md").read_text()
    assert "# ssdkd-bench comparison" in saved and "| model_fp32.onnx | onnxruntime | 1 | removed" in saved
    assert main([str(host_results.files["json"])]) == 2  # a results file alone is not a run


def test_export_latency_script(onnx_export: Path, capsys):
    from benchmarks.export_latency import main as export_latency

    assert export_latency([str(onnx_export), "--runs", "10", "--min-seconds", "0.05", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "pytorch_fp32" in out and "model_int8.onnx" in out and "1.00x" in out
