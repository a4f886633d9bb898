"""The format table: every target, the files it writes, the module that builds and verifies them, the runtime
that runs them and what it needs installed.

Requests are validated against this table before any work starts, so a bad flag or a missing dependency fails in
a second with one clear line instead of after minutes of conversion.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from models.errors import InputError


@dataclass(frozen=True)
class Artifact:
    """One file a target can write. The names are a contract with the benchmark harness and the Android app."""

    file: str
    precision: str  # fp32 | fp16 | int8 | a16w8
    io_dtype: str  # dtype of the model's input/output tensors
    flag: str = ""  # the precision flag that adds it ("int8", "fp16", "a16w8"); "" for a file written on every export


@dataclass(frozen=True)
class Format:
    """One target. ``module`` exposes ``build(job, spec)`` and ``verify(job, spec, pre, reference)`` (see
    :mod:`export.context`); ``runtime`` is the key of the runtime that verifies and benchmarks its files."""

    target: str
    module: str
    runtime: str  # "onnxruntime" | "litert" | "coreml", as the report and the benchmark harness name them
    artifacts: tuple[Artifact, ...]  # in the order they are exported and reported
    requires: tuple[str, ...]  # importable modules the target needs
    extra: str  # the pip extra that installs them
    note: str
    also_accepts: frozenset[str] = frozenset()  # precision flags that add no file here, yet are no mistake

    @property
    def flags(self) -> frozenset[str]:
        """The precision flags this target accepts."""
        return frozenset(a.flag for a in self.artifacts if a.flag) | self.also_accepts


FORMATS: dict[str, Format] = {
    f.target: f
    for f in (
        Format("onnx", "export.onnx_export", "onnxruntime",
               (Artifact("model_fp32.onnx", "fp32", "float32"),
                Artifact("model_int8.onnx", "int8", "float32", "int8")),
               ("onnx", "onnxruntime", "onnxslim"), "onnx",
               "fp32 always; --int8 adds onnxruntime static QDQ int8"),
        Format("tflite", "export.tflite_export", "litert",
               (Artifact("model_fp32.tflite", "fp32", "float32"),
                Artifact("model_fp16.tflite", "fp16", "float32", "fp16"),
                Artifact("model_int8.tflite", "int8", "int8", "int8"),
                Artifact("model_int8_fio.tflite", "int8", "float32", "int8"),
                # TFLite's 16x8 mode: int8 weights, 16-bit activations, float I/O. For models whose 8-bit
                # activations fail the gate (docs/int8.md); its integer kernels are the slow reference ones.
                Artifact("model_a16w8.tflite", "a16w8", "float32", "a16w8")),
               ("ai_edge_litert", "ai_edge_quantizer"), "tflite",
               "fp32 always; --fp16 adds fp16 weights; --int8 adds full-integer int8 (int8 I/O and float I/O); "
               "--a16w8 adds int8 weights with 16-bit activations (float I/O)"),
        # CoreML ML programs compute in fp16 by default: fp16 is the baseline there, not an option, so --fp16
        # asks for what is built anyway.
        Format("coreml", "export.coreml_export", "coreml",
               (Artifact("model_fp16.mlpackage", "fp16", "image"),
                Artifact("model_int8.mlpackage", "int8", "image", "int8")),
               ("coremltools",), "coreml",
               "fp16 ML program always; --int8 adds int8 weights", also_accepts=frozenset({"fp16"})),
    )
}


@dataclass(frozen=True)
class Route:
    """One way of building the TFLite files (see :mod:`export.tflite_export`) and what it needs on top of the
    TFLite target's own modules."""

    name: str
    requires: tuple[str, ...]
    extra: str
    install_after: str = ""  # a further install command the extra cannot express


TFLITE_ROUTES: dict[str, Route] = {
    r.name: r
    for r in (  # the default route comes first
        Route("litert", ("litert_torch",), "tflite"),
        Route("onnx2tf", ("onnx", "onnxruntime", "onnxslim", "tensorflow", "onnx2tf"), "onnx,tflite",
              " && pip install --no-deps onnx2tf==1.29.24"),
    )
}
DEFAULT_TFLITE_ROUTE = next(iter(TFLITE_ROUTES))


