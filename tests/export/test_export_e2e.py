"""One full export (all targets, int8 + fp16, Android assets): every file reloads in its runtime and keeps its
contract. Shares the session fixture ``exported`` so the conversions run once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from export import export
from export.calibration import read_split_images
from export.formats import plan
from export.runtimes import RUNTIMES
from export.verify import run_artifact
from models import load_checkpoint
from models.preprocessing import Preprocessing

pytestmark = pytest.mark.slow
ALL_FILES = [s.file for s in plan(["onnx", "tflite", "coreml"], int8=True, fp16=True, a16w8=True)]


def _val(report):
    model, card = load_checkpoint(report.checkpoint)
    images = read_split_images(card.data["root"], "val", card, report.checkpoint, card.preprocessing(), None)
    return model, card, images


def test_layout_and_report(exported):
    out = exported.out_dir
    sidecars = {a.file: a.preprocessing for a in exported.artifacts}
    assert len(set(sidecars.values())) == len(ALL_FILES)  # one contract per artifact, none shared
    for f in ALL_FILES:
        assert (out / f).exists(), f
        assert (out / sidecars[f]).is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind
    d = json.loads((out / "export_report.json").read_text())
    assert d["schema_version"] == 1 and Path(d["checkpoint"]).is_absolute()
    assert d["card"]["arch"] == "mobilenet_v2" and d["settings"]["int8"] is True
    assert [a["file"] for a in d["artifacts"]] == ALL_FILES
    runtimes = {a["file"]: a["runtime"] for a in d["artifacts"]}
    assert runtimes["model_int8.onnx"] == "onnxruntime" and runtimes["model_int8.tflite"] == "litert"
    assert runtimes["model_fp16.mlpackage"] == "coreml"
    for a in d["artifacts"]:
        assert a["size_bytes"] > 0 and a["export_seconds"] > 0
        assert set(a["verification"]) >= {"status", "reason", "agreement", "max_abs_dsoftmax", "mean_l1_dsoftmax",
                                          "accuracy", "balanced_accuracy", "n_images"}
    assert 0 <= d["reference"]["balanced_accuracy"] <= 1 and d["reference"]["n_images"] > 30
    # calibration figures: the fixture checkpoint has no fitted temperature, so T = 1 and one curve
    cal = d["reference"]["calibration"]
    assert not cal["fitted"] and cal["temperature"] == 1.0 and 0 < cal["ece_before"] == cal["ece_after"] < 1
    assert (out / cal["reliability"]).is_file()
    for a in d["artifacts"]:
        if a["runtime"] != "coreml":
            assert 0 < a["verification"]["ece_before"] < 1 and a["verification"]["ece_after"] is not None
    # calibration (train) and verification (val) are disjoint splits of the same split file
    assert d["settings"]["calib"]["split"] == "train" and d["settings"]["val"]["split"] == "val"
    # int8 really is smaller
    size = {a["file"]: a["size_bytes"] for a in d["artifacts"]}
    assert size["model_int8.tflite"] < 0.45 * size["model_fp32.tflite"]
    assert size["model_int8.onnx"] < 0.45 * size["model_fp32.onnx"]


def test_a_calibrated_checkpoint_exports_its_temperature(export_checkpoint, tmp_path):
    from distill.stages import calibrate_checkpoint

    _, card = load_checkpoint(export_checkpoint)
    shutil.copy(export_checkpoint.parent / card.data["split_file"], tmp_path / card.data["split_file"])
    record = calibrate_checkpoint(export_checkpoint, card.data["root"], out=tmp_path / "best.pt")
    report = export(tmp_path / "best.pt", targets="onnx", out_dir=tmp_path / "out", val_size=None, verbose=False)
    pre = Preprocessing.load(report.out_dir / report.artifact("model_fp32.onnx").preprocessing)
    assert pre.temperature == record["temperature"] != 1.0
    cal = report.reference["calibration"]
    assert cal["fitted"] and cal["temperature"] == record["temperature"] and cal["ece_after"] != cal["ece_before"]
    # the temperature moves the calibration error, never the argmax: fp32 still agrees with PyTorch everywhere
    v = report.artifact("model_fp32.onnx").verification
    assert v.status == "passed" and v.agreement == 1.0 and v.balanced_accuracy == report.reference["balanced_accuracy"]
    assert v.ece_after == pytest.approx(cal["ece_after"], abs=1e-3) and v.ece_before != v.ece_after
    assert f"T = {record['temperature']:.3f} (the checkpoint's" in report.table()


def test_fp32_artifacts_match_pytorch_exactly(exported):
    model, card, images = _val(exported)
    with torch.no_grad():
        ref = model(torch.from_numpy(np.ascontiguousarray(images.x.transpose(0, 3, 1, 2)))).numpy()
    for f in ("model_fp32.onnx", "model_fp32.tflite"):
        path, spec = exported.out_dir / f, exported.artifact(f)
        pre = Preprocessing.load(exported.out_dir / spec.preprocessing)
        logits = run_artifact(RUNTIMES[spec.runtime].load(path, threads=1).run, pre, images)
        assert np.abs(logits - ref).max() < 1e-4, f
        v = exported.artifact(f).verification
        assert v.status == "passed" and v.agreement == 1.0 and v.max_abs_dlogit < 1e-4


def test_reference_model_is_not_degenerate(exported):
    # Agreement only means something if the fp32 model does not predict one class for everything.
    model, card, images = _val(exported)
    with torch.no_grad():
        pred = model(torch.from_numpy(np.ascontiguousarray(images.x.transpose(0, 3, 1, 2)))).argmax(1)
    assert len(set(pred.tolist())) >= 3


def test_quantized_artifacts_pass_the_gate(exported):
    for f in ("model_fp16.tflite", "model_int8.onnx", "model_int8.tflite", "model_int8_fio.tflite",
              "model_a16w8.tflite"):
        v = exported.artifact(f).verification
        assert v.status == "passed", (f, v.reason)
        assert v.agreement >= 0.7 and v.n_images == exported.reference["n_images"]
    assert exported.passed


def test_tflite_is_nhwc_without_transposes_and_int8_inside(exported):
    from ai_edge_litert.interpreter import Interpreter

    s = exported.settings["imgsz"]
    for f in ("model_fp32.tflite", "model_int8.tflite", "model_int8_fio.tflite"):
        ops = exported.artifact(f).verification.checks["op_histogram"]
        assert "TRANSPOSE" not in ops and ops.get("CONV_2D", 0) > 0, (f, ops)
        it = Interpreter(model_path=str(exported.out_dir / f))
        assert list(it.get_input_details()[0]["shape"]) == [1, s, s, 3]
    io = {f: Interpreter(model_path=str(exported.out_dir / f)).get_input_details()[0]["dtype"]
          for f in ("model_int8.tflite", "model_int8_fio.tflite")}
    assert io == {"model_int8.tflite": np.int8, "model_int8_fio.tflite": np.float32}
    fio = exported.artifact("model_int8_fio.tflite").verification.checks["op_histogram"]
    # float only at the edges: QUANTIZE of the input, one int8 -> int16 requantize into the head, DEQUANTIZE out
    assert fio.get("QUANTIZE") == 2 and fio.get("DEQUANTIZE") == 1, fio
    for f in ("model_int8.tflite", "model_int8_fio.tflite"):
        out_dtypes = _op_output_dtypes(exported.out_dir / f)
        assert {d for op, d in out_dtypes if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN")} == {"int8"}, f
        # the head: 16-bit logits and softmax, so near-ties between classes are not rounded into exact ties
        assert {d for op, d in out_dtypes if op in ("FULLY_CONNECTED", "SOFTMAX")} == {"int16"}, f
        assert out_dtypes[-1][0] in ("SOFTMAX", "QUANTIZE", "DEQUANTIZE")


def test_a16w8_tflite_has_16_bit_activations_and_stays_closer_to_fp32(exported):
    from ai_edge_litert.interpreter import Interpreter

    f = exported.out_dir / "model_a16w8.tflite"
    it = Interpreter(model_path=str(f))
    assert it.get_input_details()[0]["dtype"] == np.float32 and it.get_output_details()[0]["dtype"] == np.float32
    out_dtypes = _op_output_dtypes(f)
    compute = {d for op, d in out_dtypes if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN",
                                                    "FULLY_CONNECTED", "SOFTMAX")}
    assert compute == {"int16"}, out_dtypes
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    weighted = [op for op in it._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                                                        "FULLY_CONNECTED")]
    assert weighted and all(np.dtype(tensors[op["inputs"][1]]["dtype"]) == np.int8 for op in weighted)
    pre = Preprocessing.load(exported.out_dir / exported.artifact("model_a16w8.tflite").preprocessing)
    assert pre.output_kind == "probabilities" and pre.input_dtype == "float32"
    # 16-bit activations leave the weights' rounding as nearly all of the error: far below the 8-bit files'
    a16, a8 = (exported.artifact(x).verification for x in ("model_a16w8.tflite", "model_int8_fio.tflite"))
    assert a16.mean_l1_dsoftmax < 0.5 * a8.mean_l1_dsoftmax, (a16.mean_l1_dsoftmax, a8.mean_l1_dsoftmax)


def _op_outputs(path: Path) -> list[tuple[str, dict]]:
    """(op name, details of its first output tensor) for every op of a .tflite, in graph order."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    return [(op["op_name"], tensors[op["outputs"][0]]) for op in it._get_ops_details()]


