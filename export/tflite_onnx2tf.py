"""Alternative TFLite route: static ONNX -> onnx2tf (NCHW -> NHWC SavedModel) -> TF Lite converter.

onnx2tf only builds the SavedModel (and its fp32/fp16 flatbuffers); int8 is done here by the TF converter with a
representative dataset of real calibration images, so the two int8 variants share one code path with the
default route's calibration set. Pitfalls handled here:

- onnx2tf needs a static ``[1, 3, H, W]`` input: a dynamic batch fails inside its depthwise-conv handling;
- it downloads a sample calibration file from the internet unless
  ``calibration_image_sample_data_20x128x128x3_float32.npy`` is in its working directory, so it runs in a temp
  dir where that file is written from real calibration images (no network is ever needed).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from export._util import quiet, working_dir
from export.context import Job
from export.formats import ArtifactSpec
from models.atomic import atomic_save

SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _sample_file(job: Job) -> np.ndarray:
    """20 calibration images as onnx2tf expects them (128x128 RGB in [0, 1]), or mid-grey without calibration."""
    if job.calib is None:
        return np.full((20, 128, 128, 3), 0.5, np.float32)
    x = job.calib.x[:20] * np.asarray(job.pre.std, np.float32) + np.asarray(job.pre.mean, np.float32)
    idx = (np.arange(128) * x.shape[1] // 128).astype(int)  # nearest-neighbour resize is enough for a guard file
    return np.clip(x[:, idx][:, :, idx], 0, 1).astype(np.float32)


def _saved_model(job: Job, int8: bool) -> Path:
    """Static ONNX -> onnx2tf SavedModel of the float model, or for int8 of :meth:`Job.int8_source` (each cached
    for its sibling artifacts)."""
    # without the rounding fixes the int8 source is the float model itself: reuse its conversion
    key = "int8" if int8 and job.rounding_fixes else "float"
    if key in job.cache.setdefault("onnx2tf_dir", {}):
        return job.cache["onnx2tf_dir"][key]
    import onnx2tf

    from export.onnx_export import export_onnx_fp32

    work = job.work_dir / f"onnx2tf_{key}"
    work.mkdir(parents=True, exist_ok=True)
    onnx_path = work / "model_static.onnx"
    export_onnx_fp32(job.int8_source() if int8 else job.model, job.pre, job.card, onnx_path, dynamic_batch=False)
    np.save(work / SAMPLE_FILE, _sample_file(job))
    with working_dir(work), quiet(job.quiet):
        onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(work / "saved_model"),
                        non_verbose=True, verbosity="error", disable_model_save=False)
    job.cache["onnx2tf_dir"][key] = work / "saved_model"
    return work / "saved_model"


def _int8(job: Job, saved_model: Path, io_dtype: str) -> bytes:
    import tensorflow as tf

    calib = job.need_calib("TFLite int8")
    nhwc = dataclasses.replace(job.pre, layout="NHWC")

    def representative():
        for i in range(len(calib)):
            yield [calib.model_input(nhwc, i, i + 1)]

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.representative_dataset = representative
    io = tf.int8 if io_dtype == "int8" else tf.float32
    conv.inference_input_type = conv.inference_output_type = io
    with quiet(job.quiet):
        return conv.convert()


def int8_float_source(job: Job) -> Path:
    """The float flatbuffer the int8 artifacts are quantized from (the per-layer drift baseline)."""
    return _saved_model(job, int8=True) / "model_static_float32.tflite"


def build(job: Job, spec: ArtifactSpec, path: Path) -> None:
    int8 = spec.precision == "int8"
    sm = _saved_model(job, int8)
    stem = "model_static"
    if not int8:
        src = sm / f"{stem}_float{'32' if spec.precision == 'fp32' else '16'}.tflite"
        atomic_save(path, lambda tmp: shutil.copyfile(src, tmp))
    else:
        data = _int8(job, sm, spec.io_dtype)
        atomic_save(path, lambda tmp: tmp.write_bytes(data))
