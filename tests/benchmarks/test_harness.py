"""End-to-end host runs on small real models: every runtime path, rigor rules, memory, accuracy, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import schema
from tests.benchmarks.conftest import FAST


def _rows(res, artifact: str) -> list[dict]:
    return [r for r in res.rows if r["artifact"] == artifact]


def test_every_artifact_and_thread_count_is_a_row(host_results):
    keys = [(r["artifact"], r["threads"]) for r in host_results.rows]
    assert keys == [(a, t) for a in ("pytorch_fp32", "model_fp32.onnx", "model_int8.onnx") for t in (1, 2)]
    assert host_results.failures == [], host_results.failures
    for r in host_results.rows:
        lat = r["latency"]
        assert r["status"] == "ok"
        assert lat["n"] >= FAST["runs"] and lat["total_s"] >= FAST["min_seconds"]  # >= runs AND >= min-seconds
        assert lat["warmup_n"] == FAST["warmup"] and lat["init_ms"] > 0 and lat["first_ms"] > 0
        assert lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]


def test_threads_pinned_for_each_runtime(host_results):
    for r in host_results.rows:
        s = r["runtime_settings"]
        if r["runtime"] == "torch":
            assert s["intra_op_threads"] == r["threads"] and s["inter_op_threads"] >= 1
        else:
            assert s["intra_op_threads"] == r["threads"] and s["inter_op_threads"] == 1


def test_ratio_to_torch_same_thread_count(host_results):
    for t in (1, 2):
        torch_p50 = next(r for r in host_results.rows if r["runtime"] == "torch" and r["threads"] == t)
        for r in host_results.rows:
            if r["threads"] == t:
                assert r["p50_ratio_to_torch"] == pytest.approx(r["latency"]["p50_ms"]
                                                               / torch_p50["latency"]["p50_ms"])


def test_memory_plausible(host_results):
    mem = {r["artifact"]: r["memory"] for r in host_results.rows if r["threads"] == 1}
    for name, m in mem.items():
        assert m["load_peak_delta_mb"] > 0, name
        assert m["overall_peak_delta_mb"] >= m["load_peak_delta_mb"] > 0
        assert m["threads"] == 1 and m["baseline_rss_mb"] < 200, name  # a fresh process without torch preloaded
    assert mem["model_int8.onnx"]["load_peak_delta_mb"] < mem["model_fp32.onnx"]["load_peak_delta_mb"]
    assert mem["model_int8.onnx"]["overall_peak_delta_mb"] < mem["model_fp32.onnx"]["overall_peak_delta_mb"]
    assert mem["pytorch_fp32"]["import_rss_delta_mb"] > 100  # torch's import is reported apart from the load


def test_accuracy_uses_each_sidecar_and_agrees_with_torch(host_results):
    for r in host_results.rows:
        acc = r["accuracy"]
        assert acc["n"] == 40 and 0 <= acc["balanced_accuracy"] <= 1
        assert set(acc["per_class_recall"]) == set(host_results.doc["model"]["labels"])
        cal = acc["calibration"]  # the fixture checkpoint has no fitted temperature: T = 1 in every sidecar
        assert cal["n"] == 40 and cal["temperature"] == 1.0 and 0 < cal["ece_before"] == cal["ece_after"] < 1
    assert _rows(host_results, "pytorch_fp32")[0]["accuracy"]["agreement_with_torch"] == 1.0
    assert _rows(host_results, "model_fp32.onnx")[0]["accuracy"]["agreement_with_torch"] >= 0.97
    assert _rows(host_results, "model_int8.onnx")[0]["accuracy"]["agreement_with_torch"] is not None


def test_outputs_written_and_schema_valid(host_results):
    files = host_results.files
    for key in ("json", "csv", "md", "latency", "pareto", "size_memory", "reliability"):
        assert files[key].is_file() and files[key].stat().st_size > 0, key
    assert files["latency"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(files["json"].read_text())
    assert schema.validate(doc) == []
    m = doc["machine"]
    assert len(m["load_average_start"]) == 3 and len(m["load_average_end"]) == 3
    assert doc["runtime_versions"]["onnxruntime"] and doc["settings"]["runs"] == FAST["runs"]
    assert doc["model"]["params"] > 0 and doc["model"]["macs"] > doc["model"]["params"]
    md = files["md"].read_text()
    assert "| p50 / torch |" in md and "pytorch_fp32" in md and "load average" in md and "| ECE T=1 → T |" in md
    header = files["csv"].read_text().splitlines()[0].split(",")
    assert {"latency_p50_ms", "p50_ratio_to_torch", "memory_overall_peak_delta_mb", "accuracy_balanced_accuracy",
            "calibration_ece_before", "calibration_ece_after", "calibration_temperature"} <= set(header)


@pytest.mark.slow
def test_export_stage_artifacts_litert_paths(exported_results, real_export: Path):
    """fp32, int8 (int8 I/O) and int8 float-I/O TFLite from the export stage, fed through their sidecars."""
    report = json.loads((real_export / "export_report.json").read_text())
    listed = [a["file"] for a in report["artifacts"]]
    rows = {r["artifact"]: r for r in exported_results.rows}
    assert set(listed) <= set(rows) and "pytorch_fp32" in rows
    sidecars = [a["preprocessing"] for a in report["artifacts"]]
    shared = {a["file"] for a in report["artifacts"] if sidecars.count(a["preprocessing"]) > 1}
    for name in listed:
        status = rows[name]["status"]
        if not (real_export / name).exists():  # an artifact the export failed to build: a failed row, not a crash
            assert status.startswith("failed: listed in export_report.json but missing"), status
        elif name in shared and status != "ok":  # a sidecar written for another artifact is caught, not used
            assert "preprocessing contract says" in status, status
        else:
            assert status == "ok", status
    for name in ("model_fp32.tflite", "model_int8.tflite"):
        r = rows[name]
        assert r["status"] == "ok" and r["runtime"] == "litert" and r["runtime_settings"]["num_threads"] == 1
        assert r["accuracy"]["agreement_with_torch"] is not None
    m32, m8 = rows["model_fp32.tflite"]["memory"], rows["model_int8.tflite"]["memory"]
    assert 0 < m8["load_peak_delta_mb"] < m32["load_peak_delta_mb"]
    if shared:
        pytest.xfail(f"export contract bug: {sorted(shared)} share sidecar files (<stem>.preprocessing.json "
                     f"collides for model_fp32.onnx / model_fp32.tflite)")
