"""Phone runs: real-phone latency and memory with the official TFLite/LiteRT ``benchmark_model`` binary over adb.

The user supplies the binary (``--benchmark-binary``, e.g. the nightly ``android_aarch64_benchmark_model``);
we push it and each ``.tflite``, run it with explicit threads / XNNPACK / GPU / NNAPI flags and
``--report_peak_memory_footprint=true``, and parse its log into the same row schema as host runs.

Two output formats exist and both are parsed (fixtures under ``tests/benchmarks/fixtures``):
- old: ``count=50 first=… curr=… min=… max=… avg=… std=…`` (no percentiles), memory as
  ``Peak memory footprint (MB): init=… overall=…`` in the oldest builds;
- new: the same plus ``p5=… median=… p95=…``, memory as
  ``Memory footprint delta from the start of the tool (MB): init=… overall=…`` and, with
  ``--report_peak_memory_footprint``, ``Overall peak memory footprint (MB) via periodic monitoring: …``.
Lines may carry ``INFO: `` or logcat prefixes; values may use exponents (``1.24027e+06``).

:func:`run_android` makes the rows: one per ``.tflite`` and thread count, accuracy computed on the host.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.accuracy import PixelCache, metrics, predict
from benchmarks.artifacts import Artifact
from benchmarks.host import progress_bar
from benchmarks.plan import Plan, Timing, input_spec
from benchmarks.report import broken_rows, fail, new_row
from benchmarks.runners import make_runner
from models.errors import InputError

REMOTE_DIR = "/data/local/tmp/ssdkd-bench"
INTERLEAVE = "benchmark_model per artifact, artifacts alternated per thread count"
_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_STAT_LINE = re.compile(r"count=(\d+)(.*)$")
_KV = re.compile(r"(\w+)=" + _NUM)
_TIMINGS = re.compile(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM +
                      r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM)
_MEM_DELTA = re.compile(r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                        r"init=" + _NUM + r" overall=" + _NUM)
_MEM_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM)
_MODEL_SIZE = re.compile(r"The input model file size \(MB\): " + _NUM)


class AndroidError(Exception):
    """The device run failed (not a user-input problem): the row is 'failed'."""


@dataclass(frozen=True)
class AndroidOptions:
    benchmark_binary: Path
    serial: str | None = None
    adb: str = "adb"
    use_xnnpack: bool = True
    use_gpu: bool = False
    use_nnapi: bool = False
    remote_dir: str = REMOTE_DIR
    timeout_s: float = 900.0

    def to_json(self) -> dict[str, Any]:
        return {"benchmark_binary": str(self.benchmark_binary), "serial": self.serial, "use_xnnpack": self.use_xnnpack,
                "use_gpu": self.use_gpu, "use_nnapi": self.use_nnapi, "remote_dir": self.remote_dir}


def parse_benchmark_output(text: str) -> dict[str, Any]:
    """benchmark_model log -> {"latency": {...}, "memory": {...}, "model_size_mb": ...} in the harness schema.

    The last ``count=`` line is the regular (timed) run; earlier ones are warm-up. Times are converted
    from microseconds to milliseconds. Percentiles the tool does not print are None, never invented.
    """
    stats: list[dict[str, float]] = []
    timings = mem = peak = size = None
    for line in text.splitlines():
        m = _STAT_LINE.search(line)
        if m and "curr=" in line:
            kv = {k: float(v) for k, v in _KV.findall(m.group(2))}
            kv["count"] = float(m.group(1))
            stats.append(kv)
        timings = _TIMINGS.search(line) or timings
        mem = _MEM_DELTA.search(line) or mem
        peak = _MEM_PEAK.search(line) or peak
        size = _MODEL_SIZE.search(line) or size
    if not stats or timings is None:
        raise AndroidError("benchmark_model output has no 'count=' statistics or 'Inference timings' line "
                           "(did it crash? see the saved log)")
    regular = stats[-1]
    warm = stats[0] if len(stats) > 1 else None

    def ms(key: str, src: dict[str, float] | None = None) -> float | None:
        src = regular if src is None else src
        return src[key] / 1e3 if key in src else None

    init_us, first_us, warm_avg_us, _avg_us = (float(g) for g in timings.groups())
    latency = {
        "init_ms": init_us / 1e3, "first_ms": first_us / 1e3, "warmup_mean_ms": warm_avg_us / 1e3,
        "warmup_n": int(warm["count"]) if warm else None,
        "n": int(regular["count"]), "mean_ms": ms("avg"), "std_ms": ms("std"), "min_ms": ms("min"),
        "max_ms": ms("max"), "p5_ms": ms("p5"), "p50_ms": ms("median"), "p90_ms": None, "p95_ms": ms("p95"),
        "p99_ms": None, "total_s": None,
    }
    memory: dict[str, Any] | None = None
    if mem or peak:
        memory = {"load_peak_delta_mb": float(mem.group(1)) if mem else None,
                  "overall_peak_delta_mb": float(mem.group(2)) if mem else None,
                  "process_peak_mb": float(peak.group(1)) if peak else None,
                  "source": "benchmark_model"}
    return {"latency": latency, "memory": memory, "model_size_mb": float(size.group(1)) if size else None}


def benchmark_command(opts: AndroidOptions, model_name: str, threads: int, runs: int, min_seconds: float,
                      warmup: int) -> list[str]:
    """The on-device command line (as a list; joined and quoted for ``adb shell``)."""
    binary = f"{opts.remote_dir}/{opts.benchmark_binary.name}"
    return [binary, f"--graph={opts.remote_dir}/{model_name}", f"--num_threads={threads}", f"--num_runs={runs}",
            f"--min_secs={min_seconds:g}", f"--warmup_runs={warmup}",
            f"--use_xnnpack={str(opts.use_xnnpack).lower()}", f"--use_gpu={str(opts.use_gpu).lower()}",
            f"--use_nnapi={str(opts.use_nnapi).lower()}", "--report_peak_memory_footprint=true"]


def adb_base(opts: AndroidOptions) -> list[str]:
    return [opts.adb] + (["-s", opts.serial] if opts.serial else [])


def push_commands(opts: AndroidOptions, models: list[Path]) -> list[list[str]]:
    base = adb_base(opts)
    cmds = [base + ["shell", f"mkdir -p {shlex.quote(opts.remote_dir)}"],
            base + ["push", str(opts.benchmark_binary), f"{opts.remote_dir}/{opts.benchmark_binary.name}"],
            base + ["shell", f"chmod 755 {shlex.quote(opts.remote_dir + '/' + opts.benchmark_binary.name)}"]]
    cmds += [base + ["push", str(m), f"{opts.remote_dir}/{m.name}"] for m in models]
    return cmds


def run_command(opts: AndroidOptions, device_cmd: list[str]) -> list[str]:
    # adb shell joins its arguments with spaces on the device: pass one quoted string.
    return adb_base(opts) + ["shell", " ".join(shlex.quote(c) for c in device_cmd)]


def check_device(opts: AndroidOptions) -> dict[str, Any]:
    """Fail with a clear message when adb, the binary or the device is missing; returns device info."""
    if not opts.benchmark_binary.is_file():
        raise InputError(f"{opts.benchmark_binary}: --benchmark-binary not found (download the official "
                         f"android_aarch64_benchmark_model from the TFLite/LiteRT nightly builds)")
    adb = shutil.which(opts.adb)
    if adb is None:
        raise InputError(f"adb not found ({opts.adb!r} is not on PATH): install Android platform-tools or pass --adb")
    try:
        out = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InputError(f"`adb devices` failed: {e}") from None
    devices = parse_adb_devices(out)
    ready = [s for s, state in devices.items() if state == "device"]
    if opts.serial:
        if devices.get(opts.serial) != "device":
            state = devices.get(opts.serial, "not connected")
            raise InputError(f"Android device {opts.serial!r} is {state} (adb devices lists: "
                             f"{', '.join(f'{s} ({st})' for s, st in devices.items()) or 'none'})")
    elif not ready:
        raise InputError("no Android device connected (adb devices lists none in 'device' state); connect a "
                         "phone with USB debugging on, or pass --serial")
    elif len(ready) > 1:
        raise InputError(f"several Android devices connected ({', '.join(ready)}): pick one with --serial")
    serial = opts.serial or ready[0]
    info = {"serial": serial}
    for key, prop in (("model", "ro.product.model"), ("soc", "ro.board.platform"),
                      ("android", "ro.build.version.release"), ("abi", "ro.product.cpu.abi")):
        res = subprocess.run([adb, "-s", serial, "shell", "getprop", prop], capture_output=True, text=True, timeout=30)
        info[key] = res.stdout.strip() or None
    return info


def parse_adb_devices(text: str) -> dict[str, str]:
    """``adb devices`` output -> {serial: state} (state: device / unauthorized / offline ...)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
            out[parts[0]] = parts[1]
    return out


