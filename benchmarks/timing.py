"""Latency measurement: init, first inference, warm-up, then round-robin interleaved timed runs.

Interleaving: every case (artifact x thread count) is measured in chunks, one chunk per case per round,
so slow drift of the machine (thermal, other tenants, frequency scaling) hits every case alike instead of
whichever happened to run last. Each chunk starts with one untimed inference so the cost of switching
between models (cold caches, sleeping threads) is not charged to the model being measured.

A case finishes when it has at least ``runs`` timed runs AND at least ``min_seconds`` of timed inference.
Figures are only reported from complete cases: a case that failed or ran out of ``max_seconds`` first
reports an error and no numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.runners import Runner, RunnerError, Unsupported

PERCENTILES = (5, 50, 90, 95, 99)


@dataclass
class Case:
    """One timed configuration and what was measured for it."""

    key: str
    runner: Runner
    x: np.ndarray
    num_classes: int | None  # None: a --reference file, whose output has no labels to check against
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_ms: list[float] = field(default_factory=list)
    samples_ms: list[float] = field(default_factory=list)
    error: str | None = None
    unsupported: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.unsupported is None


def summarize(samples_ms: list[float] | np.ndarray) -> dict[str, float | int]:
    """mean/std (population, as benchmark_model)/min/max and percentiles of latency samples in ms."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples to summarize")
    out: dict[str, float | int] = {"n": int(a.size), "mean_ms": float(a.mean()), "std_ms": float(a.std()),
                                   "min_ms": float(a.min()), "max_ms": float(a.max())}
    for q, v in zip(PERCENTILES, np.percentile(a, PERCENTILES)):
        out[f"p{q}_ms"] = float(v)
    out["total_s"] = float(a.sum() / 1e3)
    return out


def latency_block(case: Case) -> dict[str, Any] | None:
    """The row's latency figures, or None for a case that did not complete."""
    if not case.ok or not case.samples_ms:
        return None
    block: dict[str, Any] = {"init_ms": case.init_ms, "first_ms": case.first_ms,
                             "warmup_mean_ms": float(np.mean(case.warmup_ms)) if case.warmup_ms else None,
                             "warmup_n": len(case.warmup_ms)}
    block.update(summarize(case.samples_ms))
    return block


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter_ns()
    out = fn()
    return out, (time.perf_counter_ns() - t0) / 1e6


def prepare(case: Case, warmup: int) -> None:
    """Load (init time), first inference (checked for the expected output shape) and warm-up."""
    r = case.runner
    try:
        _, case.init_ms = _timed(r.load)
        r.activate()
        out, case.first_ms = _timed(lambda: r.run(case.x))
        out = np.asarray(out)
        if case.num_classes is not None and out.shape != (1, case.num_classes):
            raise RunnerError(f"output shape {list(out.shape)}, expected [1, {case.num_classes}]")
        for _ in range(warmup):
            _, ms = _timed(lambda: r.run(case.x))
            case.warmup_ms.append(ms)
    except Unsupported as e:
        case.unsupported = str(e)
    except RunnerError as e:
        case.error = str(e)
    except Exception as e:  # noqa: BLE001 - any runtime crash becomes the row's status, not a traceback
        case.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"


def measure(cases: list[Case], runs: int, min_seconds: float, warmup: int, chunk: int | None = None,
            max_seconds: float | None = None, on_progress: Callable[[int], None] | None = None) -> None:
    """Prepare every case, then time them round-robin until each has >= runs and >= min_seconds."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    for c in cases:
        prepare(c, warmup)
    # At least ~10 rounds so interleaving actually mixes the cases; at most 50 runs per chunk.
    chunk = chunk or max(1, min(50, runs // 10))
    active = [c for c in cases if c.ok]
    min_ms = min_seconds * 1e3
    max_ms = max_seconds * 1e3 if max_seconds else None
    while active:
        for c in list(active):
            r = c.runner
            try:
                r.activate()
                r.run(c.x)  # untimed: absorbs the cost of switching from the previous case
                for _ in range(chunk):
                    _, ms = _timed(lambda r=r, c=c: r.run(c.x))
                    c.samples_ms.append(ms)
            except Exception as e:  # noqa: BLE001
                c.error = f"failed after {len(c.samples_ms)} runs: {type(e).__name__}: {str(e)[:200]}"
                active.remove(c)
                continue
            if on_progress:
                on_progress(chunk)
            total = sum(c.samples_ms)
            if len(c.samples_ms) >= runs and total >= min_ms:
                active.remove(c)
            elif max_ms is not None and total >= max_ms:
                if len(c.samples_ms) < runs:
                    c.error = (f"only {len(c.samples_ms)} of {runs} runs within --max-seconds {max_seconds:g}; "
                               f"no figures reported")
                active.remove(c)
