"""The library API behind ``ssdkd-bench``: ``run_benchmark(paths, ...) -> Results``.

One call benchmarks every artifact (plus the PyTorch fp32 reference) in one run: latency interleaved
round-robin in this process (``timing``), accuracy with each artifact's own preprocessing (``accuracy``),
memory in a fresh subprocess per artifact (``memory``), or everything on a phone (``android``). Failures
never abort the run: a failed artifact is a row with its status, and ``Results.failures`` names them.
``--reference`` files (third-party .tflite/.onnx without a preprocessing contract) race in the same
interleaved loop on random input of their own shape, for latency and memory only; ``notes`` turns the rows
into one-line findings (int8 not faster than fp32 here and why, ratios to the references).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import notes, schema
from benchmarks.accuracy import EvalSet, PixelCache, load_eval_set, metrics, predict
from benchmarks.android import AndroidError, AndroidOptions, check_device, push_all, run_on_device
from benchmarks.artifacts import Artifact, discover, parse_runtimes
from benchmarks.memory import measure_memory
from benchmarks.profiles import Profile, choose_cpus, pinned, resolve_target, thread_affinities
from benchmarks.runners import InputSpec, RunnerError, make_runner, read_model, runtime_versions
from benchmarks.timing import Case, latency_block, measure
from models.errors import InputError
from models.host import host_cpu
from models.preprocessing import Preprocessing


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


def parse_threads(spec: str | Sequence[int]) -> list[int]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        out = [int(t) for t in items if str(t).strip()]
    except ValueError:
        raise InputError(f"--threads must be comma-separated integers, got {spec!r}") from None
    if not out or min(out) < 1:
        raise InputError(f"--threads must list integers >= 1, got {spec!r}")
    return list(dict.fromkeys(out))


def _check_settings(runs: int, min_seconds: float, warmup: int, max_seconds: float | None) -> None:
    if runs < 1:
        raise InputError(f"--runs must be >= 1, got {runs}")
    if min_seconds < 0 or warmup < 0:
        raise InputError("--min-seconds and --warmup must be >= 0")
    if max_seconds is not None and max_seconds < min_seconds:
        raise InputError(f"--max-seconds {max_seconds:g} is below --min-seconds {min_seconds:g}")


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


def preprocessing_for(artifact: Artifact) -> Preprocessing:
    """The artifact's contract: its sidecar, or the checkpoint card for the PyTorch reference."""
    if artifact.preprocessing is not None:
        return Preprocessing.load(artifact.preprocessing)
    from models import read_checkpoint

    _, card = read_checkpoint(artifact.path)
    return card.preprocessing(**({"input_size": artifact.input_size} if artifact.input_size else {}))


def input_spec(pre: Preprocessing) -> InputSpec:
    return InputSpec(pre.layout, pre.input_size, pre.input_dtype, tuple(pre.mean), tuple(pre.std))


@dataclass(frozen=True)
class Feed:
    """What one artifact is fed, and the output it must give (None: not checked, a --reference file)."""

    spec: InputSpec
    x: np.ndarray
    num_classes: int | None


def read_references(artifacts: list[Artifact]) -> tuple[list[Artifact], dict[Path, InputSpec]]:
    """Each --reference file with the precision and input spec read from the model itself; a file its runtime
    cannot load keeps precision unknown and becomes a failed row (like any artifact that cannot be run)."""
    out, specs = [], {}
    for a in artifacts:
        if not a.contractless or a.problem is not None:
            out.append(a)
            continue
        try:
            spec, precision = read_model(a)
        except RunnerError as e:
            out.append(replace(a, problem=str(e)))
            continue
        specs[a.path] = spec
        out.append(replace(a, precision=precision))
    return out, specs


def _feeds(artifacts: list[Artifact], pres: dict[Path, Preprocessing], ref_specs: dict[Path, InputSpec],
           evalset: EvalSet | None, cache: PixelCache) -> dict[Path, Feed]:
    feeds = {}
    for a in artifacts:
        if a.contractless:
            spec = ref_specs[a.path]
            feeds[a.path] = Feed(spec, spec.random_input(), None)
        else:
            pre = pres[a.path]
            feeds[a.path] = Feed(input_spec(pre), pre.model_input(_pixels(pre, evalset, cache)), len(pre.labels))
    return feeds


def _pixels(pre: Preprocessing, evalset: EvalSet | None, cache: PixelCache) -> np.ndarray:
    # Latency does not depend on image content for these CNNs; a real image is used when one is at hand.
    if evalset is not None:
        return cache.get(pre, evalset.paths[0])
    return np.random.default_rng(0).uniform(0.0, 255.0, (pre.input_size, pre.input_size, 3))


