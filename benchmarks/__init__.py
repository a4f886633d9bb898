"""Benchmark harness (``ssdkd-bench``): latency, peak memory and accuracy of every exported artifact.

>>> from benchmarks import run_benchmark
>>> res = run_benchmark(["runs/student/export"], threads="1,2", data="data/isic2019_sample", out="runs/bench/x")
>>> res.failures, res.files["md"]

Attributes are imported lazily: a memory probe (``python -m benchmarks.memory``) imports this package and
must not pay for torch, which the harness imports through ``models``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Results", "compare", "load_results", "parse_benchmark_output", "run_benchmark", "validate"]

_LAZY = {"run_benchmark": "benchmarks.harness", "Results": "benchmarks.harness", "compare": "benchmarks.report",
         "load_results": "benchmarks.report", "validate": "benchmarks.schema",
         "parse_benchmark_output": "benchmarks.android"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'benchmarks' has no attribute {name!r}")
