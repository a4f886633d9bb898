"""``ExportOptions``: everything an export can be asked for, checked in one place when it is made.

Library users pass the options as keywords, ``export("best.pt", targets="tflite", int8=True)``, or build them once
and reuse them, ``opts = ExportOptions(targets="all", int8=True)``, ``export("best.pt", opts)``; keywords given
with ``opts`` replace its values. ``ssdkd-export`` maps its flags onto the same dataclass
(:func:`export.cli.options_from_args`). A bad value raises :class:`InputError` with one line naming the flag.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export import formats
from export.calibration import MIN_CALIBRATION_IMAGES, ORIENTATION_COUNTS, ORIENTATIONS, PixelTransform
from export.onnx_export import DEFAULT_ONNX_INT8, ONNX_INT8_SCHEMES
from export.verify import Gate
from models.errors import InputError


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """What to export and how (frozen and keyword-only: ``dataclasses.replace`` makes a changed copy).

    ``targets`` takes ``"all"``, a name, a comma list or a sequence; it is stored as the tuple of target names in
    table order (:data:`export.formats.FORMATS`). ``out_dir`` defaults to ``<checkpoint dir>/export``; ``calib`` and
    ``val`` to the model card's data root. ``rounding_fixes`` turns the two fixes of the int8 weights on or off
    together: GPTQ rounding and bias correction (:mod:`export.weight_rounding`); off, the converter rounds the
    float weights to nearest. ``calib_transform`` maps calibration pixels before use (tests break calibration with
    it). ``verbose``: progress lines and the final table; ``quiet_converters``: hide the converters' own logs.
    """

    targets: str | Sequence[str] = ("tflite",)
    out_dir: str | Path | None = None
    int8: bool = False
    fp16: bool = False
    a16w8: bool = False
    calib: str | Path | None = None
    calib_size: int = 200
    val: str | Path | None = None
    val_size: int | None = None
    val_orientations: int = ORIENTATIONS
    split: str | Path | None = None
    imgsz: int | None = None
    android_demo: str | Path | None = None
    gate: Gate = Gate()
    tflite_route: str = formats.DEFAULT_TFLITE_ROUTE
    onnx_int8: str = DEFAULT_ONNX_INT8
    rounding_fixes: bool = True
    dynamic_batch: bool = False
    calib_transform: PixelTransform | None = None
    threads: int = 2
    seed: int = 0
    verbose: bool = True
    quiet_converters: bool = True

    def __post_init__(self) -> None:
        names = tuple(formats.resolve_targets(self.targets))
        object.__setattr__(self, "targets", names)  # frozen: the one normalisation happens here
        if self.android_demo is not None and "tflite" not in names:
            raise InputError("--android-demo needs the TFLite target (add --target tflite)")
        formats.validate_flags(names, self.int8, self.fp16, self.a16w8)
        if self.calib_size < MIN_CALIBRATION_IMAGES:
            raise InputError(f"--calib-size must be at least {MIN_CALIBRATION_IMAGES}, got {self.calib_size}")
        if self.val_size is not None and self.val_size < 1:
            raise InputError(f"--val-size must be positive, got {self.val_size}")
        if self.val_orientations not in ORIENTATION_COUNTS:
            raise InputError(f"--val-orientations must be one of {', '.join(map(str, ORIENTATION_COUNTS))} (whole "
                             f"groups of flips and right-angle turns), got {self.val_orientations}")
        if self.imgsz is not None and not 32 <= self.imgsz <= 1024:
            raise InputError(f"--imgsz must be between 32 and 1024, got {self.imgsz}")
        if self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        if self.onnx_int8 not in ONNX_INT8_SCHEMES:
            raise InputError(f"--onnx-int8 must be one of {', '.join(ONNX_INT8_SCHEMES)}, got {self.onnx_int8!r}")
        if self.tflite_route not in formats.TFLITE_ROUTES:
            raise InputError(f"unknown TFLite route {self.tflite_route!r} "
                             f"(choose from {', '.join(formats.TFLITE_ROUTES)})")
        if self.a16w8 and self.tflite_route != formats.DEFAULT_TFLITE_ROUTE:
            # the TF converter's 16x8 mode exists, but this project verifies 16-bit activations on one route only
            raise InputError(f"--a16w8 needs --tflite-route {formats.DEFAULT_TFLITE_ROUTE}, "
                             f"got {self.tflite_route!r}")


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(ExportOptions))


def with_settings(options: ExportOptions | None, settings: Mapping[str, Any]) -> ExportOptions:
    """``options`` (default: all defaults) with ``settings`` replacing its values; an unknown name is an
    :class:`InputError` suggesting the closest option."""
    for name in settings:
        if name not in OPTION_NAMES:
            close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"unknown export option {name!r}{hint} (options: {', '.join(OPTION_NAMES)})")
    if options is None:
        return ExportOptions(**settings)
    if not isinstance(options, ExportOptions):
        raise TypeError(f"options must be an ExportOptions, got {type(options).__name__}")
    return dataclasses.replace(options, **settings)
