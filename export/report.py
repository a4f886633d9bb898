"""The export report: one record per artifact, printed as a table and written as ``export_report.json``.

``export_report.json`` (schema_version 1) is read by the benchmark harness; its keys are a contract:
``{"schema_version", "checkpoint", "card", "settings", "artifacts": [{"file", "target", "precision", "runtime",
"preprocessing", "size_bytes", "export_seconds", "verification": {...}}], "reference": {...}, "host": {...}}``.
``host`` is :func:`models.host.host_cpu` of the machine that verified the files: int8 outputs and speed depend on it.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.atomic import atomic_write_json
from models.host import host_cpu

REPORT_FILE = "export_report.json"
REPORT_SCHEMA_VERSION = 1
# Which file opens where: every .tflite carries metadata, but MediaPipe Tasks accepts only uint8/float32 input and
# scores with whatever the output is (the fp32/fp16 files give logits).
OPENS_IN = {
    "model_int8_fio.tflite": "MediaPipe Tasks ImageClassifier / Android Studio ML Model Binding (float I/O, "
                             "probabilities; labels and normalisation from its metadata)",
    "model_int8.tflite": "this project's Android app (int8 I/O, which MediaPipe refuses)",
}


@dataclass
class Verification:
    status: str = "not_run"  # passed | failed | ungated (failed, gate off) | not_run
    reason: str = ""
    agreement: float | None = None  # top-1 agreement with PyTorch fp32 on the same inputs
    # images whose top output score is shared by 2+ classes: on an int8 output grid (~0.1 logit) near-ties become
    # exact ties, and argmax then takes the lowest class index whatever fp32 said
    tied_top1: float | None = None
    max_abs_dsoftmax: float | None = None
    # mean over images of sum_c |p_c - p_c(fp32)|: the steadiest fidelity figure, where agreement and balanced
    # accuracy move by whole images
    mean_l1_dsoftmax: float | None = None
    max_abs_dlogit: float | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    # 95 % interval of (artifact - fp32) balanced accuracy in points, from a paired bootstrap of the val lesions
    # within each class: with 20-30 images in the smallest classes one image moves balanced accuracy by ~0.5 pt
    bacc_change_ci: list[float] | None = None
    # expected calibration error (15 bins of top-1 probability) of the outputs at T = 1 and at the sidecar's
    # temperature; not part of the gate
    ece_before: float | None = None
    ece_after: float | None = None
    n_images: int = 0  # inputs compared: val images x orientations
    drift: list[dict[str, Any]] = field(default_factory=list)  # layers whose int8 output drifts most
    checks: dict[str, Any] = field(default_factory=dict)  # structural checks (CoreML on Linux)


@dataclass
class ArtifactRecord:
    file: str
    target: str
    precision: str
    runtime: str
    preprocessing: str  # sidecar file name
    io_dtype: str
    size_bytes: int = 0
    export_seconds: float = 0.0
    verification: Verification = field(default_factory=Verification)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["export_seconds"] = round(self.export_seconds, 3)
        return d


@dataclass
class ExportReport:
    out_dir: Path
    checkpoint: Path
    card: dict[str, Any]
    settings: dict[str, Any]
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=host_cpu)

    @property
    def failures(self) -> list[str]:
        return [f"{a.file}: {a.verification.reason}" for a in self.artifacts if a.verification.status == "failed"]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def path(self) -> Path:
        return self.out_dir / REPORT_FILE

    def artifact(self, file: str) -> ArtifactRecord:
        for a in self.artifacts:
            if a.file == file:
                return a
        raise KeyError(f"{file} is not in this report ({', '.join(a.file for a in self.artifacts)})")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "checkpoint": str(self.checkpoint.resolve()),
            "card": self.card,
            "settings": self.settings,
            "artifacts": [a.to_json() for a in self.artifacts],
            "reference": self.reference,
            "host": self.host,
        }

    def write(self) -> Path:
        return atomic_write_json(self.path, self.to_json())

    def table(self) -> str:
        rows = [("artifact", "precision", "io", "size", "agree", "mean L1 dp", "max|dp|", "acc", "bacc",
                 "Δbacc pt [95% CI]", "ECE T=1→T", "status", "path")]
        ref = self.reference
        cal = ref.get("calibration")
        if ref.get("accuracy") is not None:
            rows.append(("pytorch (reference)", "fp32", "float32", "", "", "", "", _pct(ref["accuracy"]),
                         _pct(ref["balanced_accuracy"]), "", _ece(cal and cal["ece_before"], cal and cal["ece_after"]),
                         "", str(self.checkpoint)))
        for a in self.artifacts:
            v = a.verification
            rows.append((a.file, a.precision, a.io_dtype, _size(a.size_bytes), _pct(v.agreement),
                         "" if v.mean_l1_dsoftmax is None else f"{v.mean_l1_dsoftmax:.4f}",
                         "" if v.max_abs_dsoftmax is None else f"{v.max_abs_dsoftmax:.4f}", _pct(v.accuracy),
                         _pct(v.balanced_accuracy), _bacc_change(v, ref.get("balanced_accuracy")),
                         _ece(v.ece_before, v.ece_after), v.status, str(self.out_dir / a.file)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        val = self.settings.get("val")
        notes = ([f"  compared with PyTorch fp32 on {val['n_images']} {val['split']} images x "
                  f"{val.get('orientations', 1)} orientations"] if isinstance(val, dict) else [])
        notes.append(f"  verified on {_describe_host(self.host)}")
        if cal:
            notes.append(f"  {_describe_calibration(cal)}; reliability diagram: {self.out_dir / cal['reliability']}")
        scheme = self.settings.get("onnx_int8")
        if isinstance(scheme, dict) and any(a.target == "onnx" and a.precision == "int8" for a in self.artifacts):
            notes.append(f"  model_int8.onnx: {scheme['scheme']} scheme ({scheme['weights']}), computes right on "
                         f"{scheme['runs_right_on']}")
        notes += [f"  {a.file} opens in {OPENS_IN[a.file]}" for a in self.artifacts if a.file in OPENS_IN]
        notes += [f"  {a.file}: {a.verification.reason}" for a in self.artifacts if a.verification.reason]
        notes += [f"  {a.file}: most-drifting layers (SQNR vs the float model): "
                  + "; ".join(_layer(d) for d in a.verification.drift[:3])
                  for a in self.artifacts if a.verification.drift]
        return "\n".join(lines + (["notes:", *notes] if notes else []))

    def bench_command(self) -> str:
        data = self.settings.get("val", {}).get("root") if isinstance(self.settings.get("val"), dict) else None
        cmd = ["ssdkd-bench", str(self.out_dir)]
        if data:
            cmd += ["--data", data]
        return shlex.join(cmd)


def _describe_host(host: dict[str, Any]) -> str:
    isa = ", ".join(host.get("isa") or []) or "none of the int8-relevant ISA extensions"
    return f"{host.get('cpu_model') or 'unknown CPU'} ({host.get('machine')}: {isa})"


def _bacc_change(v: Verification, reference: float | None) -> str:
    if v.balanced_accuracy is None or reference is None:
        return ""
    ci = f" [{v.bacc_change_ci[0]:+.1f}, {v.bacc_change_ci[1]:+.1f}]" if v.bacc_change_ci else ""
    return f"{100 * (v.balanced_accuracy - reference):+.1f}{ci}"


def _describe_calibration(cal: dict[str, Any]) -> str:
    where = ("the checkpoint's, fitted on its val split: on these val inputs the ECE at T is in-sample"
             if cal["fitted"] else "the checkpoint has no fitted temperature (`ssdkd-distill calibrate` fits one)")
    return (f"ECE T=1→T: expected calibration error ({cal['bins']} bins of top-1 probability) at T = 1 and at the "
            f"contract's temperature T = {cal['temperature']:.3f} ({where}); the gate ignores it")


def _ece(before: float | None, after: float | None) -> str:
    return "" if before is None or after is None else f"{before:.3f}→{after:.3f}"


def _layer(d: dict[str, Any]) -> str:
    where = f"{d['op']} {'x'.join(map(str, d['shape']))}" if "op" in d else d["tensor"]
    return f"{where} {d['sqnr_db']:.1f} dB"


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}%"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
