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

Decoding (before the geometry; docs/robustness.md): an image over :func:`pixel_limit` pixels is refused with an
``InputError``, and a JPEG whose short side is at least ``2 * DRAFT_MARGIN * size`` is decoded at 1/2, 1/4 or 1/8
scale (libjpeg's DCT scaling) keeping a short side of at least ``DRAFT_MARGIN * size``, so a 50 MP photo never
exists in memory at full size. Smaller images, and every image read by :func:`load_rgb` without ``min_side``, are
decoded in full: their pixels are those of the plain decode.
"""

from __future__ import annotations

import math
import os
import threading
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
# The largest image decoded, in pixels (width x height): 150 MP admits a 12000 x 12000 scan or a 108 MP phone photo
# and refuses decompression bombs (a 16000 x 16000 PNG is 0.5 MB on disk). The environment variable raises it.
MAX_IMAGE_PIXELS = 150_000_000
PIXEL_LIMIT_ENV = "SSDKD_MAX_IMAGE_PIXELS"
# A reduced-scale JPEG decode keeps a short side of at least DRAFT_MARGIN x the target size, so the box average that
# follows still spans at least DRAFT_MARGIN decoded pixels a side.
DRAFT_MARGIN = 8
_BAND_PIXELS = 1 << 22  # pixels converted to an RGB array at a time (bounds the copies a conversion needs)
_PIL_LIMIT = threading.Lock()


def pixel_limit() -> int:
    """The largest image :func:`load_rgb` decodes, in pixels: ``$SSDKD_MAX_IMAGE_PIXELS``, else
    :data:`MAX_IMAGE_PIXELS`."""
    raw = os.environ.get(PIXEL_LIMIT_ENV)
    if raw is None:
        return MAX_IMAGE_PIXELS
    if not raw.strip().isdigit() or int(raw) < 1:
        raise InputError(f"{PIXEL_LIMIT_ENV} must be a positive whole number of pixels, got {raw!r}")
    return int(raw)


def load_rgb(path: str | Path, *, min_side: int | None = None) -> np.ndarray:
    """Read an image file as an ``H x W x 3`` uint8 RGB array.

    Grayscale, palette, RGBA (composited on black is avoided: alpha is dropped) and 16-bit images are
    converted instead of failing; a truncated or corrupt file, or one over :func:`pixel_limit` pixels, raises
    ``InputError`` naming it. ``min_side``: the caller needs no more than this many pixels on the short side, so a
    JPEG of at least twice that may be decoded at a reduced scale that keeps it.
    """
    path = Path(path)
    limit = pixel_limit()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _open(path) as im:
                w, h = im.size
                if w * h > limit:
                    raise InputError(f"{path}: image is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                                     f"(set {PIXEL_LIMIT_ENV} to raise it)")
                if min_side is not None and im.format == "JPEG" and min(w, h) >= 2 * min_side:
                    im.draft(None, (min_side, min_side))
                im.load()
                ImageOps.exif_transpose(im, in_place=True)
                return _to_rgb_array(im)
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: unreadable or corrupt image ({e})") from None


def load_pixels(path: str | Path, size: int) -> np.ndarray:
    """Image file -> ``size x size x 3`` float64 pixels (decoded at a reduced scale where that is allowed)."""
    return resize_center_crop(load_rgb(path, min_side=DRAFT_MARGIN * size), size)


def verify_image(path: str | Path) -> None:
    """Raise ``InputError`` if ``path`` cannot be read: the pixel limit and a decode at the smallest scale (a JPEG
    at 1/8 still entropy-decodes every coefficient, so truncation and corruption are found)."""
    load_rgb(path, min_side=1)


def _open(path: Path) -> Image.Image:
    # PIL refuses an image over 2 x Image.MAX_IMAGE_PIXELS inside Image.open, before its size can be read: switch
    # that check off for the open so that load_rgb's own limit applies, with its message. The lock keeps threads
    # that open images at once from restoring each other's value.
    with _PIL_LIMIT:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """The image as ``H x W x 3`` uint8, converted a band of rows at a time: converting it whole would hold it
    up to three more times at once (the converted image, PIL's byte string, the array)."""
    w, h = im.size
    convert = _band_converter(im)
    out = np.empty((h, w, 3), dtype=np.uint8)
    rows = max(1, _BAND_PIXELS // max(w, 1))
    for top in range(0, h, rows):
        bottom = min(h, top + rows)
        out[top:bottom] = convert(im.crop((0, top, w, bottom)))
    return out


def _band_converter(im: Image.Image):
    """Band -> uint8 RGB rows; what depends on the whole image (a 16-bit image's peak) is read here, once."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        peak = 65535.0 if im.getextrema()[1] > 255 else 255.0

        def gray16(band: Image.Image) -> np.ndarray:
            a = np.asarray(band).astype(np.float64)
            return _gray_to_rgb(np.clip(np.rint(a * (255.0 / peak)), 0, 255))

        return gray16
    if im.mode == "F":
        unit = im.getextrema()[1] <= 1.0

        def gray_float(band: Image.Image) -> np.ndarray:
            a = np.asarray(band, dtype=np.float64)
            return _gray_to_rgb(np.clip(np.rint(a * 255.0 if unit else a), 0, 255))

        return gray_float
    return lambda band: np.asarray(band if band.mode == "RGB" else band.convert("RGB"), dtype=np.uint8)


def _gray_to_rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a.astype(np.uint8)[..., None], 3, axis=2)


def resize_center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """``H x W x 3`` uint8 -> ``size x size x 3`` float64 in [0, 255] (see module docstring)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    s = min(h, w)
    k = s // size if s >= 2 * size else 1
    s = (s // k) * k
    top, left = (h - s) // 2, (w - s) // 2
    sq = rgb[top : top + s, left : left + s]
    if k > 1:
        m = s // k
        # Summed straight from the uint8 view (no widened copy of the square); the integer sums are exact.
        sq = sq.reshape(m, k, m, k, 3).sum(axis=(1, 3), dtype=np.uint64).astype(np.float64) / float(k * k)
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
    # Calibration: clients show softmax(logits / temperature) (models.calibration fits it on the val split);
    # 1.0 for a model without one. It never changes the argmax. Contracts written before it existed load as 1.0.
    temperature: float = 1.0
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
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not (math.isfinite(t) and t > 0):
            raise InputError(f"{source}: temperature must be a finite number > 0, got {self.temperature!r}")
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
        return load_pixels(path, self.input_size)

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

    def probabilities(self, output: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
        """Raw model output -> float32 class probabilities (softmax of logits, or the model's own softmax) at the
        contract's ``temperature``, as the app shows them; ``calibrated=False``: at T = 1."""
        return tempered(self.values(output), self.temperature if calibrated else 1.0, self.output_kind).astype(
            np.float32)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def tempered(values: np.ndarray, temperature: float, kind: str = "logits") -> np.ndarray:
    """Class probabilities (last axis) at ``temperature`` from logits, ``softmax(z / T)``, or from a model's own
    probabilities, ``p ** (1 / T)`` renormalised: the same numbers, as ``log p`` is ``z`` less a per-row constant
    (a zero on an int8 output grid stays zero). At T = 1 probabilities are returned as they are."""
    v = np.asarray(values, dtype=np.float64)
    if kind == "logits":
        return softmax(v / temperature)
    if temperature == 1.0:
        return v
    p = np.clip(v, 0.0, None) ** (1.0 / temperature)
    return p / p.sum(axis=-1, keepdims=True)