def _op_output_dtypes(path: Path) -> list[tuple[str, str]]:
    return [(op, np.dtype(t["dtype"]).name) for op, t in _op_outputs(path)]


def test_metadata_round_trips(exported):
    from export.onnx_export import read_metadata

    card = exported.card
    for f in ("model_fp32.onnx", "model_int8.onnx"):
        meta = read_metadata(exported.out_dir / f)
        assert json.loads(meta["labels"]) == card["labels"]
        assert json.loads(meta["mean"]) == card["mean"] and json.loads(meta["std"]) == card["std"]
        assert int(meta["input_size"]) == card["input_size"]
        assert json.loads(meta["model_card"]) == card
    quantization = json.loads(read_metadata(exported.out_dir / "model_int8.onnx")["quantization"])
    assert quantization["format"] == "QDQ"
    # one switch turns both fixes of the int8 weights off, so the file says which of them it has
    assert quantization["gptq_rounding"] is True and quantization["bias_correction"] is True
    _assert_float_onnx_head(exported.out_dir / "model_int8.onnx")
    labels = (exported.out_dir / "labels.txt").read_text().splitlines()
    assert labels == card["labels"]
    for a in exported.artifacts:
        pre = Preprocessing.load(exported.out_dir / a.preprocessing)
        assert pre.model_file == a.file and list(pre.labels) == labels and pre.input_size == card["input_size"]
        assert pre.layout == ("NCHW" if a.target == "onnx" else "NHWC")
    int8 = Preprocessing.load(exported.out_dir / exported.artifact("model_int8.tflite").preprocessing)
    assert int8.input_dtype == int8.output_dtype == "int8" and int8.input_scale > 0
    kinds = {a.file: Preprocessing.load(exported.out_dir / a.preprocessing).output_kind for a in exported.artifacts
             if a.target == "tflite"}
    assert kinds == {"model_fp32.tflite": "logits", "model_fp16.tflite": "logits",
                     "model_int8.tflite": "probabilities", "model_int8_fio.tflite": "probabilities",
                     "model_a16w8.tflite": "probabilities"}


