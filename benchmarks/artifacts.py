"""Find what to benchmark: export dirs (via ``export_report.json``), single artifact files and checkpoints.

Every artifact is paired with the ``preprocessing.json`` sidecar that the export wrote beside it: the
benchmark feeds each model exactly the input the app would (layout, dtype, quantization), so a sidecar
is required, never guessed. The one exception is a ``--reference`` file (a third-party .tflite/.onnx such as
Google's int8 MobileNetV2, raced beside the user's artifacts): it has no contract, so it gets latency and memory
only, on random input of the model's own shape and dtype.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from export._util import file_size
from export.runtimes import RUNTIMES as LOADERS
from models.errors import InputError

EXPORT_REPORT = "export_report.json"
EXPORT_REPORT_VERSION = 1
TORCH_NAME = "pytorch_fp32"

# File suffix -> runtime. ``.mlpackage`` is a directory.
REFERENCE_SUFFIXES = {".tflite": "litert", ".onnx": "onnxruntime"}
SUFFIX_RUNTIME = {".pt": "torch", ".pth": "torch", ".onnx": "onnxruntime", ".tflite": "litert",
                  ".mlpackage": "coreml"}
RUNTIMES = tuple(LOADERS)  # every runtime that has a loader
# Names users type for --runtimes; "tflite" is what people call the LiteRT runtime.
RUNTIME_ALIASES = {"torch": "torch", "pytorch": "torch", "onnxruntime": "onnxruntime", "ort": "onnxruntime",
                   "onnx": "onnxruntime", "tflite": "litert", "litert": "litert", "coreml": "coreml"}
_PRECISION = re.compile(r"_(int8_fio|int8|a16w8|fp16|fp32)(?:$|[_.])")


@dataclass(frozen=True)
class Artifact:
    """One model file and how to run it."""

    name: str  # file name, or TORCH_NAME for the PyTorch reference
    path: Path
    runtime: str  # one of RUNTIMES
    precision: str  # fp32 / fp16 / int8 / int8_fio / unknown
    target: str  # onnx / tflite / coreml / pytorch
    preprocessing: Path | None  # the sidecar; None only for the torch reference (its card is the contract)
    size_bytes: int
    problem: str | None = None  # set when the export report lists it but it cannot be run (e.g. export failed)
    input_size: int | None = None  # torch reference only: run at this size instead of the card's
    contractless: bool = False  # a --reference file: no preprocessing contract, latency and memory only

    @property
    def is_reference(self) -> bool:
        """The PyTorch fp32 reference (accuracy agreement and "p50 / torch" are relative to it)."""
        return self.runtime == "torch"

    def to_json(self) -> dict:
        return {"name": self.name, "path": str(self.path), "runtime": self.runtime, "precision": self.precision,
                "target": self.target, "preprocessing": str(self.preprocessing) if self.preprocessing else None,
                "size_bytes": self.size_bytes, "problem": self.problem, "input_size": self.input_size,
                "contractless": self.contractless}

    @classmethod
    def from_json(cls, d: dict) -> Artifact:
        side = d.get("preprocessing")
        return cls(d["name"], Path(d["path"]), d["runtime"], d["precision"], d["target"],
                   Path(side) if side else None, int(d["size_bytes"]), d.get("problem"), d.get("input_size"),
                   bool(d.get("contractless", False)))


def parse_runtimes(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"torch,onnxruntime,tflite"`` -> canonical runtime names (ValueError-style InputError on typos)."""
    if spec is None:
        return RUNTIMES
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in (s.strip().lower() for s in items):
        if not item:
            continue
        if item not in RUNTIME_ALIASES:
            raise InputError(f"unknown runtime {item!r}; expected some of: torch, onnxruntime, tflite, coreml")
        if RUNTIME_ALIASES[item] not in out:
            out.append(RUNTIME_ALIASES[item])
    if not out:
        raise InputError("--runtimes is empty; expected some of: torch, onnxruntime, tflite, coreml")
    return tuple(out)


def find_sidecar(path: Path) -> Path:
    """``model_int8.tflite`` -> ``model_int8.preprocessing.json``, else ``preprocessing.json`` beside it
    (the Android assets layout)."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    # <full name>.preprocessing.json first: model_fp32.onnx and model_fp32.tflite share a stem.
    others = []
    for cand in (path.parent / f"{path.name}.preprocessing.json", path.parent / f"{stem}.preprocessing.json",
                 path.parent / "preprocessing.json"):
        if cand.is_file():
            if not _describes_another(cand, path):
                return cand
            others.append(cand.name)
    skipped = f"; {', '.join(others)} describes another file beside it" if others else ""
    raise InputError(f"{path}: no preprocessing sidecar found (looked for {stem}.preprocessing.json and "
                     f"preprocessing.json beside it{skipped}); the benchmark needs the export's preprocessing "
                     f"contract (a third-party file: pass it as --reference for latency and memory only)")


def _describes_another(sidecar: Path, path: Path) -> bool:
    """A sidecar whose ``model_file`` names another artifact that sits beside it is that artifact's contract (two
    exports into one dir with a shared stem), not ``path``'s. A renamed copy (``model_file`` absent) is not."""
    try:
        named = json.loads(sidecar.read_text()).get("model_file")
    except (OSError, ValueError, AttributeError):
        return False
    return bool(named) and named != path.name and (sidecar.parent / str(named)).exists()


