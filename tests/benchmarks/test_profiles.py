"""Host emulation profiles: the YAML contract, estimates only when labelled, and real core pinning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.profiles import DEFAULT_PROFILES, load_profiles, resolve_target
from models.errors import InputError

REPO = Path(__file__).resolve().parents[2]
needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="core pinning is Linux-only")


def test_default_profiles_file():
    profiles = load_profiles()
    assert {"big-1t", "little-1t", "2t", "4t"} <= set(profiles)
    assert profiles["big-1t"].cores == 1 and profiles["big-1t"].threads == 1 and profiles["big-1t"].slowdown is None
    est = profiles["little-1t"].slowdown
    assert est is not None and est.factor > 1 and est.basis
    assert "not phone latency" in profiles["2t"].to_json()["kind"]
    assert "EMULATION" in DEFAULT_PROFILES.read_text()


@pytest.mark.parametrize("body, message", [
    ("profiles:\n  p: {cores: 1, threads: 1, slowdown: {factor: 3}}", "estimate: true"),
    ("profiles:\n  p: {cores: 1, threads: 1, slowdown: {factor: 3, estimate: true}}", "basis"),
    ("profiles:\n  p: {cores: 0, threads: 1}", ">= 1"),
    ("profiles:\n  p: {cores: 2, threads: 1, cpus: [0]}", "exactly 2"),
    ("profiles:\n  host: {cores: 1, threads: 1}", "reserved"),
    ("profiles:\n  p: {cores: 1, threads: 1, turbo: true}", "unknown field"),
])
def test_invalid_profiles_are_rejected(tmp_path: Path, body: str, message: str):
    f = tmp_path / "p.yaml"
    f.write_text("schema_version: 1\n" + body + "\n")
    with pytest.raises(InputError, match=message):
        load_profiles(f)


def test_unknown_target_suggests_names():
    with pytest.raises(InputError, match="did you mean little-1t"):
        resolve_target("litle-1t")
    assert resolve_target("host") == ("host", None)


@needs_affinity
def test_pinning_restricts_every_thread_in_a_subprocess():
    """A thread started BEFORE pinning must be pinned too (os.sched_setaffinity(0) alone would miss it)."""
    code = textwrap.dedent("""
        import json, os, threading
        from benchmarks.profiles import pinned, thread_affinities
        stop = threading.Event()
        t = threading.Thread(target=stop.wait)
        t.start()
        before = sorted(os.sched_getaffinity(0))
        cpu = before[-1]
        with pinned({cpu}):
            inside = sorted(os.sched_getaffinity(0))
            other = sorted(os.sched_getaffinity(t.native_id))
            every = thread_affinities()
        after = sorted(os.sched_getaffinity(0))
        stop.set()
        print(json.dumps({"before": before, "cpu": cpu, "inside": inside, "other": other,
                          "every": list(every.values()), "after": after}))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["inside"] == [r["cpu"]] and r["other"] == [r["cpu"]]
    assert all(aff == [r["cpu"]] for aff in r["every"])
    assert r["after"] == r["before"]


@needs_affinity
def test_profile_run_is_pinned_and_labels_estimates(onnx_export: Path, tmp_path: Path):
    """--target little-1t: one core, one thread, estimates in their own labelled block, affinity restored."""
    from benchmarks.harness import run_benchmark

    before = os.sched_getaffinity(0)
    res = run_benchmark([onnx_export / "model_int8.onnx"], runtimes="onnxruntime", threads="2", target="little-1t",
                        runs=10, min_seconds=0.05, warmup=1, memory=False, progress=False)
    assert os.sched_getaffinity(0) == before
    s = res.doc["settings"]
    assert s["threads"] == [1] and len(s["pinned_cpus"]) == 1
    assert s["warnings"] == []  # every runtime thread stayed inside the pinned CPU
    assert res.doc["machine"]["affinity"] == s["pinned_cpus"]
    assert s["profile"]["name"] == "little-1t"
    row = res.rows[0]
    assert row["threads"] == 1 and row["status"] == "ok"
    est = row["estimate"]
    assert "estimate" in est["label"] and est["p50_ms"] == pytest.approx(row["latency"]["p50_ms"] * est["factor"])
    from benchmarks.report import markdown

    md = markdown(res.doc)
    assert "Host emulation, not phone latency" in md and "Estimates, not measurements" in md
