"""The format table and up-front request validation (fast: no conversion)."""

from __future__ import annotations

import sys

import pytest

from export import Gate
from export.formats import FORMATS, check_dependencies, plan, resolve_targets, validate_flags
from models.errors import InputError


def test_targets_resolve_in_table_order():
    assert resolve_targets("all") == list(FORMATS)
    assert resolve_targets("tflite,onnx") == ["onnx", "tflite"]
    assert resolve_targets(["coreml", "coreml"]) == ["coreml"]


def test_unknown_target_suggests_closest():
    with pytest.raises(InputError, match=r"'tflte'.*did you mean 'tflite'"):
        resolve_targets("tflte")


def test_flag_no_target_accepts_is_an_error():
    with pytest.raises(InputError, match="--fp16 does not apply to target.*onnx.*it applies to tflite, coreml"):
        validate_flags(["onnx"], int8=False, fp16=True)
    validate_flags(["onnx", "tflite"], int8=True, fp16=True)  # accepted where it applies


def test_plan_is_the_harness_layout():
    files = [s.file for s in plan(list(FORMATS), int8=True, fp16=True)]
    assert files == ["model_fp32.onnx", "model_int8.onnx", "model_fp32.tflite", "model_fp16.tflite",
                     "model_int8.tflite", "model_int8_fio.tflite", "model_fp16.mlpackage", "model_int8.mlpackage"]
    sidecars = {s.file: s.sidecar for s in plan(["tflite"], int8=True, fp16=False)}
    assert sidecars["model_int8.tflite"] == "model_int8.preprocessing.json"
    # where two targets share a stem, the full file name keeps their (different) contracts apart
    sidecars = {s.file: s.sidecar for s in plan(["onnx", "tflite"], int8=True, fp16=False)}
    assert sidecars["model_fp32.onnx"] == "model_fp32.onnx.preprocessing.json"
    assert sidecars["model_int8.tflite"] == "model_int8.tflite.preprocessing.json"
    assert sidecars["model_int8_fio.tflite"] == "model_int8_fio.preprocessing.json"
    assert len(set(sidecars.values())) == len(sidecars)
    assert [s.file for s in plan(["tflite"], int8=False, fp16=False)] == ["model_fp32.tflite"]


def test_missing_dependency_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # makes `import coremltools` raise ImportError
    with pytest.raises(InputError, match=r"coremltools.*pip install 'ssdkd\[coreml\]'"):
        check_dependencies(["coreml"])


def test_missing_dependency_from_main(monkeypatch, capsys, tmp_path):
    from export.cli import main

    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", None)
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(b"")  # never read: dependencies are checked before the checkpoint is loaded
    assert main([str(ckpt), "--target", "tflite", "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    # (library log lines that bypass the fd-level capture under pytest's capsys may precede it)
    ours = [line for line in err.splitlines() if line.startswith("ssdkd-export: error:")]
    assert len(ours) == 1 and "pip install 'ssdkd[tflite]'" in ours[0] and "Traceback" not in err


def test_gate_rejects_nonsense():
    with pytest.raises(ValueError):
        Gate(min_agreement=97.0)  # a fraction, not a percentage
    with pytest.raises(ValueError):
        Gate(max_bacc_drop=-1)
