"""``export()``: validate the request, read calibration/verification images once, build every artifact with its
target module and write its sidecar, verify it and apply the gate, then write the report."""

from __future__ import annotations

import dataclasses
import importlib
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from export import formats
from export._util import Stages, file_size, package_versions, preload_torch, quiet
from export.calibration import ImageSet, card_data_root, read_split_images
from export.context import Job, Reference, int8_weights
from export.onnx_export import ONNX_INT8_SCHEMES
from export.options import ExportOptions, with_settings
from export.report import ArtifactRecord, ExportReport, Verification
from export.verify import reference_calibration, reference_logits, scores
from models.atomic import atomic_write_json, atomic_write_text, check_writable_dir, ensure_writable_dir
from models.checkpoint import ModelCard, load_checkpoint
from models.errors import InputError
from models.preprocessing import Preprocessing

VERSIONED = ("torch", "onnx", "onnxruntime", "onnxslim", "ai-edge-litert", "litert-torch", "ai-edge-quantizer",
             "tensorflow", "onnx2tf", "coremltools")


def export(checkpoint: str | Path, options: ExportOptions | None = None, /, **settings: Any) -> ExportReport:
    """Export ``checkpoint`` as ``options`` say (:class:`ExportOptions`; ``settings``, its fields as keywords,
    replace its values): ``export("best.pt", targets="tflite", int8=True)`` or ``export("best.pt", opts)``.

    Returns the :class:`ExportReport` (also written as ``export_report.json`` in ``out_dir``, default
    ``<checkpoint dir>/export``); ``report.passed`` is False when an artifact failed verification or the gate. Files
    are kept either way, for diagnosis. Bad input raises :class:`InputError` before any conversion starts.
    """
    checkpoint = Path(checkpoint)
    opts = with_settings(options, settings)
    log = Stages(opts.verbose)
    opts, out = _validate_request(log, checkpoint, opts)
    with log.stage("load checkpoint"):
        model, card = load_checkpoint(checkpoint)
    pre = card.preprocessing(**({"input_size": opts.imgsz} if opts.imgsz else {}))
    calib_set, val_set = _read_images(log, card, checkpoint, pre, opts)
    ensure_writable_dir(out)  # only now that the checkpoint and the images have been read
    reference, reference_json = _reference(log, model, card, pre, val_set, out, opts)
    report = ExportReport(out, checkpoint, card.to_json(), _settings(opts, pre, calib_set, val_set),
                          reference=reference_json)
    atomic_write_text(out / "labels.txt", "\n".join(pre.labels) + "\n")
    with tempfile.TemporaryDirectory(prefix="ssdkd-export-") as work:
        job = Job(model=model, card=card, pre=pre, out_dir=out, work_dir=Path(work), calib=calib_set,
                  threads=opts.threads, quiet=opts.quiet_converters, tflite_route=opts.tflite_route,
                  dynamic_batch=opts.dynamic_batch, onnx_int8=opts.onnx_int8, rounding_fixes=opts.rounding_fixes)
        for spec in formats.plan(opts.targets, opts.int8, opts.fp16, a16w8=opts.a16w8, out_dir=out):
            report.artifacts.append(_build_and_verify(log, job, spec, reference))
            report.write()  # after every artifact, so an interrupted run still leaves a truthful report
    if opts.android_demo is not None:
        _android(log, report, out, opts.android_demo)
    _write_report(report, opts.verbose)
    return report


def _validate_request(log: Stages, checkpoint: Path, opts: ExportOptions) -> tuple[ExportOptions, Path]:
    """The options as they will run (``--android-demo`` ships int8, so it turns ``int8`` on) and the output
    directory, after checking what the option values alone cannot: the installed converters and writable
    directories."""
    if opts.android_demo is not None and not opts.int8:
        log.log("--android-demo ships the int8 TFLite model: enabling --int8")
        opts = dataclasses.replace(opts, int8=True)
    preload_torch()
    with quiet(opts.quiet_converters):  # importing TF/coremltools prints banners and "untested version" warnings
        formats.check_dependencies(opts.targets, opts.tflite_route)
    out = check_writable_dir(opts.out_dir if opts.out_dir is not None else checkpoint.parent / "export")
    if opts.android_demo is not None:
        check_writable_dir(opts.android_demo)
    return opts, out


