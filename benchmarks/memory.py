"""Peak memory per artifact, each measured in a fresh Python process.

In one long-lived process the first runtime would pay for shared imports (numpy, allocator arenas) and
later ones would inherit freed-but-kept memory, so figures would depend on the order. A fresh
``python -m benchmarks.memory`` per artifact records RSS at baseline (interpreter + numpy), after importing
the runtime, after loading the model and after inference, and the *peak* RSS of the load phase and of
the inference phase. Reported like benchmark_model's "memory footprint delta from the start of the tool
(MB): init=… overall=…", but from after the runtime import so import cost (torch: hundreds of MB) is
its own figure:

- ``load_peak_delta_mb``: peak RSS while loading minus RSS after the import;
- ``overall_peak_delta_mb``: peak RSS over load + inference minus RSS after the import.

Peaks are per phase: on Linux the kernel's high-water mark (VmHWM) is reset between phases by writing
``5`` to ``/proc/self/clear_refs``; otherwise a transient during import (torch's peaks hundreds of MB above
its steady RSS) would hide everything after it. Where that reset is unavailable the process-lifetime
``ru_maxrss`` is used and ``peak_method`` says so.

The child inherits the parent's CPU affinity, so a profile's core pinning applies here too. The input
array is passed as a ``.npy`` file and this module imports nothing from ``models`` (which imports torch).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from benchmarks.artifacts import Artifact
    from benchmarks.runners import InputSpec

_MARK = "SSDKD_MEMORY_RESULT "


def measure_memory(artifact: Artifact, threads: int | None, spec: InputSpec, x: np.ndarray, runs: int = 10,
                   timeout: float = 300.0) -> dict[str, Any]:
    """Run the probe in a subprocess; returns the memory block or ``{"error": ...}``/``{"unsupported": ...}``."""
    with tempfile.TemporaryDirectory(prefix="ssdkd-mem-") as tmp:
        inp = Path(tmp) / "input.npy"
        np.save(inp, x)
        req = {"artifact": artifact.to_json(), "threads": threads, "spec": spec.to_json(), "input": str(inp),
               "runs": runs}
        env = dict(os.environ)
        # The probe imports this package from the same place as the parent, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                         env.get("PYTHONPATH")]))
        try:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.memory", json.dumps(req)], capture_output=True,
                                  text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"memory probe timed out after {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"memory probe exited with code {proc.returncode}: {tail[:200]}"}


class _Meter:
    """Current and peak RSS in MB, with a per-phase peak where the kernel allows resetting it."""

    def __init__(self) -> None:
        self.method = "VmHWM reset per phase (/proc/self/clear_refs)" if self._reset() else "ru_maxrss (lifetime)"

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
            return True
        except OSError:
            return False

    def reset_peak(self) -> None:
        if self.method.startswith("VmHWM"):
            self._reset()

    @staticmethod
    def read() -> dict[str, float]:
        try:
            status = Path("/proc/self/status").read_text()
            rss, hwm = (int(re.search(rf"{k}:\s+(\d+)", status).group(1)) / 1024 for k in ("VmRSS", "VmHWM"))
            return {"rss_mb": round(rss, 3), "peak_mb": round(hwm, 3)}
        except (OSError, AttributeError):
            import resource

            import psutil

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak_mb = peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB on Linux
            return {"rss_mb": round(psutil.Process().memory_info().rss / 2**20, 3), "peak_mb": round(peak_mb, 3)}


def probe(req: dict[str, Any]) -> dict[str, Any]:
    """The child side: snapshots around import, load and inference of one artifact."""
    from benchmarks.runners import InputSpec, RunnerError, Unsupported, make_runner

    a = req["artifact"]
    artifact = SimpleNamespace(**{**a, "path": Path(a["path"])})  # attribute access only, no models import
    runner = make_runner(artifact, req["threads"], InputSpec.from_json(req["spec"]))  # type: ignore[arg-type]
    x = np.load(req["input"], allow_pickle=False)
    meter = _Meter()
    n = max(1, int(req["runs"]))
    try:
        base = meter.read()
        runner.import_runtime()
        imported = meter.read()
        meter.reset_peak()
        runner.load()
        loaded = meter.read()
        meter.reset_peak()
        runner.activate()
        for _ in range(n):
            runner.run(x)
        ran = meter.read()
    except Unsupported as e:
        return {"unsupported": str(e)}
    except RunnerError as e:
        return {"error": str(e)}
    per_phase = meter.method.startswith("VmHWM")
    peak_overall = max(loaded["peak_mb"], ran["peak_mb"]) if per_phase else ran["peak_mb"]
    return {
        "threads": req["threads"],
        "inference_runs": n,
        "peak_method": meter.method,
        "baseline_rss_mb": base["rss_mb"],
        "import_rss_delta_mb": round(imported["rss_mb"] - base["rss_mb"], 3),
        "load_peak_delta_mb": round(loaded["peak_mb"] - imported["rss_mb"], 3),
        "overall_peak_delta_mb": round(peak_overall - imported["rss_mb"], 3),
        "load_rss_delta_mb": round(loaded["rss_mb"] - imported["rss_mb"], 3),
        "inference_rss_delta_mb": round(ran["rss_mb"] - loaded["rss_mb"], 3),
        "process_peak_mb": round(max(base["peak_mb"], imported["peak_mb"], peak_overall), 3),
        "snapshots": {"baseline": base, "after_import": imported, "after_load": loaded, "after_inference": ran},
    }


def main() -> None:
    req = json.loads(sys.argv[1])
    try:
        result = probe(req)
    except Exception as e:  # noqa: BLE001 - report any crash to the parent as this artifact's memory error
        result = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    print(_MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
