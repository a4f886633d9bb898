"""The results explain themselves: the host's int8-relevant ISA is recorded, and an int8 file that is not faster
than its fp32 twin gets one line with the reason (from the CPU's features)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from benchmarks import notes, schema
from benchmarks.report import markdown
from models.host import host_cpu

# Both x86 flags and ARM features, so the fake CPU reads the same on either kind of host.
NO_DOT = "model name\t: Fake CPU\nflags\t\t: sse2 avx2\nFeatures\t: asimd\n"
WITH_DOT = "model name\t: Fake CPU\nflags\t\t: sse2 avx2 avx512_vnni\nFeatures\t: asimd asimddp\n"


def _machine(tmp_path: Path, cpuinfo: str, base: dict[str, Any]) -> dict[str, Any]:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    return {**base, **host_cpu(path)}


def _with_p50(doc: dict[str, Any], p50: dict[tuple[str, int], float]) -> dict[str, Any]:
    """A copy of a results doc with the given p50 per (artifact, threads)."""
    doc = copy.deepcopy(doc)
    for r in doc["rows"]:
        if (r["artifact"], r["threads"]) in p50:
            r["latency"]["p50_ms"] = p50[(r["artifact"], r["threads"])]
    return doc


# int8 slower than fp32 at 1 thread, faster at 2.
SLOWER_AT_1 = {("model_fp32.onnx", 1): 1.0, ("model_int8.onnx", 1): 2.0,
               ("model_fp32.onnx", 2): 1.0, ("model_int8.onnx", 2): 0.5}


def test_machine_isa_recorded(host_results):
    m = host_results.doc["machine"]
    cpu = host_cpu()
    assert m["isa"] == cpu["isa"] and m["int8_dot_product"] is cpu["int8_dot_product"]
    assert m["int8_note"] == cpu["int8_note"] and m["cpu_model"] == cpu["cpu_model"]
    header = host_results.files["md"].read_text().splitlines()[2]
    assert header.startswith("- machine: ") and "8-bit dot product: " in header
    assert all(f in header for f in m["isa"])
    assert schema.validate({**host_results.doc, "machine": {**m, "isa": "AVX2"}})  # the types are checked


def test_run_notes_match_its_own_latencies(host_results):
    """The harness notes exactly the int8 rows whose p50 is not below fp32's at the same thread count."""
    p50 = {(r["artifact"], r["threads"]): r["latency"]["p50_ms"] for r in host_results.rows}
    slower = [t for t in (1, 2) if p50[("model_int8.onnx", t)] >= p50[("model_fp32.onnx", t)]]
    assert [n["threads"] for n in host_results.doc["notes"]] == slower
    md = host_results.files["md"].read_text()
    assert all(n["text"] in md for n in host_results.doc["notes"])


def test_int8_slower_without_dot_product_says_why(host_results, tmp_path: Path):
    doc = _with_p50(host_results.doc, SLOWER_AT_1)
    doc["machine"] = _machine(tmp_path, NO_DOT, doc["machine"])
    doc["notes"] = notes.int8_notes(doc["rows"], doc["machine"], "host")
    assert len(doc["notes"]) == 1  # 2 threads: int8 is faster, no note
    text = doc["notes"][0]["text"]
    assert text.startswith("model_int8.onnx (1 thread) is not faster than model_fp32.onnx (2.00 ms vs 1.00 ms p50): ")
    assert "no 8-bit dot-product instructions" in text and text.endswith(doc["machine"]["int8_note"])
    assert schema.validate(doc) == []
    md = markdown(doc)
    assert f"- {text}\n" in md and "**int8 vs fp32 on this host:**" in md
    assert "8-bit dot product: no" in md


def test_int8_slower_despite_dot_product_gives_other_reason(host_results, tmp_path: Path):
    doc = _with_p50(host_results.doc, SLOWER_AT_1)
    machine = _machine(tmp_path, WITH_DOT, doc["machine"])
    [note] = notes.int8_notes(doc["rows"], machine, "host")
    assert " p50) despite 8-bit dot-product instructions on this CPU (" in note["text"]
    assert "quantize/dequantize" in note["text"] and "\n" not in note["text"]


@pytest.mark.parametrize("case", ["faster", "android", "reference"])
def test_no_note_when_faster_on_a_phone_or_for_a_reference(host_results, tmp_path: Path, case: str):
    fast = {**SLOWER_AT_1, ("model_int8.onnx", 1): 0.9}
    doc = _with_p50(host_results.doc, fast if case == "faster" else SLOWER_AT_1)
    if case == "reference":
        for r in doc["rows"]:
            r["reference"] = r["artifact"] == "model_int8.onnx"
    machine = _machine(tmp_path, NO_DOT, doc["machine"])
    doc["notes"] = notes.int8_notes(doc["rows"], machine, "android" if case == "android" else "host")
    assert doc["notes"] == []
    assert "int8 vs fp32" not in markdown(doc)
