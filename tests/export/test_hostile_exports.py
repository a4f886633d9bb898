"""The export part of the bad-input corpus (docs/robustness.md; the rest is tests/test_hostile_inputs.py): exports
with different targets into one dir keep every sidecar true, an oversized image is a one-line error for export and
bench, and Ctrl-C / SIGTERM during an export exit cleanly."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from benchmarks.artifacts import find_sidecar
from benchmarks.cli import main as bench_main
from distill.data import load_labeled_images, load_split
from export import Gate, export
from export.cli import main as export_main
from export.formats import plan
from models.errors import InputError
from tests.conftest import SAMPLE
from tests.test_hostile_inputs import (
    QUICK_BENCH,
    _bomb_png,
    _no_leftovers,
    _one_line,
    _sample_with,
    _signal_when,
    _start,
)


def test_a_second_export_never_takes_an_earlier_artifacts_sidecar_name(tmp_path):
    (tmp_path / "model_fp32.onnx").write_bytes(b"onnx")
    (tmp_path / "model_fp32.preprocessing.json").write_text(json.dumps({"model_file": "model_fp32.onnx"}))
    sidecars = {s.file: s.sidecar for s in plan(["tflite"], int8=False, fp16=False, out_dir=tmp_path)}
    assert sidecars == {"model_fp32.tflite": "model_fp32.tflite.preprocessing.json"}
    # the ONNX file exported again keeps its own sidecar; a sidecar of a file no longer there is free to take
    assert plan(["onnx"], int8=False, fp16=False, out_dir=tmp_path)[0].sidecar == "model_fp32.preprocessing.json"
    (tmp_path / "model_fp32.onnx").unlink()
    assert plan(["tflite"], int8=False, fp16=False, out_dir=tmp_path)[0].sidecar == "model_fp32.preprocessing.json"
    # a file that has a <file> sidecar keeps it, so no stale contract of it is found first
    (tmp_path / "model_fp32.tflite.preprocessing.json").write_text("{}")
    assert plan(["tflite"], int8=False, fp16=False, out_dir=tmp_path)[0].sidecar == \
        "model_fp32.tflite.preprocessing.json"


@pytest.fixture(scope="module")
def mixed_dir(exported, export_checkpoint, tmp_path_factory) -> Path:
    """A TFLite-only export's files (from the shared export: its fp32 TFLite, the sidecar under the name a TFLite-only
    export gives it), then a real ONNX export into the same dir (fp32, 8 val images, no gate)."""
    out = tmp_path_factory.mktemp("mixed") / "export"
    out.mkdir()
    shutil.copy(exported.out_dir / "model_fp32.tflite", out)
    shutil.copy(exported.out_dir / exported.artifact("model_fp32.tflite").preprocessing,
                out / "model_fp32.preprocessing.json")
    report = export(export_checkpoint, targets="onnx", out_dir=out, val_size=8, val_orientations=1,
                    gate=Gate(enabled=False), verbose=False)
    assert report.passed, report.failures
    return out


def test_mixed_target_exports_keep_every_sidecar_true_and_each_file_benchmarks(mixed_dir, tmp_path):
    tflite_side = json.loads((mixed_dir / "model_fp32.preprocessing.json").read_text())
    onnx_side = json.loads((mixed_dir / "model_fp32.onnx.preprocessing.json").read_text())
    assert (tflite_side["model_file"], tflite_side["layout"]) == ("model_fp32.tflite", "NHWC")
    assert (onnx_side["model_file"], onnx_side["layout"]) == ("model_fp32.onnx", "NCHW")
    for i, name in enumerate(("model_fp32.onnx", "model_fp32.tflite")):
        out = tmp_path / str(i)
        assert bench_main([str(mixed_dir / name), "--out", str(out), *QUICK_BENCH]) == 0, name
        assert json.loads((out / "results.json").read_text())["rows"][-1]["status"] == "ok"


def test_bench_never_pairs_an_artifact_with_another_ones_sidecar(mixed_dir, tmp_path, capsys):
    """A dir as two exports left it before the fix: the shared sidecar describes the TFLite file."""
    d = tmp_path / "old"
    d.mkdir()
    for name in ("model_fp32.onnx", "model_fp32.tflite", "model_fp32.preprocessing.json"):
        shutil.copy(mixed_dir / name, d)
    with pytest.raises(InputError, match="model_fp32.preprocessing.json describes another file beside it"):
        find_sidecar(d / "model_fp32.onnx")
    assert bench_main([str(d / "model_fp32.onnx"), "--out", str(tmp_path / "o"), *QUICK_BENCH]) == 2
    assert "describes another file beside it" in _one_line(capsys)


def test_export_and_bench_refuse_an_oversized_image_in_one_line(export_checkpoint, mixed_dir, tmp_path, capsys):
    split_file = Path(export_checkpoint).parent / "split.json"
    bomb = load_split(split_file, load_labeled_images(SAMPLE)).val[0]
    root = _sample_with(tmp_path / "ds", {bomb: _bomb_png})
    out = tmp_path / "export"
    assert export_main([str(export_checkpoint), "--target", "onnx", "--val", str(root), "--out", str(out), "-q"]) == 2
    assert f"{bomb}.jpg: image is 16000x16000" in _one_line(capsys)
    assert not out.exists()  # the output dir is created only once the inputs have been read
    assert bench_main([str(mixed_dir / "model_fp32.onnx"), "--data", str(root), "--split", "val", "--split-file",
                       str(split_file), "--out", str(tmp_path / "bench"), *QUICK_BENCH]) == 2
    assert f"{bomb}.jpg: image is 16000x16000" in _one_line(capsys)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_signal_during_export_exits_cleanly(export_checkpoint, tmp_path, sig, code, word):
    out = tmp_path / "export"
    proc, err = _start(["export.cli", str(export_checkpoint), "--target", "onnx", "--int8", "--calib-size", "32",
                        "--val-orientations", "1", "--no-gate", "--out", str(out), "-q"], tmp_path)
    assert _signal_when(proc, lambda: (out / "labels.txt").exists(), sig, err) == code
    text = err.read_text()
    assert "Traceback" not in text and text.strip().splitlines()[-1] == f"ssdkd-export: {word}", text[-2000:]
    _no_leftovers(tmp_path, out)