def _input_text(evalset: EvalSet | None, artifacts: list[Artifact]) -> str:
    parts = []
    if any(not a.contractless for a in artifacts):
        parts.append((f"first image of --data ({evalset.paths[0].name})" if evalset is not None
                      else "synthetic pixels (seed 0)") + " through each artifact's preprocessing")
    if any(a.contractless for a in artifacts):
        parts.append("--reference files: random data of the model's own input shape and dtype (seed 0)")
    return "; ".join(parts)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    # disable=None: show only on a terminal, so logs and CI output stay clean.
    return tqdm(total=total, desc=desc, unit="run", disable=None if enabled else True, leave=False)


def _base_row(a: Artifact, threads: int | None) -> dict[str, Any]:
    return {"artifact": a.name, "path": str(a.path), "runtime": a.runtime, "precision": a.precision,
            "target": a.target, "threads": threads, "status": "ok", "size_bytes": a.size_bytes,
            "runtime_settings": None, "latency": None, "p50_ratio_to_torch": None, "memory": None,
            "accuracy": None, "estimate": None, "reference": a.contractless}


def _fail(row: dict[str, Any], message: str) -> None:
    """Mark a row failed (keeping the first failure) and drop its figures: none from a failed run."""
    if not row["status"].startswith("failed"):
        row["status"] = f"failed: {message}"
    row["latency"] = None


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
    _check_settings(runs, min_seconds, warmup, max_seconds)
    rts = parse_runtimes(runtimes if runtimes is None or isinstance(runtimes, str) else list(runtimes))
    thread_list = parse_threads(threads)
    kind, profile = resolve_target(target, profiles_file)
    warnings: list[str] = []
    cpus: set[int] | None = None
    if profile is not None:
        thread_list = [profile.threads]  # the profile defines the thread budget
        cpus, warnings = choose_cpus(profile)
    if kind == "android" and android is None:
        raise InputError("--target android needs --benchmark-binary (the official benchmark_model for the phone)")
    artifacts, ckpt = discover(list(paths), checkpoint, rts, list(references))
    if split is not None and split_file is None and ckpt is not None:
        split_file = _card_split_file(ckpt)
    evalset = load_eval_set(data, split, split_file, max_images) if data is not None else None
    pres = {a.path: preprocessing_for(a) for a in artifacts if a.problem is None and not a.contractless}
    artifacts, ref_specs = read_references(artifacts)
    machine = machine_info()
    torch_threads = _torch_threads()
    rows: list[dict[str, Any]] = []
    try:
        with pinned(cpus):
            if cpus is not None:
                machine["affinity"] = sorted(os.sched_getaffinity(0))
            if kind == "android":
                assert android is not None
                rows = _run_android(artifacts, pres, thread_list, runs, min_seconds, warmup, evalset, android, machine,
                                    out, progress)
            else:
                rows = _run_host(artifacts, pres, ref_specs, thread_list, runs, min_seconds, warmup, max_seconds,
                                 evalset, memory, memory_runs, progress, warnings)
    finally:
        _restore_torch_threads(torch_threads)
    _add_ratios(rows)
    if profile is not None and profile.slowdown is not None:
        _add_estimates(rows, profile)
    machine["load_average_end"] = list(os.getloadavg())
    doc = {
        "schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tool": {"name": "ssdkd-bench", "command": command or sys.argv},
        "machine": machine, "runtime_versions": runtime_versions(),
        "settings": {"target": target, "target_kind": kind, "profile": profile.to_json() if profile else None,
                     "pinned_cpus": sorted(cpus) if cpus is not None else None, "threads": thread_list,
                     "runs": runs, "min_seconds": min_seconds, "warmup": warmup, "max_seconds": max_seconds,
                     "interleave": "round-robin across artifacts x threads, chunks of runs" if kind != "android"
                     else "benchmark_model per artifact, artifacts alternated per thread count",
                     "runtimes": list(rts), "memory": memory and kind != "android", "memory_runs": memory_runs,
                     "input": _input_text(evalset, artifacts),
                     "android": android.to_json() if kind == "android" and android else None,
                     "warnings": warnings},
        "model": _complexity(ckpt),
        "data": evalset.to_json() if evalset is not None else None,
        "rows": rows,
        "failures": [f"{r['runtime']}: {r['artifact']} ({r['threads'] or '-'} threads): {r['status'][8:]}"
                     for r in rows if r["status"].startswith("failed")],
        "notes": notes.int8_notes(rows, machine, kind),
        "reference_ratios": notes.reference_ratios(rows),
    }
    schema.check(doc)
    results = Results(doc)
    if out is not None:
        results.files = write_outputs(doc, Path(out), plots)
    return results


def write_outputs(doc: dict[str, Any], out: Path, plots: bool = True) -> dict[str, Path]:
    from benchmarks.plots import make_plots
    from benchmarks.report import write_all

    files = write_all(doc, out)
    if plots:
        for p in make_plots(doc, out):
            files[p.stem] = p
    return files