def _precision_from_name(name: str) -> str:
    m = _PRECISION.search(name)
    return m.group(1) if m else "unknown"


def _target_of(runtime: str) -> str:
    return {"torch": "pytorch", "onnxruntime": "onnx", "litert": "tflite", "coreml": "coreml"}[runtime]


def artifact_from_file(path: Path, sidecar: Path | None = None) -> Artifact:
    """A single artifact path given on the command line."""
    path = path.resolve()
    runtime = SUFFIX_RUNTIME.get(path.suffix.lower())
    if runtime is None:
        raise InputError(f"{path}: unknown artifact type {path.suffix!r}; expected an export dir or a "
                         f"{', '.join(sorted(SUFFIX_RUNTIME))} file")
    if runtime == "torch":
        return torch_reference(path)
    if not path.exists():
        raise InputError(f"{path}: artifact not found")
    side = sidecar or find_sidecar(path)
    precision = _precision_from_name(path.name)
    if precision == "unknown":
        # Fall back on the contract: an integer input means a quantized artifact.
        dtype = json.loads(side.read_text()).get("input_dtype", "float32")
        precision = {"float32": "fp32", "float16": "fp16", "int8": "int8", "uint8": "int8"}.get(dtype, "unknown")
    return Artifact(path.name, path, runtime, precision, _target_of(runtime), side, file_size(path))


def reference_file(path: str | Path) -> Artifact:
    """A ``--reference`` file: precision ``unknown`` until ``runners.read_model`` reads it from the model."""
    p = Path(path)
    runtime = REFERENCE_SUFFIXES.get(p.suffix.lower())
    if runtime is None or not p.is_file():
        problem = "not found" if not p.exists() else "not a file" if runtime else f"unknown type {p.suffix!r}"
        raise InputError(f"--reference {p}: {problem}; expected an existing .tflite or .onnx file")
    p = p.resolve()
    return Artifact(p.name, p, runtime, "unknown", _target_of(runtime), None, file_size(p), contractless=True)


def torch_reference(checkpoint: Path) -> Artifact:
    checkpoint = Path(checkpoint).resolve()
    if not checkpoint.is_file():
        raise InputError(f"{checkpoint}: PyTorch checkpoint not found (pass --checkpoint)")
    return Artifact(TORCH_NAME, checkpoint, "torch", "fp32", "pytorch", None, file_size(checkpoint))


def read_export_report(export_dir: Path) -> dict:
    path = export_dir / EXPORT_REPORT
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if report.get("schema_version") != EXPORT_REPORT_VERSION:
        raise InputError(f"{path}: schema_version {report.get('schema_version')!r} is not supported "
                         f"(expected {EXPORT_REPORT_VERSION})")
    if not isinstance(report.get("artifacts"), list):
        raise InputError(f"{path}: missing 'artifacts' list")
    return report