@dataclass(frozen=True)
class ArtifactSpec:
    """One file to produce: an :class:`Artifact` of a target, with the name of its sidecar."""

    file: str
    target: str
    precision: str  # fp32 | fp16 | int8 | a16w8
    io_dtype: str  # dtype of the model's input/output tensors
    sidecar: str = ""  # set by plan(): "<stem>.preprocessing.json", or "<file>.preprocessing.json" if that is shared

    @property
    def stem(self) -> str:
        return self.file.rsplit(".", 1)[0]

    @property
    def runtime(self) -> str:
        return FORMATS[self.target].runtime


def resolve_targets(targets: str | Sequence[str]) -> list[str]:
    """``"all"``, ``"tflite"``, ``"onnx,tflite"`` or a list -> ordered unique target names."""
    names = [targets] if isinstance(targets, str) else list(targets)
    flat = [t.strip().lower() for name in names for t in str(name).split(",") if t.strip()]
    if not flat:
        raise InputError(f"no export target given; choose from {', '.join(FORMATS)} or all")
    out: list[str] = []
    for t in flat:
        if t == "all":
            out.extend(FORMATS)
            continue
        if t not in FORMATS:
            close = difflib.get_close_matches(t, [*FORMATS, "all"], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"unknown export target {t!r}{hint} (choose from {', '.join(FORMATS)} or all)")
        out.append(t)
    return list(dict.fromkeys(t for t in FORMATS if t in out))  # table order, so output is stable


def plan(targets: Sequence[str], int8: bool, fp16: bool, *, a16w8: bool = False,
         out_dir: Path | None = None) -> list[ArtifactSpec]:
    """The artifacts a request produces, in table order; ``out_dir``: where they go, to keep the sidecars of
    artifacts an earlier export left there (see :func:`_sidecar`)."""
    flags = {""} | {flag for flag, on in (("int8", int8), ("fp16", fp16), ("a16w8", a16w8)) if on}
    specs = [ArtifactSpec(a.file, t, a.precision, a.io_dtype)
             for t in targets for a in FORMATS[t].artifacts if a.flag in flags]
    stems = Counter(s.stem for s in specs)
    return [dataclasses.replace(s, sidecar=_sidecar(s, stems[s.stem] > 1, out_dir)) for s in specs]


def _sidecar(spec: ArtifactSpec, shared_stem: bool, out_dir: Path | None) -> str:
    """``<stem>.preprocessing.json``, or ``<file>.preprocessing.json`` where the short name would be shared (the
    report names each): by two artifacts of this export (model_fp32.onnx and model_fp32.tflite need different
    layouts), or with an artifact that an earlier export left in ``out_dir``, whose contract must stay true while
    it is there. A file that already has a ``<file>`` sidecar keeps it, so no stale contract of it is found first."""
    full, short = f"{spec.file}.preprocessing.json", f"{spec.stem}.preprocessing.json"
    if shared_stem or out_dir is None:
        return full if shared_stem else short
    if (out_dir / full).is_file():
        return full
    try:
        described = json.loads((out_dir / short).read_text()).get("model_file")
    except (OSError, ValueError, AttributeError):  # absent or unreadable: nothing true to keep
        return short
    return full if described not in (None, spec.file) and (out_dir / str(described)).exists() else short


def validate_flags(targets: Sequence[str], int8: bool, fp16: bool, a16w8: bool = False) -> None:
    """A precision flag no chosen target accepts is an error naming the targets that do."""
    for flag, on in (("int8", int8), ("fp16", fp16), ("a16w8", a16w8)):
        if on and not any(flag in FORMATS[t].flags for t in targets):
            ok = [t for t in FORMATS if flag in FORMATS[t].flags]
            raise InputError(f"--{flag} does not apply to target(s) {', '.join(targets)}; "
                             f"it applies to {', '.join(ok)}")


def check_dependencies(targets: Sequence[str], tflite_route: str = DEFAULT_TFLITE_ROUTE) -> None:
    """Import what each target needs; a missing or broken install names the pip extra to install."""
    for t in targets:
        fmt = FORMATS[t]
        needs = [(mod, fmt.extra, "") for mod in fmt.requires]
        if t == "tflite":  # the route is the TFLite target's own choice
            route = TFLITE_ROUTES[tflite_route]
            needs += [(mod, route.extra, route.install_after) for mod in route.requires]
        for mod, extra, install_after in needs:
            try:
                importlib.import_module(mod)
            except Exception as e:  # noqa: BLE001 - a broken install raises more than ImportError
                raise InputError(
                    f"target {t!r} needs the Python module {mod!r} ({type(e).__name__}: {str(e)[:80]}); "
                    f"install it with: pip install 'ssdkd[{extra}]'{install_after}"
                ) from None
