"""No half-written artifact ever has its final name; a converter crash is a failed row, not a lost report."""

from __future__ import annotations

import json

import onnx
import pytest

from export import export
from export.cli import main


def test_crash_mid_write_leaves_no_final_file(export_checkpoint, tmp_path, monkeypatch):
    def half_write(model, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"\x08\x07partial")  # a truncated protobuf
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(onnx, "save", half_write)
    out = tmp_path / "out"
    report = export(export_checkpoint, targets="onnx", out_dir=out, verbose=False)
    row = report.artifact("model_fp32.onnx")
    assert row.verification.status == "failed" and "disk full" in row.verification.reason
    assert not (out / "model_fp32.onnx").exists() and not (out / "model_fp32.preprocessing.json").exists()
    # no temp leftovers; the reference's reliability diagram is the PyTorch model's, written before any target
    assert sorted(p.name for p in out.iterdir()) == ["export_report.json", "labels.txt", "reliability.png"]
    assert json.loads((out / "export_report.json").read_text())["artifacts"][0]["verification"]["status"] == "failed"
    assert main([str(export_checkpoint), "--target", "onnx", "--out", str(out), "-q"]) == 1


@pytest.mark.parametrize("dynamic", [False, True])
def test_imgsz_and_dynamic_batch(export_checkpoint, tmp_path, dynamic):
    import numpy as np
    import onnxruntime as ort

    from models.preprocessing import Preprocessing

    out = tmp_path / "out"
    report = export(export_checkpoint, targets="onnx", out_dir=out, imgsz=48, dynamic_batch=dynamic, verbose=False)
    assert report.passed and report.settings["imgsz"] == 48
    assert Preprocessing.load(out / "model_fp32.preprocessing.json").input_size == 48
    sess = ort.InferenceSession(str(out / "model_fp32.onnx"), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    assert inp.name == "input" and sess.get_outputs()[0].name == "logits"
    assert inp.shape[1:] == [3, 48, 48] and (isinstance(inp.shape[0], str) if dynamic else inp.shape[0] == 1)
    if dynamic:
        assert sess.run(None, {"input": np.zeros((3, 3, 48, 48), np.float32)})[0].shape == (3, 8)