def test_int8_tflite_outputs_are_probabilities_calibrated_on_the_whole_range(exported):
    """The int8 graphs end in softmax: outputs are probabilities that sum to ~1, on a grid of 1/256 (int8). The
    16-bit logits' range is the min/max over *all* calibration images: a running-average statistic (the
    quantizer's default) would clip it to a typical image's extremes."""
    model, card, _ = _val(exported)
    calib = read_split_images(card.data["root"], "train", card, exported.checkpoint, card.preprocessing(),
                              exported.settings["calib_size"])
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(calib.x.transpose(0, 3, 1, 2)))).numpy()
    bound = np.abs(logits).max()
    for f in ("model_int8.tflite", "model_int8_fio.tflite", "model_a16w8.tflite"):
        pre = Preprocessing.load(exported.out_dir / exported.artifact(f).preprocessing)
        probs = run_artifact(RUNTIMES["litert"].load(exported.out_dir / f, threads=1).run, pre, calib)
        assert np.abs(probs.sum(1) - 1).max() < 0.05, f
        fc_scale = _fc_output_scale(exported.out_dir / f)
        # symmetric int16: the grid spans +-32767 steps; bias correction moves logits by ~1e-3, hence the slack
        assert 0.97 * bound <= fc_scale * 32767 <= 1.03 * bound, (f, fc_scale * 32767, bound)
    int8 = Preprocessing.load(exported.out_dir / exported.artifact("model_int8.tflite").preprocessing)
    assert int8.output_scale == pytest.approx(1 / 256, rel=0.05)