def run_on_device(opts: AndroidOptions, model: Path, threads: int, runs: int, min_seconds: float, warmup: int,
                  log_dir: Path | None = None) -> dict[str, Any]:
    """Run one (model, threads) benchmark on the phone; the raw log is kept beside the results."""
    cmd = run_command(opts, benchmark_command(opts, model.name, threads, runs, min_seconds, warmup))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.timeout_s)
    except subprocess.TimeoutExpired:
        raise AndroidError(f"benchmark_model timed out after {opts.timeout_s:g} s") from None
    text = proc.stdout + proc.stderr
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{model.stem}_t{threads}.log").write_text(text)
    if proc.returncode != 0:
        tail = (text.strip().splitlines() or ["no output"])[-1]
        raise AndroidError(f"benchmark_model exited with code {proc.returncode}: {tail[:200]}")
    parsed = parse_benchmark_output(text)
    n = parsed["latency"]["n"]
    if n < runs:
        raise AndroidError(f"benchmark_model ran only {n} of {runs} runs (max_secs reached?); no figures reported")
    return parsed


def push_all(opts: AndroidOptions, models: list[Path]) -> None:
    for cmd in push_commands(opts, models):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.timeout_s)
        if proc.returncode != 0:
            raise AndroidError(f"{' '.join(cmd[:4])} failed: {(proc.stderr or proc.stdout).strip()[:200]}")


