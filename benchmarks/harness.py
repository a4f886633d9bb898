"""The library API behind ``ssdkd-bench``: ``run_benchmark(paths, ...) -> Results``.

One call benchmarks every artifact (plus the PyTorch fp32 reference) in one run, on this host (``host``: latency
interleaved round-robin in this process, accuracy with each artifact's own preprocessing, memory in a fresh
subprocess per artifact) or on a phone (``android``). Failures never abort the run: a failed artifact is a row with
its status, and ``Results.failures`` names them. ``--reference`` files (third-party .tflite/.onnx without a
preprocessing contract) race in the same interleaved loop on random input of their own shape, for latency and
memory only. ``report`` assembles the results document and writes it; ``notes`` turns the rows into one-line
findings (int8 not faster than fp32 here and why, ratios to the references).
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.android import INTERLEAVE as ANDROID_INTERLEAVE
from benchmarks.android import AndroidOptions, check_device, run_android
from benchmarks.artifacts import parse_runtimes
from benchmarks.host import INTERLEAVE as HOST_INTERLEAVE
from benchmarks.host import run_host
from benchmarks.plan import Plan, Timing, make_plan, parse_threads
from benchmarks.profiles import Profile, choose_cpus, pinned, resolve_target
from benchmarks.report import document, write_all
from benchmarks.runners import runtime_versions
from models.errors import InputError
from models.host import host_cpu


@dataclass
class Results:
    """The results document plus the files written for it."""

    doc: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.doc["rows"]

    @property
    def failures(self) -> list[str]:
        return self.doc["failures"]

    @property
    def failed_runtimes(self) -> list[str]:
        return sorted({r["runtime"] for r in self.rows if r["status"].startswith("failed")})

    def row(self, artifact: str, threads: int | None = None) -> dict[str, Any]:
        for r in self.rows:
            if r["artifact"] == artifact and (threads is None or r["threads"] == threads):
                return r
        raise KeyError(f"no row for {artifact!r} threads={threads}")


@dataclass(frozen=True)
class Target:
    """Where the run happens: ``kind`` host, profile (host emulation of a device) or android."""

    name: str
    kind: str
    profile: Profile | None
    cpus: set[int] | None  # the CPUs a profile pins the run to
    warnings: list[str]  # from choosing those CPUs


def run_benchmark(paths: Sequence[str | Path], *, runtimes: str | Sequence[str] | None = None,
                  threads: str | Sequence[int] = (1,), target: str = "host", data: str | Path | None = None,
                  split: str | None = None, split_file: str | Path | None = None, max_images: int | None = None,
                  runs: int = 200, min_seconds: float = 5.0, warmup: int = 20, max_seconds: float | None = None,
                  out: str | Path | None = None, checkpoint: str | Path | None = None, memory: bool = True,
                  memory_runs: int = 10, profiles_file: str | Path | None = None,
                  android: AndroidOptions | None = None, plots: bool = True, progress: bool = True,
                  command: list[str] | None = None, references: Sequence[str | Path] = ()) -> Results:
    """Benchmark artifacts/export dirs; write results.{json,csv,md} and plots to ``out`` if given.

    ``references``: third-party .tflite/.onnx files without a preprocessing contract, raced beside the
    artifacts for latency and memory only (accuracy None) on random input of the model's own shape and dtype.
    """
    timing = Timing(runs, min_seconds, warmup, max_seconds)
    rts = parse_runtimes(runtimes if runtimes is None or isinstance(runtimes, str) else list(runtimes))
    thread_list = parse_threads(threads)
    where = _target(target, profiles_file)
    if where.profile is not None:
        thread_list = [where.profile.threads]  # the profile defines the thread budget
    if where.kind == "android" and android is None:
        raise InputError("--target android needs --benchmark-binary (the official benchmark_model for the phone)")
    plan = make_plan(paths, runtimes=rts, threads=thread_list, checkpoint=checkpoint, references=references,
                     data=data, split=split, split_file=split_file, max_images=max_images)
    machine = machine_info()
    rows, warnings = _measure(where, plan, timing, machine, android=android, out=out, memory=memory,
                              memory_runs=memory_runs, progress=progress)
    machine["load_average_end"] = list(os.getloadavg())
    settings = _settings(where, plan, timing, runtimes=rts, memory=memory, memory_runs=memory_runs, android=android,
                         warnings=warnings)
    data_block = plan.evalset.to_json() if plan.evalset is not None else None
    doc = document(rows, machine=machine, runtime_versions=runtime_versions(), settings=settings,
                   model=_complexity(plan.checkpoint), data=data_block, command=command or sys.argv,
                   profile=where.profile)
    results = Results(doc)
    if out is not None:
        results.files = write_all(doc, Path(out), plots=plots)
    return results


def _target(name: str, profiles_file: str | Path | None) -> Target:
    kind, profile = resolve_target(name, profiles_file)
    if profile is None:
        return Target(name, kind, None, None, [])
    cpus, warnings = choose_cpus(profile)
    return Target(name, kind, profile, cpus, warnings)


def _measure(where: Target, plan: Plan, timing: Timing, machine: dict[str, Any], *, android: AndroidOptions | None,
             out: str | Path | None, memory: bool, memory_runs: int,
             progress: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows, measured on the target (recorded in ``machine``), and the warnings about the run."""
    # torch's thread count is restored after the pinning is undone: threads it starts meanwhile would stay pinned.
    with _torch_threads_kept(), pinned(where.cpus):
        if where.cpus is not None:
            machine["affinity"] = sorted(os.sched_getaffinity(0))
        if where.kind == "android":
            assert android is not None
            machine["android_device"] = check_device(android)
            log_dir = Path(out) / "android_logs" if out is not None else None
            return run_android(plan, timing, android, log_dir=log_dir, progress=progress), where.warnings
        rows, pinning = run_host(plan, timing, memory=memory, memory_runs=memory_runs, progress=progress)
        return rows, where.warnings + pinning


