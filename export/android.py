"""``--android-demo DIR``: drop the int8 TFLite model into the demo app's assets, exactly as the app reads them.

``DIR/app/src/main/assets/`` receives ``model.tflite`` (full-integer int8, int8 I/O), ``labels.txt`` (one label a
line, model output order) and ``preprocessing.json`` (the versioned contract: size, layout, mean/std, I/O dtype,
scale and zero-point). Each file is written to a temp name and renamed, and the contract is checked against the
model file (its tensors and its TFLite metadata, which it carries for other apps) before anything is written.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from export import tflite_metadata
from export.tflite_export import io_contract
from models.atomic import atomic_save, atomic_write_json, atomic_write_text, ensure_writable_dir
from models.errors import InputError
from models.preprocessing import Preprocessing

ASSETS = Path("app") / "src" / "main" / "assets"
SOURCE = "model_int8.tflite"
MODEL, LABELS, PREPROCESSING = "model.tflite", "labels.txt", "preprocessing.json"


def assets_dir(project: str | Path) -> Path:
    return Path(project) / ASSETS


def write_android_assets(out_dir: Path, project: str | Path, sidecar_name: str) -> Path:
    """Copy ``out_dir/model_int8.tflite`` and its contract (``sidecar_name``, from the report) into the app;
    returns the assets directory."""
    src = out_dir / SOURCE
    sidecar = out_dir / sidecar_name
    if not src.is_file() or not sidecar.is_file():
        raise InputError(f"{src}: the Android demo needs the int8 TFLite model (export with --target tflite --int8)")
    pre = Preprocessing.load(sidecar)
    if pre.input_dtype != "int8" or pre.layout != "NHWC":
        raise InputError(f"{sidecar}: the Android demo expects NHWC int8 input, got {pre.layout} {pre.input_dtype}")
    if io_contract(src, pre) != dataclasses.replace(pre, model_file=src.name, extra={}):
        raise InputError(f"{sidecar}: does not match {src.name}'s own input/output quantization")
    # the model travels with its metadata (labels, normalisation) for other apps: it must say what the contract says
    if tflite_metadata.read(src).contract != dataclasses.replace(pre, model_file=None, extra={}):
        raise InputError(f"{src}: its TFLite metadata does not match {sidecar.name} (re-export it)")
    dest = ensure_writable_dir(assets_dir(project))
    atomic_save(dest / MODEL, lambda tmp: shutil.copyfile(src, tmp))
    atomic_write_text(dest / LABELS, "\n".join(pre.labels) + "\n")
    atomic_write_json(dest / PREPROCESSING, dataclasses.replace(pre, model_file=MODEL).to_json())
    return dest