def _fc_output_scale(path: Path) -> float:
    return float([t for op, t in _op_outputs(path) if op == "FULLY_CONNECTED"][-1]["quantization"][0])


def _assert_float_onnx_head(path: Path) -> None:
    """The logits of the int8 ONNX come straight from a float Gemm on dequantized features: no 8-bit grid on them."""
    import onnx

    from export.onnx_export import OUTPUT_NAME, read_metadata

    graph = onnx.load(str(path)).graph
    producers = {o: n for n in graph.node for o in n.output}
    head = producers[OUTPUT_NAME]
    assert head.op_type == "Gemm", head.op_type
    assert json.loads(read_metadata(path)["quantization"])["float_nodes"] == [head.name]
    assert producers[head.input[0]].op_type == "DequantizeLinear"  # its input is still the int8 graph's
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 10


def test_android_assets_are_the_contract(exported):
    from ai_edge_litert.interpreter import Interpreter

    assets = Path(exported.settings["android_demo_written"])
    assert assets.parts[-4:] == ("app", "src", "main", "assets")
    assert sorted(p.name for p in assets.iterdir()) == ["labels.txt", "model.tflite", "preprocessing.json"]
    pre = Preprocessing.load(assets / "preprocessing.json")
    assert pre.model_file == "model.tflite" and pre.layout == "NHWC"
    it = Interpreter(model_path=str(assets / "model.tflite"))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert np.dtype(inp["dtype"]).name == pre.input_dtype == "int8"
    assert np.dtype(out["dtype"]).name == pre.output_dtype == "int8"
    assert inp["quantization"] == pytest.approx((pre.input_scale, pre.input_zero_point))
    assert out["quantization"] == pytest.approx((pre.output_scale, pre.output_zero_point))
    assert list(inp["shape"]) == [1, pre.input_size, pre.input_size, 3]
    assert (assets / "labels.txt").read_text().splitlines() == list(pre.labels)
    assert (assets / "model.tflite").read_bytes() == (exported.out_dir / "model_int8.tflite").read_bytes()


def test_coreml_verified_structurally_not_numerically(exported):
    import coremltools as ct

    for f in ("model_fp16.mlpackage", "model_int8.mlpackage"):
        v = exported.artifact(f).verification
        assert v.status == "not_run" and v.reason == "CoreML prediction needs macOS; numerics not checked on Linux"
        c = v.checks
        assert c["model_type"] == "mlProgram" and c["labels"] == exported.card["labels"]
        assert c["input"]["width"] == c["input"]["height"] == exported.settings["imgsz"]
        assert c["predicted_feature"] == "classLabel" and c["weight_bytes"] > 0
        ml = ct.models.MLModel(str(exported.out_dir / f), skip_model_load=True)
        assert json.loads(ml.user_defined_metadata["labels"]) == exported.card["labels"]
    assert exported.artifact("model_int8.mlpackage").verification.checks["int8_weight_ops"] > 0
    assert exported.artifact("model_fp16.mlpackage").verification.checks["int8_weight_ops"] == 0
