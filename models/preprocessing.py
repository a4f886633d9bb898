"""The one preprocessing every consumer shares: training evaluation, export calibration and
verification, the benchmark harness and the Android app (which re-implements it in Kotlin).

Geometry (deterministic, defined so a 20-line Kotlin port gives bit-identical results):

1. centre-crop the largest square (offsets ``(h - s) // 2``, ``(w - s) // 2``);
2. if the square is at least twice the target, box-average it by ``k = s // size``
   (after centre-cropping it to a multiple of ``k``) -- integer sums, so exact in float64;
3. bilinear resize to ``size x size`` with half-pixel centres (``align_corners=False``),
   edge-clamped, in float64.

Pixel values stay float64 in [0, 255]; normalisation is ``(v / 255 - mean) / std``.
For integer inputs, ``q = clip(rint(x / scale + zero_point))`` (round half to even, as numpy).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.atomic import read_json
from models.errors import InputError

PREPROCESSING_SCHEMA_VERSION = 1
# logits: the consumer applies softmax. probabilities: the model ends in its own softmax (the int8 TFLite
# artifacts do, so the 8-bit output grid lands on probabilities, where near-ties are resolved far more finely).
OUTPUT_KINDS = ("logits", "probabilities")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an ``H x W x 3`` uint8 RGB array.

    Grayscale, palette, RGBA (composited on black is avoided: alpha is dropped) and 16-bit images are
    converted instead of failing; a truncated or corrupt file raises ``InputError`` naming it.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_rgb_array(im)
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: unreadable or corrupt image ({e})") from None


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        peak = 65535.0 if a.max() > 255 else 255.0
        a = np.clip(np.rint(a * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        a = np.clip(np.rint(a * 255.0 if a.max() <= 1.0 else a), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def resize_center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """``H x W x 3`` uint8 -> ``size x size x 3`` float64 in [0, 255] (see module docstring)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    s = min(h, w)
    k = s // size if s >= 2 * size else 1
    s = (s // k) * k
    top, left = (h - s) // 2, (w - s) // 2
    sq = rgb[top : top + s, left : left + s].astype(np.int64)
    if k > 1:
        m = s // k
        sq = sq.reshape(m, k, m, k, 3).sum(axis=(1, 3)).astype(np.float64) / float(k * k)
    else:
        sq = sq.astype(np.float64)
    return _bilinear(sq, size)


def _bilinear(img: np.ndarray, size: int) -> np.ndarray:
    m = img.shape[0]
    scale = m / size
    src = (np.arange(size, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.clip(src, 0.0, m - 1.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, m - 1)
    f = src - i0
    fy, fx = f[:, None, None], f[None, :, None]
    a = img[i0][:, i0]
    b = img[i0][:, i1]
    c = img[i1][:, i0]
    d = img[i1][:, i1]
    top = (1.0 - fx) * a + fx * b
    bottom = (1.0 - fx) * c + fx * d
    return (1.0 - fy) * top + fy * bottom


def normalize(pixels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """float64 pixels in [0, 255] (``... x 3``) -> float32 ``(v / 255 - mean) / std``."""
    mean_a = np.asarray(mean, dtype=np.float64)
    std_a = np.asarray(std, dtype=np.float64)
    return ((pixels / 255.0 - mean_a) / std_a).astype(np.float32)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Affine-quantize a float array the way TFLite/ORT expect (round half to even, saturate)."""
    info = np.iinfo(np.dtype(dtype))
    q = np.rint(x.astype(np.float64) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float64) - zero_point) * scale).astype(np.float32)


@dataclass(frozen=True)
class Preprocessing:
    """The ``preprocessing.json`` contract shared by export, benchmarks and the Android app."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    labels: tuple[str, ...]
    layout: str = "NCHW"  # NCHW (PyTorch/ONNX) or NHWC (TFLite)
    input_dtype: str = "float32"
    input_scale: float | None = None
    input_zero_point: int | None = None
    output_dtype: str = "float32"
    output_scale: float | None = None
    output_zero_point: int | None = None
    output_kind: str = "logits"  # one of OUTPUT_KINDS
    color: str = "RGB"
    resize: str = "center_crop_box_bilinear"
    model_file: str | None = None
    schema_version: int = PREPROCESSING_SCHEMA_VERSION
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"], d["labels"] = list(self.mean), list(self.std), list(self.labels)
        return d

    @classmethod
    def from_json(cls, d: dict, source: str = "preprocessing.json") -> Preprocessing:
        version = d.get("schema_version")
        if version != PREPROCESSING_SCHEMA_VERSION:
            raise InputError(
                f"{source}: schema_version {version!r} is not supported (expected {PREPROCESSING_SCHEMA_VERSION})"
            )
        try:
            kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
            kw["mean"], kw["std"] = tuple(map(float, d["mean"])), tuple(map(float, d["std"]))
            kw["labels"] = tuple(d["labels"])
            kw["input_size"] = int(d["input_size"])
            pre = cls(**kw)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{source}: missing or invalid field ({e})") from None
        pre.validate(source)
        return pre

    @classmethod
    def load(cls, path: str | Path) -> Preprocessing:
        return cls.from_json(read_json(path, "preprocessing contract"), str(path))

    def validate(self, source: str = "preprocessing") -> None:
        if self.output_kind not in OUTPUT_KINDS:
            raise InputError(f"{source}: output_kind must be {' or '.join(OUTPUT_KINDS)}, got {self.output_kind!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise InputError(f"{source}: layout must be NCHW or NHWC, got {self.layout!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise InputError(f"{source}: mean/std must be 3 numbers with std > 0")
        for side in ("input", "output"):
            dt = getattr(self, f"{side}_dtype")
            if dt not in ("float32", "float16", "int8", "uint8"):
                raise InputError(f"{source}: {side}_dtype must be float32, float16, int8 or uint8, got {dt!r}")
            if dt in ("int8", "uint8") and (
                getattr(self, f"{side}_scale") is None or getattr(self, f"{side}_zero_point") is None
            ):
                raise InputError(f"{source}: {side}_dtype {dt} needs {side}_scale and {side}_zero_point")

    def pixels(self, path: str | Path) -> np.ndarray:
        """Image file -> ``size x size x 3`` float64 pixels."""
        return resize_center_crop(load_rgb(path), self.input_size)

    def model_input(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels (``size x size x 3`` or ``N x size x size x 3``) -> batched model input in this
        contract's layout and dtype."""
        x = normalize(pixels, self.mean, self.std)
        if x.ndim == 3:
            x = x[None]
        if self.layout == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if self.input_dtype in ("int8", "uint8"):
            return quantize(x, self.input_scale, self.input_zero_point, self.input_dtype)
        return x.astype(self.input_dtype)

    def values(self, output: np.ndarray) -> np.ndarray:
        """Raw model output -> float32 values: logits or probabilities, as ``output_kind`` says."""
        if self.output_dtype in ("int8", "uint8"):
            return dequantize(output, self.output_scale, self.output_zero_point)
        return output.astype(np.float32)

    def probabilities(self, output: np.ndarray) -> np.ndarray:
        """Raw model output -> float32 class probabilities (softmax of logits, or the model's own softmax)."""
        v = self.values(output)
        return v if self.output_kind == "probabilities" else softmax(v).astype(np.float32)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)