def _read_images(log: Stages, card: ModelCard, checkpoint: Path, pre: Preprocessing,
                 opts: ExportOptions) -> tuple[ImageSet | None, ImageSet | None]:
    """Calibration from the train split (only for int8 and a16w8), verification from the val split in
    ``opts.val_orientations`` orientations."""
    default_root = card_data_root(card)
    calib_set = None
    if opts.int8 or opts.a16w8:
        root = opts.calib or default_root
        if root is None:
            flag = "--int8" if opts.int8 else "--a16w8"
            raise InputError(f"{flag} needs calibration images: pass --calib ROOT (the model card's data root "
                             f"{card.data.get('root')!r} is not a directory)")
        with log.stage("read calibration images"):
            calib_set = read_split_images(root, "train", card, checkpoint, pre, opts.calib_size, opts.split,
                                          opts.seed, opts.calib_transform)
        log.log(f"calibration: {len(calib_set)} train-split images of {calib_set.root} ({calib_set.split_source})")
    root = opts.val or default_root or opts.calib
    if root is None:
        log.log("no validation images (pass --val ROOT): artifacts will not be verified")
        return calib_set, None
    with log.stage("read validation images"):
        val_set = read_split_images(root, "val", card, checkpoint, pre, opts.val_size, opts.split, opts.seed)
    log.log(f"verification: {len(val_set)} val-split images of {val_set.root} ({val_set.split_source})")
    return calib_set, val_set.with_orientations(opts.val_orientations)


def _reference(log: Stages, model: torch.nn.Module, card: ModelCard, pre: Preprocessing, val_set: ImageSet | None,
               out: Path, opts: ExportOptions) -> tuple[Reference, dict]:
    """PyTorch fp32 on the verification images, as every artifact is compared with it and as the report shows it
    (its scores and its calibration, with the reliability diagram written to ``out``)."""
    reference: dict = {"runtime": "pytorch", "precision": "fp32"}
    if val_set is None:
        return Reference(images=None, logits=None, balanced_accuracy=None, gate=opts.gate), reference
    with log.stage(f"pytorch fp32 reference ({len(val_set.x)} val x {val_set.orientations} orientations)"):
        ref = reference_logits(model, val_set)
    reference.update(scores(ref, val_set.labels))
    with log.stage("calibration of the reference"):
        reference["calibration"] = reference_calibration(ref, val_set, pre.temperature, bool(card.calibration),
                                                         out, f"{card.arch}: calibration on the val split")
    return Reference(images=val_set, logits=ref, balanced_accuracy=reference["balanced_accuracy"],
                     gate=opts.gate), reference


def _settings(opts: ExportOptions, pre: Preprocessing, calib_set: ImageSet | None,
              val_set: ImageSet | None) -> dict:
    """The report's record of the request, resolved: the image sets actually read, the tool versions."""
    return {
        "targets": list(opts.targets), "int8": opts.int8, "fp16": opts.fp16, "a16w8": opts.a16w8,
        "imgsz": pre.input_size,
        "tflite_route": opts.tflite_route, "onnx_int8": ONNX_INT8_SCHEMES[opts.onnx_int8].to_json(),
        **int8_weights(opts.rounding_fixes), "dynamic_batch": opts.dynamic_batch,
        "calib_size": opts.calib_size, "val_size": opts.val_size, "val_orientations": opts.val_orientations,
        "calib": calib_set.describe() if calib_set else None,
        "val": val_set.describe() if val_set else None, "gate": opts.gate.to_json(), "threads": opts.threads,
        "android_demo": str(opts.android_demo) if opts.android_demo is not None else None,
        "versions": package_versions(VERSIONED),
    }


def _build_and_verify(log: Stages, job: Job, spec: formats.ArtifactSpec, reference: Reference) -> ArtifactRecord:
    module = importlib.import_module(formats.FORMATS[spec.target].module)
    rec = ArtifactRecord(spec.file, spec.target, spec.precision, spec.runtime, spec.sidecar, spec.io_dtype)
    pre = _build(log, job, spec, module, rec)
    if pre is None:
        return rec
    with log.stage(f"verify {spec.file}"), quiet(job.quiet):
        rec.verification = module.verify(job, spec, pre, reference)
    if rec.verification.status == "failed" and spec.precision == "int8" and reference.images is not None:
        rec.verification.drift = _diagnose(log, job, spec, reference.images)
    return rec


def _build(log: Stages, job: Job, spec: formats.ArtifactSpec, module: ModuleType,
           rec: ArtifactRecord) -> Preprocessing | None:
    """Write the artifact and its sidecar and return its contract; None, with ``rec`` marked failed, when the
    converter failed or wrote an empty file."""
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
        return None
    rec.export_seconds = time.perf_counter() - t0
    rec.size_bytes = file_size(job.out_dir / spec.file)
    if rec.size_bytes == 0:
        rec.verification = Verification(status="failed", reason="export wrote an empty file")
        return None
    atomic_write_json(job.out_dir / spec.sidecar, pre.to_json())
    return pre


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


def _write_report(report: ExportReport, verbose: bool) -> None:
    report.write()
    if verbose:
        print(report.table())
        print(f"\nreport: {report.path}\nbenchmark: {report.bench_command()}")