def _settings(where: Target, plan: Plan, timing: Timing, *, runtimes: tuple[str, ...], memory: bool,
              memory_runs: int, android: AndroidOptions | None, warnings: list[str]) -> dict[str, Any]:
    """The results' settings block: what was asked for and how the run was made."""
    on_phone = where.kind == "android"
    return {"target": where.name, "target_kind": where.kind,
            "profile": where.profile.to_json() if where.profile else None,
            "pinned_cpus": sorted(where.cpus) if where.cpus is not None else None, "threads": plan.threads,
            **timing.to_json(), "interleave": ANDROID_INTERLEAVE if on_phone else HOST_INTERLEAVE,
            "runtimes": list(runtimes), "memory": memory and not on_phone, "memory_runs": memory_runs,
            "input": plan.input_text(), "android": android.to_json() if on_phone and android else None,
            "warnings": warnings}


def machine_info() -> dict[str, Any]:
    """The host, with the CPU's instruction sets that decide which int8 kernels run (``models.host``)."""
    cpu = host_cpu()
    try:
        import psutil

        total = round(psutil.virtual_memory().total / 2**20, 1)
    except ImportError:
        total = None
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return {"hostname": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_model": cpu["cpu_model"], "isa": cpu["isa"], "int8_dot_product": cpu["int8_dot_product"],
            "int8_note": cpu["int8_note"], "logical_cpus": os.cpu_count() or 1,
            "affinity": affinity, "memory_total_mb": total, "load_average_start": list(os.getloadavg()),
            "load_average_end": [], "android_device": None}


def _complexity(ckpt: Path | None) -> dict[str, Any] | None:
    if ckpt is None:
        return None
    from benchmarks.complexity import model_complexity

    return model_complexity(ckpt)


@contextlib.contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """Restore torch's thread count, which the runners set, after the run."""
    # Only if torch is already imported: importing it just to read a setting would cost seconds.
    n = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    try:
        yield
    finally:
        if n is not None and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)