def artifacts_from_export_dir(export_dir: Path) -> tuple[list[Artifact], Path | None]:
    """Artifacts listed in ``export_report.json`` and the checkpoint it was exported from."""
    export_dir = export_dir.resolve()
    if not (export_dir / EXPORT_REPORT).is_file():
        return _scan_dir(export_dir), None
    report = read_export_report(export_dir)
    out: list[Artifact] = []
    for i, entry in enumerate(report["artifacts"]):
        where = f"{export_dir / EXPORT_REPORT}: artifacts[{i}]"
        try:
            path = export_dir / entry["file"]
            runtime = entry.get("runtime") or SUFFIX_RUNTIME[path.suffix.lower()]
        except (KeyError, TypeError):
            raise InputError(f"{where}: needs 'file' with a known suffix and a 'runtime'") from None
        if runtime not in RUNTIMES:
            raise InputError(f"{where}: unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
        precision = entry.get("precision") or _precision_from_name(path.name)
        target = entry.get("target") or _target_of(runtime)
        if not path.exists():
            # The export lists artifacts it failed to build: benchmark the rest, report this one as failed.
            why = (entry.get("verification") or {}).get("reason") or "not on disk"
            out.append(Artifact(path.name, path, runtime, precision, target, None, 0,
                                f"listed in {EXPORT_REPORT} but missing ({why})"))
            continue
        side = export_dir / entry["preprocessing"] if entry.get("preprocessing") else find_sidecar(path)
        if not side.is_file():
            raise InputError(f"{where}: preprocessing sidecar {side} is missing")
        out.append(Artifact(path.name, path, runtime, precision, target, side, file_size(path)))
    ckpt = report.get("checkpoint")
    return out, Path(ckpt) if ckpt else None


def _scan_dir(d: Path) -> list[Artifact]:
    """A directory without an export report (e.g. copied Android assets): every known artifact in it."""
    found = sorted(p for p in d.iterdir() if p.suffix.lower() in SUFFIX_RUNTIME and p.suffix.lower() not in
                   (".pt", ".pth"))
    if not found:
        raise InputError(f"{d}: no {EXPORT_REPORT} and no .onnx/.tflite/.mlpackage artifacts in it")
    warnings.warn(f"{d}: no {EXPORT_REPORT}; benchmarking the {len(found)} artifact(s) found in it", stacklevel=3)
    return [artifact_from_file(p) for p in found]


def _reference_at_artifact_size(artifacts: list[Artifact]) -> list[Artifact]:
    """Run the PyTorch reference at the artifacts' input size when they all share one (an export made with
    ``--imgsz`` differs from the card's), so that "p50 / torch" compares equal work."""
    sizes = {json.loads(a.preprocessing.read_text()).get("input_size") for a in artifacts
             if a.preprocessing is not None and a.preprocessing.is_file()}
    if len(sizes) != 1:
        return artifacts
    size = int(sizes.pop())
    return [replace(a, input_size=size) if a.is_reference else a for a in artifacts]


def discover(paths: list[str | Path], checkpoint: str | Path | None = None,
             runtimes: tuple[str, ...] = RUNTIMES,
             references: list[str | Path] | tuple[str | Path, ...] = ()) -> tuple[list[Artifact], Path | None]:
    """Expand command-line paths into artifacts, the PyTorch reference first (once), in a stable order.

    The reference comes from ``--checkpoint``, else a ``.pt`` on the command line, else an export report;
    artifacts of runtimes not in ``runtimes`` are dropped. ``references`` (``--reference`` files) come last and
    are kept whatever ``runtimes`` says: they were named one by one. Also returns the checkpoint (even when
    torch is not benchmarked, its card gives parameters and MACs), or None.
    """
    refs = [reference_file(r) for r in references]  # a bad --reference fails before any model is loaded
    if not paths and not refs:
        raise InputError("nothing to benchmark: give an export dir, artifact files or --reference files")
    found: list[Artifact] = []
    ckpt: Path | None = Path(checkpoint) if checkpoint else None
    missing_report_ckpt: Path | None = None
    for raw in paths:
        p = Path(raw)
        if p.is_dir() and p.suffix.lower() != ".mlpackage":
            arts, report_ckpt = artifacts_from_export_dir(p)
            found.extend(arts)
            if ckpt is None and report_ckpt is not None:
                if report_ckpt.is_file():
                    ckpt = report_ckpt
                else:
                    missing_report_ckpt = report_ckpt
        elif p.exists():
            found.append(artifact_from_file(p))
        else:
            raise InputError(f"{p}: not found (expected an export dir or an artifact file)")
    explicit_torch = any(a.is_reference for a in found)
    if ckpt is not None and (checkpoint is not None or not explicit_torch):
        found.insert(0, torch_reference(ckpt))
    elif explicit_torch:
        # A .pt named on the command line is the reference: move it first.
        found.sort(key=lambda a: not a.is_reference)
    elif missing_report_ckpt is not None and "torch" in runtimes:
        raise InputError(f"{missing_report_ckpt}: checkpoint named in {EXPORT_REPORT} not found; pass --checkpoint "
                         f"or leave torch out of --runtimes")
    unique = _unique(found + refs)
    selected = _reference_at_artifact_size([a for a in unique if a.runtime in runtimes or a.contractless])
    if paths and all(a.contractless for a in selected):
        kinds = sorted({a.runtime for a in unique if not a.contractless})
        raise InputError(f"no artifact matches --runtimes {','.join(runtimes)} (found: {', '.join(kinds)})")
    reference = next((a.path for a in unique if a.is_reference), None)
    return selected, reference


def _unique(artifacts: list[Artifact]) -> list[Artifact]:
    """Each path once (the first wins); a file name shared by two dirs gets its dir prepended, so rows stay
    distinguishable."""
    unique: dict[Path, Artifact] = {}
    for a in artifacts:
        unique.setdefault(a.path, a)
    names = [a.name for a in unique.values()]
    return [replace(a, name=f"{a.path.parent.name}/{a.name}") if names.count(a.name) > 1 else a
            for a in unique.values()]