def _card_split_file(ckpt: Path) -> Path | None:
    from models import read_checkpoint

    _, card = read_checkpoint(ckpt)
    name = (card.data or {}).get("split_file")
    return (ckpt.parent / name) if name else None


def _complexity(ckpt: Path | None) -> dict[str, Any] | None:
    if ckpt is None:
        return None
    from benchmarks.complexity import model_complexity

    return model_complexity(ckpt)


def _torch_threads() -> int | None:
    # Only if torch is already imported: importing it just to read a setting would cost seconds.
    return sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None


def _restore_torch_threads(n: int | None) -> None:
    if n is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def _check_pinning() -> list[str]:
    """Threads allowed on CPUs the main thread is not (i.e. escaping a profile's pinning)."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    allowed = os.sched_getaffinity(0)
    stray = [tid for tid, aff in thread_affinities().items() if not set(aff) <= allowed]
    return [f"{len(stray)} runtime thread(s) not pinned to CPUs {sorted(allowed)}"] if stray else []


def _run_host(artifacts: list[Artifact], pres: dict[Path, Preprocessing], ref_specs: dict[Path, InputSpec],
              thread_list: list[int], runs: int, min_seconds: float, warmup: int, max_seconds: float | None,
              evalset: EvalSet | None, memory: bool, memory_runs: int, progress: bool,
              warnings: list[str]) -> list[dict[str, Any]]:
    cache = PixelCache()
    broken = [a for a in artifacts if a.problem is not None]
    artifacts = [a for a in artifacts if a.problem is None]
    feeds = _feeds(artifacts, pres, ref_specs, evalset, cache)
    cases: list[tuple[Artifact, Case]] = []
    for a in artifacts:
        f = feeds[a.path]
        for t in ([None] if a.runtime == "coreml" else thread_list):  # CoreML has no thread setting
            cases.append((a, Case(f"{a.name}@{t}", make_runner(a, t, f.spec), f.x, f.num_classes)))
    with _progress(len(cases) * runs, "latency", progress) as bar:
        measure([c for _, c in cases], runs, min_seconds, warmup, max_seconds=max_seconds, on_progress=bar.update)
    warnings += _check_pinning()  # while every runtime's thread pool is alive
    rows = []
    for a, c in cases:
        row = _base_row(a, c.runner.threads)
        if c.unsupported:
            row["status"] = f"unsupported: {c.unsupported}"
        elif c.error:
            _fail(row, c.error)
        else:
            row["runtime_settings"] = c.runner.settings()
            row["latency"] = latency_block(c)
            if row["latency"] is None or row["latency"]["n"] < runs:  # never report from fewer runs
                _fail(row, f"fewer than {runs} timed runs")
        rows.append(row)
    if evalset is not None:
        _accuracy(cases, rows, pres, evalset, cache, progress)
    del cases  # free the loaded models before the memory probes start
    if memory:
        _memory(artifacts, feeds, thread_list[0], rows, memory_runs, progress)
    return _broken_rows(broken, thread_list) + rows


def _broken_rows(broken: list[Artifact], thread_list: list[int]) -> list[dict[str, Any]]:
    rows = []
    for a in broken:
        for t in thread_list:
            row = _base_row(a, t)
            _fail(row, a.problem or "cannot be run")
            rows.append(row)
    return rows


def _accuracy(cases: list[tuple[Artifact, Case]], rows: list[dict[str, Any]], pres: dict[Path, Preprocessing],
              evalset: EvalSet, cache: PixelCache, progress: bool) -> None:
    """Accuracy once per artifact with its first working runner; the reference (first) sets agreement."""
    ref: tuple[np.ndarray, tuple[str, ...]] | None = None
    done: set[Path] = set()
    with _progress(len({a.path for a, _ in cases if not a.contractless}), "accuracy", progress) as bar:
        for a, c in cases:
            if a.path in done or not c.ok or a.contractless:  # no contract, no labels: nothing to score
                continue
            done.add(a.path)
            pre = pres[a.path]
            try:
                probs = predict(c.runner, pre, evalset, cache)
            except Exception as e:  # noqa: BLE001 - a runtime crash on real images fails this artifact only
                for r in rows:
                    if r["path"] == str(a.path):
                        _fail(r, f"accuracy: {type(e).__name__}: {str(e)[:200]}")
                bar.update(1)
                continue
            if a.is_reference:
                ref = (probs, tuple(pre.labels))
            acc = metrics(probs, evalset, tuple(pre.labels), a.name, *(ref if ref else (None, None)),
                          temperature=pre.temperature)
            for r in rows:
                if r["path"] == str(a.path):
                    r["accuracy"] = acc
            bar.update(1)


def _memory(artifacts: list[Artifact], feeds: dict[Path, Feed], threads: int, rows: list[dict[str, Any]],
            memory_runs: int, progress: bool) -> None:
    with _progress(len(artifacts), "memory", progress) as bar:
        for a in artifacts:
            if a.runtime == "coreml" and sys.platform != "darwin":
                result: dict[str, Any] = {"unsupported": "CoreML runs only on macOS"}
            else:
                f = feeds[a.path]
                result = measure_memory(a, threads if a.runtime != "coreml" else None, f.spec, f.x, runs=memory_runs)
            bar.update(1)
            for r in rows:
                if r["path"] != str(a.path) or r["status"].startswith(("unsupported", "skipped")):
                    continue
                if "error" in result:
                    _fail(r, f"memory probe: {result['error']}")
                elif "unsupported" not in result:
                    r["memory"] = result


def _run_android(artifacts: list[Artifact], pres: dict[Path, Preprocessing], thread_list: list[int], runs: int,
                 min_seconds: float, warmup: int, evalset: EvalSet | None, opts: AndroidOptions,
                 machine: dict[str, Any], out: str | Path | None, progress: bool) -> list[dict[str, Any]]:
    """benchmark_model on the phone for every .tflite; other artifacts are rows marked skipped."""
    machine["android_device"] = check_device(opts)
    broken = [a for a in artifacts if a.problem is not None]
    artifacts = [a for a in artifacts if a.problem is None]
    tfl = [a for a in artifacts if a.runtime == "litert"]
    if not tfl:
        raise InputError("--target android benchmarks .tflite artifacts, and none was given")
    push_all(opts, [a.path for a in tfl])
    by_key: dict[tuple[Path, int | None], dict[str, Any]] = {}
    rows: list[dict[str, Any]] = _broken_rows([a for a in broken if a.runtime == "litert"], thread_list)
    for a in artifacts:
        if a.runtime != "litert":
            row = _base_row(a, None)
            row["status"] = "skipped: --target android runs .tflite artifacts only"
            rows.append(row)
    log_dir = Path(out) / "android_logs" if out is not None else None
    with _progress(len(tfl) * len(thread_list), "android", progress) as bar:
        for t in thread_list:  # artifacts alternate within each thread count so drift is shared
            for a in tfl:
                row = _base_row(a, t)
                row["runtime_settings"] = {"threads": t, "tool": "benchmark_model", **opts.to_json()}
                try:
                    parsed = run_on_device(opts, a.path, t, runs, min_seconds, warmup, log_dir)
                    row["latency"], row["memory"] = parsed["latency"], parsed["memory"]
                    if row["memory"] is not None:
                        row["memory"]["threads"] = t
                except AndroidError as e:
                    _fail(row, str(e))
                by_key[(a.path, t)] = row
                rows.append(row)
                bar.update(1)
    if evalset is not None:
        # Numerics are judged on the host with the same .tflite (LiteRT CPU); phone GPU/NNAPI may differ.
        cache = PixelCache()
        for a in [t for t in tfl if not t.contractless]:  # a --reference file has no contract to score with
            pre = pres[a.path]
            runner = make_runner(a, thread_list[0], input_spec(pre))
            try:
                runner.load()
                acc = metrics(predict(runner, pre, evalset, cache), evalset, tuple(pre.labels), a.name,
                              temperature=pre.temperature)
            except Exception as e:  # noqa: BLE001
                for t in thread_list:
                    _fail(by_key[(a.path, t)], f"host accuracy: {type(e).__name__}: {str(e)[:200]}")
                continue
            for t in thread_list:
                by_key[(a.path, t)]["accuracy"] = acc
    return rows


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    torch_p50 = {r["threads"]: r["latency"]["p50_ms"] for r in rows
                 if r["runtime"] == "torch" and r["status"] == "ok" and r["latency"]}
    for r in rows:
        lat = r["latency"]
        base = torch_p50.get(r["threads"])
        # A --reference file is another network: its ratio to our PyTorch model would compare unlike work.
        if r["status"] == "ok" and lat and lat.get("p50_ms") is not None and base and not r["reference"]:
            r["p50_ratio_to_torch"] = lat["p50_ms"] / base


def _add_estimates(rows: list[dict[str, Any]], profile: Profile) -> None:
    assert profile.slowdown is not None
    f = profile.slowdown.factor
    for r in rows:
        lat = r["latency"]
        if r["status"] != "ok" or not lat:
            continue
        r["estimate"] = {"label": f"estimate (not measured): host latency x {f:g} from profile {profile.name!r}",
                         "factor": f, "basis": profile.slowdown.basis,
                         **{k: (lat[k] * f if lat.get(k) is not None else None)
                            for k in ("p50_ms", "p90_ms", "mean_ms")}}
