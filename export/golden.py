"""Golden vectors that keep the Android app's Kotlin pre/post-processing in lock-step with ``models.preprocessing``.

``write_golden_vectors(pre, image_paths, out_dir)`` writes, into ``out_dir``:

- ``manifest.json``: the ``preprocessing.json`` contract used (``pre.to_json()``), one entry per image case and the
  post-processing and EXIF-orientation cases (small vectors inline);
- per image case, gzip'd raw arrays: ``<name>.rgb.gz`` (the source pixels, ``H x W x 3`` uint8 RGB),
  ``<name>.float32.gz`` (the float model input, little-endian float32 in ``pre.layout``) and ``<name>.int8.gz``
  (the model input quantized with ``pre``'s int8 scale/zero-point); the first case also gets ``<name>.uint8.gz``.

Cases: every given image as loaded by ``load_rgb``, a small portrait derived from the first one (short side below the
input size: upsampling, vertical centre offset) and a synthetic image larger than twice the input size with odd
dimensions (box-average path, crop to a multiple of k). The default input size is 96 to keep the committed files
small; the geometry is size-agnostic.

Tool (not library code): ``python -m export.golden`` (:func:`main`) regenerates the committed vectors
(``android_demo/app/src/test/resources/golden``); the tests call the two writers above directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import io
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from models.errors import InputError
from models.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    dequantize,
    load_rgb,
    resize_center_crop,
    tempered,
)

GOLDEN_FORMAT = 1
TOP_K = 3
# A fitted temperature, not 1: the app's tests then prove it applies the one its contract names.
GOLDEN_TEMPERATURE = 1.5
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "android_demo" / "app" / "src" / "test" / "resources" / "golden"
SHARED = Path(os.environ.get("SSDKD_SHARED", ROOT.parent / "shared"))
DEFAULT_IMAGE_DIR = SHARED / "data" / "ham10000-isic2019" / "ISIC_2019_Training_Input"
DEFAULT_IMAGES = ("ISIC_0024306.jpg", "ISIC_0024307.jpg")
ISIC_LABELS = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
EXIF_ORIENTATION = 0x0112


def golden_preprocessing(input_size: int = 96) -> Preprocessing:
    """An int8-I/O NHWC contract like a real full-integer TFLite export: the input scale/zero-point cover the
    ImageNet-normalised range of [0, 255] pixels (scale 0.018658..., zero-point -14), stored as float32; the
    output is int8 probabilities on the 1/256 grid, shown at temperature ``GOLDEN_TEMPERATURE``."""
    mean, std = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
    lo, hi = float(((0.0 - mean) / std).min()), float(((1.0 - mean) / std).max())
    scale = float(np.float32((hi - lo) / 255.0))
    return Preprocessing(
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        labels=ISIC_LABELS,
        layout="NHWC",
        input_dtype="int8",
        input_scale=scale,
        input_zero_point=int(np.rint(-128.0 - lo / scale)),
        output_dtype="int8",
        output_scale=1 / 256,
        output_zero_point=-128,
        output_kind="probabilities",
        temperature=GOLDEN_TEMPERATURE,
        model_file="model.tflite",
    )


def _int_contract(pre: Preprocessing, dtype: str) -> Preprocessing:
    """``pre`` with ``dtype`` input; zero-point shifted by 128 between int8 and uint8, scale kept."""
    if pre.input_dtype in ("int8", "uint8"):
        scale, zp = pre.input_scale, pre.input_zero_point
        if pre.input_dtype != dtype:
            zp = zp + 128 if dtype == "uint8" else zp - 128
    else:
        ref = golden_preprocessing(pre.input_size)
        scale, zp = ref.input_scale, ref.input_zero_point + (128 if dtype == "uint8" else 0)
    return dataclasses.replace(pre, input_dtype=dtype, input_scale=scale, input_zero_point=zp)


def portrait_from(rgb: np.ndarray, size: int) -> np.ndarray:
    """A portrait crop of ``rgb`` turned 90 degrees, its short side below ``size`` (upsampling path)."""
    rot = np.rot90(rgb)
    w = min(rot.shape[1], max(8, size - 12))
    h = min(rot.shape[0], w + w // 2 + 3)
    top, left = (rot.shape[0] - h) // 3, (rot.shape[1] - w) // 4
    return np.ascontiguousarray(rot[top : top + h, left : left + w])


def synthetic_image(size: int) -> np.ndarray:
    """Deterministic ``(4 * size + 5) x (4 * size + 73)`` RGB pattern: box path with k = 4 and an odd crop.

    Rows repeat with period 13 (coprime with k) so the file compresses well and every k x k box still differs."""
    h, w = 4 * size + 5, 4 * size + 73
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    yr = y % 13
    r = (3 * x + 17 * yr) & 255
    g = ((x // 7) * 37 + 11 * yr) & 255
    b = (((x * x) >> 5) + 29 * yr) & 255
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def _crop_geometry(h: int, w: int, size: int) -> dict:
    s = min(h, w)
    k = s // size if s >= 2 * size else 1
    s = (s // k) * k
    return {"k": k, "square": s, "top": (h - s) // 2, "left": (w - s) // 2}


def _write_gz(path: Path, data: bytes) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    path.write_bytes(buf.getvalue())


def _topk(probs: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-probs, kind="stable")[:k]]


def _post_case(name: str, pre: Preprocessing, raw: np.ndarray, dtype: str, kind: str, temperature: float = 1.0) -> dict:
    if dtype == "float32":
        values = raw.astype(np.float32)
        case = {"name": name, "output_dtype": "float32", "output": [float(v) for v in values]}
    else:
        values = dequantize(raw, pre.output_scale, pre.output_zero_point)
        case = {
            "name": name,
            "output_dtype": dtype,
            "output": [int(v) for v in raw],
            "output_scale": pre.output_scale,
            "output_zero_point": pre.output_zero_point,
        }
    probs = tempered(values, temperature, kind)
    top = _topk(probs, TOP_K)
    case.update(
        output_kind=kind,
        temperature=temperature,
        values=[float(v) for v in values],
        probabilities=[float(v) for v in probs],
        top_k=TOP_K,
        top_indices=top,
        top_labels=[pre.labels[i] for i in top],
        top_probabilities=[float(probs[i]) for i in top],
    )
    return case


def postprocessing_cases(pre: Preprocessing) -> list[dict]:
    n = len(pre.labels)
    rng = np.random.default_rng(20190)
    float_logits = rng.normal(0.0, 2.5, n).astype(np.float32)
    tie = np.full(n, -1.0, dtype=np.float32)
    tie[[1, n - 1]] = 3.0  # equal maxima: the lower index ranks first
    cases = [
        _post_case("float_logits", pre, float_logits, "float32", "logits"),
        _post_case("float_tie", pre, tie, "float32", "logits"),
        _post_case("float_uniform", pre, np.zeros(n, dtype=np.float32), "float32", "logits"),
        _post_case("float_logits_tempered", pre, float_logits, "float32", "logits", pre.temperature),
    ]
    if pre.output_dtype in ("int8", "uint8"):
        info = np.iinfo(np.dtype(pre.output_dtype))
        raw = rng.integers(info.min, int(info.max) + 1, n).astype(pre.output_dtype)
        raw[0], raw[-1] = info.min, info.max  # saturated codes
        cases.append(_post_case(f"{pre.output_dtype}_output", pre, raw, pre.output_dtype, pre.output_kind,
                                pre.temperature))
    return cases


def exif_cases() -> list[dict]:
    """A 4 x 3 image stored with each EXIF orientation, and what ``load_rgb`` returns for it."""
    raw = (np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3) * 7).astype(np.uint8)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for orientation in range(1, 9):
            im = Image.fromarray(raw)
            exif = im.getexif()
            exif[EXIF_ORIENTATION] = orientation
            path = Path(tmp) / f"o{orientation}.png"
            im.save(path, format="PNG", exif=exif)
            out = load_rgb(path)
            cases.append(
                {
                    "orientation": orientation,
                    "width": raw.shape[1],
                    "height": raw.shape[0],
                    "rgb": raw.reshape(-1).tolist(),
                    "expected_width": out.shape[1],
                    "expected_height": out.shape[0],
                    "expected_rgb": out.reshape(-1).tolist(),
                }
            )
    return cases


def _image_case(pre: Preprocessing, name: str, rgb: np.ndarray, source: dict, out_dir: Path, uint8: bool) -> dict:
    size = pre.input_size
    pixels = resize_center_crop(rgb, size)
    float_pre = dataclasses.replace(pre, input_dtype="float32", input_scale=None, input_zero_point=None)
    x = float_pre.model_input(pixels)
    int8_pre = _int_contract(pre, "int8")
    q = int8_pre.model_input(pixels)
    files = {"rgb": f"{name}.rgb.gz", "input_float32": f"{name}.float32.gz", "input_int8": f"{name}.int8.gz"}
    _write_gz(out_dir / files["rgb"], np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    _write_gz(out_dir / files["input_float32"], x.astype("<f4").tobytes())
    _write_gz(out_dir / files["input_int8"], q.tobytes())
    case = {
        "name": name,
        "source": source,
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "crop": _crop_geometry(rgb.shape[0], rgb.shape[1], size),
        "files": files,
        "input_shape": list(x.shape),
        "int8": {"scale": int8_pre.input_scale, "zero_point": int8_pre.input_zero_point},
    }
    if uint8:
        u8_pre = _int_contract(pre, "uint8")
        files["input_uint8"] = f"{name}.uint8.gz"
        _write_gz(out_dir / files["input_uint8"], u8_pre.model_input(pixels).tobytes())
        case["uint8"] = {"scale": u8_pre.input_scale, "zero_point": u8_pre.input_zero_point}
    return case


def _remove_previous(out: Path) -> None:
    """Delete the files a previous run listed in ``out/manifest.json`` (and nothing else)."""
    manifest = out / "manifest.json"
    if not manifest.exists():
        return
    try:
        cases = json.loads(manifest.read_text()).get("images", [])
        names = [name for case in cases for name in case.get("files", {}).values()]
    except (json.JSONDecodeError, AttributeError, TypeError):
        raise InputError(f"{manifest}: not a golden-vector manifest; refusing to overwrite {out}") from None
    for name in names:
        (out / Path(name).name).unlink(missing_ok=True)
    manifest.unlink()


def write_golden_arrays(
    pre: Preprocessing, images: Sequence[tuple[str, np.ndarray]], out_dir: str | Path, sources: Sequence[dict]
) -> Path:
    """Like ``write_golden_vectors`` for already-decoded ``(name, H x W x 3 uint8)`` images."""
    if not images:
        raise InputError("golden vectors need at least one image")
    pre.validate("golden preprocessing")
    if pre.layout != "NHWC":
        raise InputError(f"golden vectors are written for the TFLite layout NHWC, got layout {pre.layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous(out)
    cases = [
        _image_case(pre, name, rgb, src, out, uint8=(i == 0))
        for i, ((name, rgb), src) in enumerate(zip(images, sources, strict=True))
    ]
    first_name, first = images[0]
    cases.append(
        _image_case(
            pre,
            "portrait",
            portrait_from(first, pre.input_size),
            {"kind": "derived", "from": first_name, "op": "portrait_from (export/golden.py)"},
            out,
            uint8=False,
        )
    )
    cases.append(
        _image_case(
            pre,
            "synthetic",
            synthetic_image(pre.input_size),
            {"kind": "synthetic", "op": "synthetic_image (export/golden.py)"},
            out,
            uint8=False,
        )
    )
    manifest = {
        "format": GOLDEN_FORMAT,
        "generator": "export/golden.py (python -m export.golden)",
        "preprocessing": pre.to_json(),
        "images": cases,
        "postprocessing": postprocessing_cases(pre),
        "exif": exif_cases(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out


def write_golden_vectors(pre: Preprocessing, image_paths: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Write golden vectors for ``image_paths`` (read with ``load_rgb``) under ``pre`` into ``out_dir``."""
    paths = [Path(p) for p in image_paths]
    images = [(p.stem, load_rgb(p)) for p in paths]
    names = [n for n, _ in images]
    if len(set(names)) != len(names) or {"portrait", "synthetic"} & set(names):
        raise InputError(f"golden image names must be unique and not 'portrait'/'synthetic', got {names}")
    return write_golden_arrays(pre, images, out_dir, [{"kind": "file", "file": p.name} for p in paths])


def main(argv: Sequence[str] | None = None) -> int:
    """Tool entry point (``python -m export.golden``): rewrite the committed golden vectors."""
    ap = argparse.ArgumentParser(prog="python -m export.golden", description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="*", help=f"image files (default: {', '.join(DEFAULT_IMAGES)} from --image-dir)")
    ap.add_argument("--image-dir", type=Path, default=DEFAULT_IMAGE_DIR)
    ap.add_argument("--preprocessing", type=Path, help="a preprocessing.json to use instead of the built-in contract")
    ap.add_argument("--input-size", type=int, default=96, help="input size of the built-in contract (default 96)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    try:
        pre = Preprocessing.load(args.preprocessing) if args.preprocessing else golden_preprocessing(args.input_size)
        paths = args.images or [args.image_dir / name for name in DEFAULT_IMAGES]
        out = write_golden_vectors(pre, paths, args.out)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"golden vectors: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