def run_android(plan: Plan, timing: Timing, opts: AndroidOptions, *, log_dir: Path | None,
                progress: bool) -> list[dict[str, Any]]:
    """benchmark_model on the phone (checked beforehand with :func:`check_device`) for every .tflite; other
    artifacts are rows marked skipped. Each raw log goes to ``log_dir``."""
    tflite = [a for a in plan.runnable if a.runtime == "litert"]
    if not tflite:
        raise InputError("--target android benchmarks .tflite artifacts, and none was given")
    push_all(opts, [a.path for a in tflite])
    rows = broken_rows([a for a in plan.broken if a.runtime == "litert"], plan.threads)
    rows += [_skipped_row(a) for a in plan.runnable if a.runtime != "litert"]
    timed = _device_rows(tflite, plan.threads, timing, opts, log_dir, progress)
    if plan.evalset is not None:
        _host_accuracy([a for a in tflite if not a.contractless], plan, timed)  # a --reference has no contract
    return rows + list(timed.values())


def _skipped_row(a: Artifact) -> dict[str, Any]:
    row = new_row(a, None)
    row["status"] = "skipped: --target android runs .tflite artifacts only"
    return row


def _device_rows(tflite: list[Artifact], threads: list[int], timing: Timing, opts: AndroidOptions,
                 log_dir: Path | None, progress: bool) -> dict[tuple[Path, int], dict[str, Any]]:
    """A row per (artifact, thread count), in the order they ran."""
    rows: dict[tuple[Path, int], dict[str, Any]] = {}
    with progress_bar(len(tflite) * len(threads), "android", progress) as bar:
        for t in threads:  # artifacts alternate within each thread count so drift is shared
            for a in tflite:
                rows[(a.path, t)] = _device_row(a, t, timing, opts, log_dir)
                bar.update(1)
    return rows


def _device_row(a: Artifact, threads: int, timing: Timing, opts: AndroidOptions,
                log_dir: Path | None) -> dict[str, Any]:
    row = new_row(a, threads)
    row["runtime_settings"] = {"threads": threads, "tool": "benchmark_model", **opts.to_json()}
    try:
        parsed = run_on_device(opts, a.path, threads, timing.runs, timing.min_seconds, timing.warmup, log_dir)
    except AndroidError as e:
        fail(row, str(e))
        return row
    row["latency"], row["memory"] = parsed["latency"], parsed["memory"]
    if row["memory"] is not None:
        row["memory"]["threads"] = threads
    return row


def _host_accuracy(tflite: list[Artifact], plan: Plan, rows: dict[tuple[Path, int], dict[str, Any]]) -> None:
    """Numerics are judged on the host with the same .tflite (LiteRT CPU); phone GPU/NNAPI may differ."""
    assert plan.evalset is not None
    cache = PixelCache()
    for a in tflite:
        pre = plan.pres[a.path]
        runner = make_runner(a, plan.threads[0], input_spec(pre))
        try:
            runner.load()
            acc = metrics(predict(runner, pre, plan.evalset, cache), plan.evalset, tuple(pre.labels), a.name,
                          temperature=pre.temperature)
        except Exception as e:  # noqa: BLE001 - a runtime crash on real images fails this artifact only
            for t in plan.threads:
                fail(rows[(a.path, t)], f"host accuracy: {type(e).__name__}: {str(e)[:200]}")
            continue
        for t in plan.threads:
            rows[(a.path, t)]["accuracy"] = acc
