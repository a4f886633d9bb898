"""``export()``: validate the request, read calibration/verification images once, build every artifact with its
target module, write sidecars, verify each artifact in its runtime, apply the gate and write the report."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from export import formats
from export._util import Stages, file_size, preload_torch, quiet
from export.calibration import (
    MIN_CALIBRATION_IMAGES,
    ORIENTATION_COUNTS,
    ORIENTATIONS,
    ImageSet,
    PixelTransform,
    card_data_root,
    read_split_images,
)
from export.context import Job
from export.onnx_export import DEFAULT_ONNX_INT8, ONNX_INT8_SCHEMES
from export.report import ArtifactRecord, ExportReport, Verification
from export.verify import Gate, reference_calibration, reference_logits, scores, verify_artifact
from models.atomic import atomic_write_json, atomic_write_text, check_writable_dir, ensure_writable_dir
from models.checkpoint import load_checkpoint
from models.errors import InputError

TARGET_MODULES = {"onnx": "export.onnx_export", "tflite": "export.tflite_export", "coreml": "export.coreml_export"}
VERSIONED = ("torch", "onnx", "onnxruntime", "onnxslim", "ai-edge-litert", "litert-torch", "ai-edge-quantizer",
             "tensorflow", "onnx2tf", "coremltools")


def export(
    checkpoint: str | Path,
    targets: str | Sequence[str] = ("tflite",),
    out_dir: str | Path | None = None,
    int8: bool = False,
    fp16: bool = False,
    calib: str | Path | None = None,
    calib_size: int = 200,
    val: str | Path | None = None,
    imgsz: int | None = None,
    android_demo: str | Path | None = None,
    gate: Gate = Gate(),
    *,
    val_size: int | None = None,
    val_orientations: int = ORIENTATIONS,
    split: str | Path | None = None,
    tflite_route: str = formats.DEFAULT_TFLITE_ROUTE,
    onnx_int8: str = DEFAULT_ONNX_INT8,
    bias_correction: bool = True,
    dynamic_batch: bool = False,
    calib_transform: PixelTransform | None = None,
    threads: int = 2,
    seed: int = 0,
    verbose: bool = True,
    quiet_converters: bool = True,
) -> ExportReport:
    """Export ``checkpoint`` to the requested targets in ``out_dir`` (default: ``<checkpoint dir>/export``).

    Returns the :class:`ExportReport` (also written as ``export_report.json``); ``report.passed`` is False when an
    artifact failed verification or the gate. Files are kept either way, for diagnosis. Bad input raises
    :class:`InputError` before any conversion starts.
    """
    log = Stages(verbose)
    checkpoint = Path(checkpoint)
    names = formats.resolve_targets(targets)
    if android_demo is not None:
        if "tflite" not in names:
            raise InputError("--android-demo needs the TFLite target (add --target tflite)")
        if not int8:
            log.log("--android-demo ships the int8 TFLite model: enabling --int8")
            int8 = True
    formats.validate_flags(names, int8, fp16)
    _check_numbers(calib_size, val_size, val_orientations, imgsz, threads, onnx_int8)
    preload_torch()
    with quiet(quiet_converters):  # importing TF/coremltools prints banners and "untested version" warnings
        formats.check_dependencies(names, tflite_route)
    out = check_writable_dir(out_dir if out_dir is not None else checkpoint.parent / "export")
    if android_demo is not None:
        check_writable_dir(android_demo)

    with log.stage("load checkpoint"):
        model, card = load_checkpoint(checkpoint)
    pre = card.preprocessing(**({"input_size": imgsz} if imgsz else {}))
    calib_set, val_set = _read_images(log, card, checkpoint, pre, int8, calib, calib_size, val, val_size, split,
                                      calib_transform, seed)
    ensure_writable_dir(out)  # only now that the checkpoint and the images have been read
    if val_set is not None:
        val_set = val_set.with_orientations(val_orientations)
    reference: dict = {"runtime": "pytorch", "precision": "fp32"}
    ref = None
    if val_set is not None:
        with log.stage(f"pytorch fp32 reference ({len(val_set.x)} val x {val_set.orientations} orientations)"):
            ref = reference_logits(model, val_set)
        reference.update(scores(ref, val_set.labels))
        with log.stage("calibration of the reference"):
            reference["calibration"] = reference_calibration(ref, val_set, pre.temperature, bool(card.calibration),
                                                             out, f"{card.arch}: calibration on the val split")

    specs = formats.plan(names, int8, fp16, out_dir=out)
    settings = {
        "targets": names, "int8": int8, "fp16": fp16, "imgsz": pre.input_size, "tflite_route": tflite_route,
        "onnx_int8": ONNX_INT8_SCHEMES[onnx_int8].to_json(), "bias_correction": bias_correction,
        "dynamic_batch": dynamic_batch,
        "calib_size": calib_size, "val_size": val_size, "val_orientations": val_orientations,
        "calib": calib_set.describe() if calib_set else None,
        "val": val_set.describe() if val_set else None, "gate": gate.to_json(), "threads": threads,
        "android_demo": str(android_demo) if android_demo is not None else None, "versions": _versions(),
    }
    report = ExportReport(out, checkpoint, card.to_json(), settings, reference=reference)
    atomic_write_text(out / "labels.txt", "\n".join(pre.labels) + "\n")

    with tempfile.TemporaryDirectory(prefix="ssdkd-export-") as work:
        job = Job(model, card, pre, out, Path(work), calib_set, threads, quiet_converters, tflite_route,
                  dynamic_batch, onnx_int8, bias_correction)
        for spec in specs:
            report.artifacts.append(_build_one(log, job, spec, val_set, ref, reference, gate))
            report.write()  # after every artifact, so an interrupted run still leaves a truthful report

    if android_demo is not None:
        _android(log, report, out, android_demo)
    report.write()
    if verbose:
        print(report.table())
        print(f"\nreport: {report.path}\nbenchmark: {report.bench_command()}")
    return report


def _check_numbers(calib_size: int, val_size: int | None, orientations: int, imgsz: int | None, threads: int,
                   onnx_int8: str) -> None:
    if calib_size < MIN_CALIBRATION_IMAGES:
        raise InputError(f"--calib-size must be at least {MIN_CALIBRATION_IMAGES}, got {calib_size}")
    if val_size is not None and val_size < 1:
        raise InputError(f"--val-size must be positive, got {val_size}")
    if orientations not in ORIENTATION_COUNTS:
        raise InputError(f"--val-orientations must be one of {', '.join(map(str, ORIENTATION_COUNTS))} (whole "
                         f"groups of flips and right-angle turns), got {orientations}")
    if imgsz is not None and not 32 <= imgsz <= 1024:
        raise InputError(f"--imgsz must be between 32 and 1024, got {imgsz}")
    if threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    if onnx_int8 not in ONNX_INT8_SCHEMES:
        raise InputError(f"--onnx-int8 must be one of {', '.join(ONNX_INT8_SCHEMES)}, got {onnx_int8!r}")


def _read_images(log: Stages, card, checkpoint: Path, pre, int8: bool, calib, calib_size: int, val, val_size,
                 split, transform: PixelTransform | None, seed: int) -> tuple[ImageSet | None, ImageSet | None]:
    """Calibration from the train split (only for int8), verification from the val split."""
    default_root = card_data_root(card)
    calib_set = None
    if int8:
        root = calib or default_root
        if root is None:
            raise InputError(f"--int8 needs calibration images: pass --calib ROOT (the model card's data root "
                             f"{card.data.get('root')!r} is not a directory)")
        with log.stage("read calibration images"):
            calib_set = read_split_images(root, "train", card, checkpoint, pre, calib_size, split, seed, transform)
        log.log(f"calibration: {len(calib_set)} train-split images of {calib_set.root} ({calib_set.split_source})")
    root = val or default_root or calib
    if root is None:
        log.log("no validation images (pass --val ROOT): artifacts will not be verified")
        return calib_set, None
    with log.stage("read validation images"):
        val_set = read_split_images(root, "val", card, checkpoint, pre, val_size, split, seed)
    log.log(f"verification: {len(val_set)} val-split images of {val_set.root} ({val_set.split_source})")
    return calib_set, val_set


def _build_one(log: Stages, job: Job, spec: formats.ArtifactSpec, val_set: ImageSet | None, ref, reference: dict,
               gate: Gate) -> ArtifactRecord:
    module = importlib.import_module(TARGET_MODULES[spec.target])
    rec = ArtifactRecord(spec.file, spec.target, spec.precision, spec.runtime, spec.sidecar, spec.io_dtype)
    path = job.out_dir / spec.file
    t0 = time.perf_counter()
    try:
        with log.stage(f"export {spec.file}"):
            # every artifact's contract carries the checkpoint's temperature, whatever its target module rebuilt
            pre = dataclasses.replace(module.build(job, spec), model_file=spec.file, temperature=job.pre.temperature)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - a converter failure is a failed row, the other targets still run
        rec.export_seconds = time.perf_counter() - t0
        rec.verification = Verification(status="failed", reason=f"export failed: {type(e).__name__}: {e}"[:500])
        return rec
    rec.export_seconds = time.perf_counter() - t0
    rec.size_bytes = file_size(path)
    if rec.size_bytes == 0:
        rec.verification = Verification(status="failed", reason="export wrote an empty file")
        return rec
    atomic_write_json(job.out_dir / spec.sidecar, pre.to_json())
    with log.stage(f"verify {spec.file}"), quiet(job.quiet):
        if spec.runtime == "coreml":
            rec.verification = module.check(job, spec)
        else:
            rec.verification = verify_artifact(path, spec.runtime, pre, val_set, ref,
                                               reference.get("balanced_accuracy"), gate)
            if spec.target == "tflite":
                rec.verification.checks["op_histogram"] = module.op_histogram(path)
    if rec.verification.status == "failed" and spec.precision == "int8" and val_set is not None:
        rec.verification.drift = _diagnose(log, job, spec, val_set)
    return rec


def _diagnose(log: Stages, job: Job, spec: formats.ArtifactSpec, val_set: ImageSet) -> list[dict]:
    """Per-layer drift of a failed int8 artifact (best effort: a diagnosis must never hide the failure)."""
    from export import drift

    try:
        with log.stage(f"diagnose {spec.file}"):
            return drift.diagnose(job, spec, val_set)
    except Exception as e:  # noqa: BLE001
        log.log(f"per-layer diagnosis unavailable for {spec.file}: {type(e).__name__}: {e}")
        return []


def _android(log: Stages, report: ExportReport, out: Path, project: str | Path) -> None:
    from export.android import write_android_assets

    rec = report.artifact("model_int8.tflite")
    if rec.verification.status == "failed":
        log.log(f"--android-demo: not copying model_int8.tflite into {project}: it failed verification")
        report.settings["android_demo_written"] = False
        return
    with log.stage("android demo assets"):
        dest = write_android_assets(out, project, rec.preprocessing)
    report.settings["android_demo_written"] = str(dest)
    log.log(f"android demo assets: {dest}")


def _versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out

