"""Host runs: every artifact x thread count timed round-robin in this process (``timing``), accuracy with each
artifact's own preprocessing (``accuracy``), then memory in a fresh subprocess per artifact (``memory``)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy import EvalSet, PixelCache, metrics, predict
from benchmarks.artifacts import Artifact
from benchmarks.memory import measure_memory
from benchmarks.plan import Plan, Timing, input_spec
from benchmarks.profiles import thread_affinities
from benchmarks.report import broken_rows, fail, new_row, rows_of
from benchmarks.runners import InputSpec, make_runner
from benchmarks.timing import Case, latency_block, measure
from models.preprocessing import Preprocessing

INTERLEAVE = "round-robin across artifacts x threads, chunks of runs"


@dataclass(frozen=True)
class Feed:
    """What one artifact is fed, and the output it must give (None: not checked, a --reference file)."""

    spec: InputSpec
    x: np.ndarray
    num_classes: int | None


def run_host(plan: Plan, timing: Timing, *, memory: bool, memory_runs: int,
             progress: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of every artifact (failed rows first for those that cannot be run) and the pinning warnings."""
    cache = PixelCache()
    artifacts = plan.runnable
    feeds = _feeds(plan, cache)
    cases = _cases(artifacts, feeds, plan.threads)
    with progress_bar(len(cases) * timing.runs, "latency", progress) as bar:
        measure([c for _, c in cases], timing.runs, timing.min_seconds, timing.warmup, max_seconds=timing.max_seconds,
                on_progress=bar.update)
    warnings = _check_pinning()  # while every runtime's thread pool is alive
    rows = [_latency_row(a, c, timing.runs) for a, c in cases]
    if plan.evalset is not None:
        _accuracy(cases, rows, plan.pres, plan.evalset, cache, progress)
    del cases  # free the loaded models before the memory probes start
    if memory:
        _memory(artifacts, feeds, plan.threads[0], rows, memory_runs, progress)
    return broken_rows(plan.broken, plan.threads) + rows, warnings


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    # disable=None: show only on a terminal, so logs and CI output stay clean.
    return tqdm(total=total, desc=desc, unit="run", disable=None if enabled else True, leave=False)


def _feeds(plan: Plan, cache: PixelCache) -> dict[Path, Feed]:
    feeds = {}
    for a in plan.runnable:
        if a.contractless:
            spec = plan.ref_specs[a.path]
            feeds[a.path] = Feed(spec, spec.random_input(), None)
        else:
            pre = plan.pres[a.path]
            feeds[a.path] = Feed(input_spec(pre), pre.model_input(_pixels(pre, plan.evalset, cache)), len(pre.labels))
    return feeds


def _pixels(pre: Preprocessing, evalset: EvalSet | None, cache: PixelCache) -> np.ndarray:
    # Latency does not depend on image content for these CNNs; a real image is used when one is at hand.
    if evalset is not None:
        return cache.get(pre, evalset.paths[0])
    return np.random.default_rng(0).uniform(0.0, 255.0, (pre.input_size, pre.input_size, 3))


def _cases(artifacts: list[Artifact], feeds: dict[Path, Feed], threads: list[int]) -> list[tuple[Artifact, Case]]:
    cases = []
    for a in artifacts:
        f = feeds[a.path]
        for t in ([None] if a.runtime == "coreml" else threads):  # CoreML has no thread setting
            cases.append((a, Case(f"{a.name}@{t}", make_runner(a, t, f.spec), f.x, f.num_classes)))
    return cases


def _latency_row(a: Artifact, c: Case, runs: int) -> dict[str, Any]:
    row = new_row(a, c.runner.threads)
    if c.unsupported:
        row["status"] = f"unsupported: {c.unsupported}"
    elif c.error:
        fail(row, c.error)
    else:
        row["runtime_settings"] = c.runner.settings()
        row["latency"] = latency_block(c)
        if row["latency"] is None or row["latency"]["n"] < runs:  # never report from fewer runs
            fail(row, f"fewer than {runs} timed runs")
    return row


def _check_pinning() -> list[str]:
    """Threads allowed on CPUs the main thread is not (i.e. escaping a profile's pinning)."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    allowed = os.sched_getaffinity(0)
    stray = [tid for tid, aff in thread_affinities().items() if not set(aff) <= allowed]
    return [f"{len(stray)} runtime thread(s) not pinned to CPUs {sorted(allowed)}"] if stray else []


def _accuracy(cases: list[tuple[Artifact, Case]], rows: list[dict[str, Any]], pres: dict[Path, Preprocessing],
              evalset: EvalSet, cache: PixelCache, progress: bool) -> None:
    """Accuracy once per artifact with its first working runner; the reference (first) sets agreement."""
    ref: tuple[np.ndarray, tuple[str, ...]] | None = None
    done: set[Path] = set()
    with progress_bar(len({a.path for a, _ in cases if not a.contractless}), "accuracy", progress) as bar:
        for a, c in cases:
            if a.path in done or not c.ok or a.contractless:  # no contract, no labels: nothing to score
                continue
            done.add(a.path)
            pre = pres[a.path]
            try:
                probs = predict(c.runner, pre, evalset, cache)
            except Exception as e:  # noqa: BLE001 - a runtime crash on real images fails this artifact only
                for r in rows_of(rows, a):
                    fail(r, f"accuracy: {type(e).__name__}: {str(e)[:200]}")
                bar.update(1)
                continue
            if a.is_reference:
                ref = (probs, tuple(pre.labels))
            acc = metrics(probs, evalset, tuple(pre.labels), a.name, *(ref if ref else (None, None)),
                          temperature=pre.temperature)
            for r in rows_of(rows, a):
                r["accuracy"] = acc
            bar.update(1)


def _memory(artifacts: list[Artifact], feeds: dict[Path, Feed], threads: int, rows: list[dict[str, Any]],
            memory_runs: int, progress: bool) -> None:
    with progress_bar(len(artifacts), "memory", progress) as bar:
        for a in artifacts:
            if a.runtime == "coreml" and sys.platform != "darwin":
                result: dict[str, Any] = {"unsupported": "CoreML runs only on macOS"}
            else:
                f = feeds[a.path]
                result = measure_memory(a, threads if a.runtime != "coreml" else None, f.spec, f.x, runs=memory_runs)
            bar.update(1)
            for r in rows_of(rows, a):
                if r["status"].startswith(("unsupported", "skipped")):
                    continue
                if "error" in result:
                    fail(r, f"memory probe: {result['error']}")
                elif "unsupported" not in result:
                    r["memory"] = result
