"""Artifact discovery: export reports, single files and their sidecars (no model is loaded here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.artifacts import discover, find_sidecar, parse_runtimes
from benchmarks.plan import preprocessing_for
from models import load_checkpoint
from models.errors import InputError

SIDE = {"schema_version": 1, "input_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "labels": ["a", "b"]}


def _export_dir(tmp_path: Path, files: dict[str, str], missing: tuple[str, ...] = ()) -> Path:
    d = tmp_path / "export"
    d.mkdir()
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"x")
    entries = []
    for name, runtime in files.items():
        stem = name.rsplit(".", 1)[0]
        if name not in missing:
            (d / name).write_bytes(b"model")
        (d / f"{stem}.preprocessing.json").write_text(json.dumps(SIDE))
        entries.append({"file": name, "target": name.rsplit(".", 1)[1], "precision": stem.split("_", 1)[1],
                        "runtime": runtime, "preprocessing": f"{stem}.preprocessing.json", "size_bytes": 5,
                        "verification": {"status": "failed" if name in missing else "passed",
                                         "reason": "export failed: boom" if name in missing else ""}})
    (d / "export_report.json").write_text(json.dumps({"schema_version": 1, "checkpoint": str(ckpt), "card": {},
                                                      "artifacts": entries}))
    return d


def test_export_dir_gives_reference_first_and_every_artifact(tmp_path: Path):
    d = _export_dir(tmp_path, {"model_fp32.onnx": "onnxruntime", "model_int8.tflite": "litert",
                               "model_int8_fio.tflite": "litert", "model_fp16.mlpackage": "coreml"})
    arts, ckpt = discover([d])
    assert [a.name for a in arts] == ["pytorch_fp32", "model_fp32.onnx", "model_int8.tflite",
                                      "model_int8_fio.tflite", "model_fp16.mlpackage"]
    assert ckpt == (tmp_path / "best.pt").resolve()
    assert arts[2].precision == "int8" and arts[3].precision == "int8_fio" and arts[2].runtime == "litert"
    assert arts[1].preprocessing == d / "model_fp32.preprocessing.json"
    only, _ = discover([d], runtimes=parse_runtimes("tflite"))
    assert {a.runtime for a in only} == {"litert"}


def test_missing_listed_artifact_becomes_a_problem_not_a_crash(tmp_path: Path):
    d = _export_dir(tmp_path, {"model_fp32.onnx": "onnxruntime", "model_int8.onnx": "onnxruntime"},
                    missing=("model_int8.onnx",))
    arts, _ = discover([d])
    bad = [a for a in arts if a.problem]
    assert [a.name for a in bad] == ["model_int8.onnx"] and "export failed: boom" in bad[0].problem


def test_single_file_sidecar_lookup(tmp_path: Path):
    m = tmp_path / "model_int8.tflite"
    m.write_bytes(b"m")
    with pytest.raises(InputError, match="no preprocessing sidecar"):
        discover([m])
    (tmp_path / "preprocessing.json").write_text(json.dumps(SIDE))  # Android assets layout
    assert find_sidecar(m) == tmp_path / "preprocessing.json"
    (tmp_path / "model_int8.preprocessing.json").write_text(json.dumps(SIDE))
    assert find_sidecar(m) == tmp_path / "model_int8.preprocessing.json"
    arts, ckpt = discover([m])
    assert ckpt is None and arts[0].precision == "int8" and arts[0].runtime == "litert"


def test_same_file_name_in_two_dirs_is_disambiguated(tmp_path: Path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "model.onnx").write_bytes(b"m")
        (tmp_path / sub / "model.preprocessing.json").write_text(json.dumps(SIDE))
    arts, _ = discover([tmp_path / "a" / "model.onnx", tmp_path / "b" / "model.onnx"])
    assert [a.name for a in arts] == ["a/model.onnx", "b/model.onnx"]
    assert arts[0].precision == "fp32"  # from the sidecar's float32 input


def test_bad_inputs(tmp_path: Path):
    with pytest.raises(InputError, match="unknown runtime 'tensorrt'"):
        parse_runtimes("torch,tensorrt")
    assert parse_runtimes("tflite,ort,pytorch") == ("litert", "onnxruntime", "torch")
    with pytest.raises(InputError, match="not found"):
        discover([tmp_path / "nothing"])
    with pytest.raises(InputError, match="unknown artifact type"):
        (tmp_path / "x.bin").write_bytes(b"")
        discover([tmp_path / "x.bin"])
    m = tmp_path / "model.onnx"
    m.write_bytes(b"m")
    (tmp_path / "model.preprocessing.json").write_text(json.dumps(SIDE))
    with pytest.raises(InputError, match="checkpoint not found"):
        discover([m], checkpoint=tmp_path / "ghost.pt")


def test_reference_runs_at_the_artifacts_input_size(tmp_path: Path, trained_checkpoint):
    """An export made with --imgsz 96 from a 64-px checkpoint: "p50 / torch" must compare 96 px with 96 px."""
    d = _export_dir(tmp_path, {"model_fp32.onnx": "onnxruntime", "model_int8.tflite": "litert"})
    for side in d.glob("*.preprocessing.json"):
        side.write_text(json.dumps({**SIDE, "input_size": 96}))
    arts, _ = discover([d], checkpoint=trained_checkpoint)
    assert arts[0].is_reference and arts[0].input_size == 96
    assert preprocessing_for(arts[0]).input_size == 96
    (d / "model_int8.preprocessing.json").write_text(json.dumps(SIDE))  # mixed sizes: the card's own size
    arts, _ = discover([d], checkpoint=trained_checkpoint)
    assert arts[0].input_size is None
    assert preprocessing_for(arts[0]).input_size == load_checkpoint(trained_checkpoint)[1].input_size
