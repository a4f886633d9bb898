"""The gate: a deliberately broken calibration set must fail the export (exit 1) and keep files + report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from export import Gate, Verification, export
from export.cli import main
from export.verify import bacc_change_interval, compare
from tests.export.conftest import E2E_GATE

pytestmark = pytest.mark.slow
CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")


def test_gate_rule():
    gate = Gate(max_bacc_drop=1.0, min_agreement=0.97)
    ok = Verification(status="passed", agreement=0.98, balanced_accuracy=0.595)
    assert gate.check(ok, reference_bacc=0.60) == []
    bad = Verification(agreement=0.90, balanced_accuracy=0.55)
    reasons = gate.check(bad, reference_bacc=0.60)
    assert len(reasons) == 2 and "90.0% < 97.0%" in reasons[0] and "5.0 pt below fp32" in reasons[1]
    assert gate.apply(ok, 0.60).status == "passed"
    assert gate.apply(Verification(agreement=0.90, balanced_accuracy=0.55), 0.60).status == "failed"
    off = Gate(enabled=False).apply(Verification(agreement=0.90, balanced_accuracy=0.55), 0.60)
    assert off.status == "ungated" and off.reason.startswith("gate off; would fail: top-1 agreement")


def test_compare_counts_top1_ties_and_the_gate_names_them():
    ref = np.array([[1.0, 1.05, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    quantized = np.array([[1.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])  # a near-tie rounded to a tie
    v = compare(quantized, ref, labels=np.array([1, 0, 2]))
    assert v.tied_top1 == pytest.approx(1 / 3) and v.agreement == pytest.approx(2 / 3)
    assert "(33.3% of images tie for the top class on the output grid)" in Gate().check(v, reference_bacc=1.0)[0]
    assert compare(ref, ref, np.array([1, 0, 2])).tied_top1 == 0.0


def test_bacc_change_interval_is_paired_and_stratified():
    labels = np.repeat([0, 1], [10, 40])
    ref = labels.copy()
    assert bacc_change_interval(ref, ref, labels) == [0.0, 0.0]  # same predictions: no uncertainty at all
    pred = ref.copy()
    pred[0] = 1  # one of the 10 class-0 images lost: class-0 recall -10 pt, balanced accuracy -5 pt
    low, high = bacc_change_interval(pred, ref, labels)
    assert low < -5.0 < high <= 0.0  # never positive: the artifact is nowhere better than the reference
    assert low >= -15.0  # at most 3 of the resampled 10 class-0 images can be that one (here, in 95 % of draws)
    v = compare(np.eye(2)[pred], np.eye(2)[ref], labels)
    assert v.bacc_change_ci == [low, high]
    reason = Gate(max_bacc_drop=1.0, min_agreement=0.0).check(v, reference_bacc=1.0)[0]
    assert f"95% interval of the change {low:+.1f} to {high:+.1f} pt" in reason


def test_bacc_change_interval_resamples_lesions_not_images():
    # Two near-duplicate images per lesion: losing one lesion loses both images, and the interval must reflect
    # 5 independent lesions in class 0, not 10 independent images.
    labels = np.repeat([0, 1], [10, 40])
    groups = np.array([f"lesion{i // 2}" for i in range(10)] + [f"other{i}" for i in range(40)])
    ref = labels.copy()
    pred = ref.copy()
    pred[[0, 1]] = 1  # both images of lesion0: class-0 recall -20 pt, balanced accuracy -10 pt
    by_image = bacc_change_interval(pred, ref, labels)
    by_lesion = bacc_change_interval(pred, ref, labels, groups)
    assert by_lesion[0] < by_image[0] < -10.0 < by_lesion[1] <= 0.0
    v = compare(np.eye(2)[pred], np.eye(2)[ref], labels, groups)
    assert v.bacc_change_ci == by_lesion


def _constant_calibration_dir(root, per_class=8):
    """A dataset in the right layout whose images are all flat grey: a wrong calibration set a user might pass."""
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(root / c / f"{c}_{i}.png")
    return root


def test_broken_calibration_fails_the_gate_from_the_cli(export_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    calib = _constant_calibration_dir(tmp_path / "grey")
    argv = [str(export_checkpoint), "--target", "onnx", "--int8", "--calib", str(calib), "--out", str(out), "-q"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "verification failed" in err and "model_int8.onnx" in err and "Traceback" not in err
    assert (out / "model_int8.onnx").is_file() and (out / "model_fp32.onnx").is_file()  # kept for diagnosis
    d = json.loads((out / "export_report.json").read_text())
    status = {a["file"]: a["verification"] for a in d["artifacts"]}
    assert status["model_fp32.onnx"]["status"] == "passed"
    assert status["model_int8.onnx"]["status"] == "failed" and "below fp32" in status["model_int8.onnx"]["reason"]
    assert status["model_int8.onnx"]["drift"], "a failed int8 artifact names its worst-drifting layers"
    # --no-gate: same numbers, reported, not fatal
    assert main(argv + ["--no-gate"]) == 0


def test_onnx2tf_route_without_rounding_fixes_and_broken_calibration(export_checkpoint, tmp_path):
    """The second TFLite route (ONNX -> onnx2tf -> TF converter) builds loadable all-int8 files with int8 logits
    out; the default route builds them without the rounding fixes (GPTQ, bias correction) too; and calibration
    images squashed to a tiny range (activation scales far too small for real images) fail the gate."""
    from models.preprocessing import Preprocessing

    o2t = export(export_checkpoint, targets="tflite", int8=True, out_dir=tmp_path / "o2t", verbose=False,
                 tflite_route="onnx2tf", gate=E2E_GATE)
    assert o2t.settings["tflite_route"] == "onnx2tf"
    assert o2t.artifact("model_fp32.tflite").verification.max_abs_dlogit < 1e-4
    pre = Preprocessing.load(o2t.out_dir / o2t.artifact("model_int8.tflite").preprocessing)
    assert (pre.output_kind, pre.output_dtype) == ("logits", "int8")
    assert o2t.artifact("model_int8.tflite").verification.agreement >= 0.5

    good = export(export_checkpoint, targets="tflite", int8=True, out_dir=tmp_path / "good", verbose=False,
                  gate=E2E_GATE, rounding_fixes=False)
    assert good.settings["tflite_route"] == "litert"
    assert good.settings["gptq_rounding"] is False and good.settings["bias_correction"] is False
    good_agreement = good.artifact("model_int8.tflite").verification.agreement
    assert good_agreement >= 0.5 and good.artifact("model_int8.tflite").verification.status == "passed"
    report = export(export_checkpoint, targets="tflite", int8=True, out_dir=tmp_path / "out", verbose=False,
                    gate=E2E_GATE, rounding_fixes=False, calib_transform=lambda px: 127.0 + 0.02 * (px - 127.0))
    assert not report.passed
    for f in ("model_int8.tflite", "model_int8_fio.tflite"):
        v = report.artifact(f).verification
        assert v.status == "failed" and v.reason, f
        assert v.agreement < good_agreement
        assert (tmp_path / "out" / f).is_file()
    assert report.artifact("model_fp32.tflite").verification.status == "passed"
    assert json.loads(report.path.read_text())["artifacts"][2]["verification"]["status"] == "failed"
    # the diagnosis says where each drifting tensor is in the graph, and the table prints it
    drift = report.artifact("model_int8.tflite").verification.drift
    assert drift and all(d["op"].split()[0] in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "PAD",
                                                "FULLY_CONNECTED", "SOFTMAX", "QUANTIZE") for d in drift), drift
    assert all(len(d["shape"]) >= 2 for d in drift)
    # dB, not ai-edge-quantizer's raw power ratio: a squashed-calibration int8 tensor keeps well under 8 bits' ~50 dB
    assert all(-20 < d["sqnr_db"] < 50 for d in drift), drift
    assert "most-drifting layers" in report.table()


def test_report_table_shows_the_balanced_accuracy_change_with_its_interval(tmp_path):
    from export.report import ArtifactRecord, ExportReport

    v = Verification(status="passed", agreement=0.978, balanced_accuracy=0.3494, bacc_change_ci=[-2.06, 0.4])
    reference = {"accuracy": 0.6, "balanced_accuracy": 0.3552}
    report = ExportReport(tmp_path, tmp_path / "best.pt", {}, {}, reference=reference,
                          artifacts=[ArtifactRecord("model_int8.tflite", "tflite", "int8", "litert", "x.json", "int8",
                                                    verification=v)])
    header, _, reference_row, row = report.table().splitlines()[:4]
    assert "Δbacc pt [95% CI]" in header
    assert "-0.6 [-2.1, +0.4]" in row and "[" not in reference_row


def test_probability_outputs_are_compared_as_probabilities():
    from models.errors import InputError
    from models.preprocessing import Preprocessing, softmax

    ref = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    v = compare(softmax(ref), ref, np.array([0, 1]), output_kind="probabilities")
    assert v.agreement == 1.0 and v.max_abs_dsoftmax < 1e-12 and v.max_abs_dlogit is None
    assert v.mean_l1_dsoftmax < 1e-12
    # read as logits, the same numbers would be softmaxed a second time
    assert compare(softmax(ref), ref, np.array([0, 1])).max_abs_dsoftmax > 0.1
    # mean over images of the summed |dp|: image 0 moves 0.1 of probability from class 0 to 1, image 1 nothing
    off = softmax(ref)
    off[0] += [-0.1, 0.1, 0.0]
    assert compare(off, ref, np.array([0, 1]), output_kind="probabilities").mean_l1_dsoftmax == pytest.approx(0.1)

    pre = Preprocessing(input_size=8, mean=(0.5,) * 3, std=(0.5,) * 3, labels=("a", "b", "c"), output_dtype="int8",
                        output_scale=1 / 256, output_zero_point=-128, output_kind="probabilities")
    codes = np.array([[127, -128, -64]], np.int8)
    assert pre.probabilities(codes)[0] == pytest.approx([255 / 256, 0.0, 0.25])
    logits = Preprocessing.from_json({**pre.to_json(), "output_kind": "logits"})
    assert logits.probabilities(codes).sum() == pytest.approx(1.0)
    with pytest.raises(InputError, match="output_kind must be logits or probabilities, got 'scores'"):
        Preprocessing.from_json({**pre.to_json(), "output_kind": "scores"}, "p.json")


def test_a_temperature_changes_neither_the_argmax_nor_the_gate() -> None:
    from models.preprocessing import softmax

    rng = np.random.default_rng(0)
    ref = rng.normal(0.0, 3.0, (400, 8))
    # an overconfident model: its labels come from softmax(ref / 3), not softmax(ref)
    labels = np.minimum((rng.random(len(ref))[:, None] > np.cumsum(softmax(ref / 3.0), axis=1)).sum(1), 7)
    noisy = ref + rng.normal(0.0, 0.5, ref.shape)
    for values, kind in ((noisy, "logits"), (softmax(noisy), "probabilities")):
        plain, hot = (compare(values, ref, labels, output_kind=kind, temperature=t) for t in (1.0, 3.0))
        for v in (plain, hot):
            Gate(min_agreement=0.9).apply(v, 0.7)
        for field in ("status", "reason", "agreement", "tied_top1", "accuracy", "balanced_accuracy",
                      "bacc_change_ci", "max_abs_dsoftmax", "mean_l1_dsoftmax"):
            assert getattr(plain, field) == getattr(hot, field), (kind, field)
        assert plain.status == "failed" and plain.ece_before == hot.ece_before
        assert plain.ece_after == plain.ece_before and hot.ece_after < 0.5 * hot.ece_before, kind


def test_tflite_power_ratio_is_reported_in_db() -> None:
    from export.drift import power_ratio_db

    assert power_ratio_db(418.0) == pytest.approx(26.2, abs=0.05)
    assert power_ratio_db(1.0) == 0.0
    assert math.isnan(power_ratio_db(0.0))
