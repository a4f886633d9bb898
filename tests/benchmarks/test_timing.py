"""Timing statistics and the round-robin measurement loop, with fake runners (no model, no noise)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.artifacts import Artifact
from benchmarks.runners import InputSpec, Runner, RunnerError
from benchmarks.timing import Case, latency_block, measure, summarize

SPEC = InputSpec("NCHW", 8, "float32")


class FakeRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, name: str, log: list[str], sleep_s: float = 0.0, fail_after: int | None = None,
                 fail_load: bool = False) -> None:
        art = Artifact(name, Path(name), "onnxruntime", "fp32", "onnx", None, 1)
        super().__init__(art, 1, SPEC)
        self.name, self.log, self.sleep_s = name, log, sleep_s
        self.fail_after, self.fail_load, self.calls = fail_after, fail_load, 0

    def load(self) -> None:
        if self.fail_load:
            raise RunnerError("cannot load")

    def run(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("device lost")
        self.log.append(self.name)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return np.zeros((1, 3), np.float32)


def _case(runner: FakeRunner) -> Case:
    return Case(runner.name, runner, np.zeros((1, 3, 8, 8), np.float32), num_classes=3)


def test_summarize_matches_numpy():
    a = np.arange(1, 101, dtype=float)
    s = summarize(a)
    assert s["n"] == 100 and s["mean_ms"] == pytest.approx(50.5) and s["std_ms"] == pytest.approx(a.std())
    assert s["min_ms"] == 1 and s["max_ms"] == 100
    for q in (5, 50, 90, 95, 99):
        assert s[f"p{q}_ms"] == pytest.approx(np.percentile(a, q))
    with pytest.raises(ValueError):
        summarize([])


def test_round_robin_interleaves_and_meets_runs():
    log: list[str] = []
    a, b = _case(FakeRunner("a", log)), _case(FakeRunner("b", log))
    measure([a, b], runs=30, min_seconds=0.0, warmup=2, chunk=5)
    assert len(a.samples_ms) >= 30 and len(b.samples_ms) >= 30
    assert len(a.warmup_ms) == 2 and a.init_ms is not None and a.first_ms is not None
    timed = log[2 * (1 + 2):]  # after each case's first inference and warm-up
    # chunks alternate: a block of a (1 untimed + 5 timed), then b, then a ...
    blocks = [timed[i] for i in range(0, len(timed), 6)]
    assert blocks[:4] == ["a", "b", "a", "b"]
    assert latency_block(a)["n"] == len(a.samples_ms)


def test_min_seconds_extends_runs():
    log: list[str] = []
    c = _case(FakeRunner("slow", log, sleep_s=0.002))
    measure([c], runs=5, min_seconds=0.1, warmup=0, chunk=5)
    assert sum(c.samples_ms) >= 100 and len(c.samples_ms) > 5


def test_failures_report_no_figures():
    log: list[str] = []
    bad_load = _case(FakeRunner("x", log, fail_load=True))
    dies = _case(FakeRunner("y", log, fail_after=8))
    ok = _case(FakeRunner("z", log))
    measure([bad_load, dies, ok], runs=20, min_seconds=0, warmup=1, chunk=4)
    assert bad_load.error == "cannot load" and latency_block(bad_load) is None
    assert dies.error.startswith("failed after") and latency_block(dies) is None
    assert ok.ok and len(ok.samples_ms) >= 20


def test_wrong_output_shape_fails():
    log: list[str] = []
    c = _case(FakeRunner("w", log))
    c.num_classes = 8
    measure([c], runs=3, min_seconds=0, warmup=0)
    assert "output shape [1, 3], expected [1, 8]" in c.error


def test_max_seconds_never_reports_partial_runs():
    log: list[str] = []
    c = _case(FakeRunner("s", log, sleep_s=0.005))
    measure([c], runs=1000, min_seconds=0, warmup=0, chunk=5, max_seconds=0.05)
    assert c.error.startswith("only ") and "of 1000 runs" in c.error and latency_block(c) is None
