"""``ssdkd-export CHECKPOINT --target onnx|tflite|coreml|all [--int8] [--fp16] [--a16w8] ...``: a thin layer over
:func:`export.export`.

Exit codes: 0 exported and verified; 1 an artifact failed verification or the gate (files and report are kept
for diagnosis); 2 bad input (one line on stderr, no traceback); 130 Ctrl-C, 143 SIGTERM (temporary files removed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from export.calibration import ORIENTATION_COUNTS, ORIENTATIONS
from export.formats import DEFAULT_TFLITE_ROUTE, FORMATS, TFLITE_ROUTES
from export.onnx_export import DEFAULT_ONNX_INT8, ONNX_INT8_SCHEMES
from export.options import ExportOptions
from export.verify import Gate
from models.errors import InputError, run_cli, warn

EXIT_GATE = 1


def get_args_parser() -> argparse.ArgumentParser:
    targets = ", ".join(f"{name} ({fmt.note})" for name, fmt in FORMATS.items())
    p = argparse.ArgumentParser(
        prog="ssdkd-export",
        description="Export a checkpoint to ONNX / TFLite / CoreML, calibrate int8 on real training images, and "
                    "verify every artifact in its runtime against PyTorch fp32 on validation images.",
        epilog=f"targets: {targets}. Example: ssdkd-export runs/student/best.pt --target tflite --int8",
    )
    p.add_argument("checkpoint", help="ssdkd checkpoint (.pt with a model card)")
    p.add_argument("--target", default="tflite", help="onnx, tflite, coreml, all, or a comma list (default tflite)")
    p.add_argument("--int8", action="store_true", help="add calibrated int8 artifacts")
    p.add_argument("--fp16", action="store_true", help="add fp16 artifacts (TFLite; CoreML is fp16 anyway)")
    p.add_argument("--a16w8", action="store_true",
                   help="add model_a16w8.tflite: int8 weights with 16-bit activations, float I/O (TFLite's 16x8 "
                        "mode, litert route), for a model whose 8-bit activations fail the gate; on a CPU LiteRT "
                        "runs it on reference kernels, slower than fp32")
    p.add_argument("--calib", metavar="ROOT", help="calibration dataset (its train split; default: the card's data)")
    p.add_argument("--calib-size", type=int, default=200, metavar="N", help="calibration images (default 200)")
    p.add_argument("--val", metavar="ROOT", help="verification dataset (its val split; default: the card's data)")
    p.add_argument("--val-size", type=int, default=None, metavar="N",
                   help="verification images at most (default: the whole val split; the balanced-accuracy gate "
                        "needs every image of the small classes)")
    p.add_argument("--val-orientations", type=int, choices=ORIENTATION_COUNTS, default=ORIENTATIONS, metavar="N",
                   help="verify every val image in N orientations: 1 as is, 2 adds the left-right flip, 4 all flips, "
                        f"{ORIENTATIONS} also the right-angle turns (default {ORIENTATIONS}; each orientation is a "
                        "fresh draw of int8 rounding noise, which steadies the balanced-accuracy gate)")
    p.add_argument("--split", metavar="FILE", help="split file (default: the card's split file beside the checkpoint)")
    p.add_argument("--imgsz", type=int, metavar="N", help="input size (default: the card's input_size)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: <checkpoint dir>/export)")
    p.add_argument("--android-demo", metavar="DIR", help="also write DIR/app/src/main/assets/{model.tflite,"
                                                         "labels.txt,preprocessing.json} (int8 TFLite)")
    p.add_argument("--gate-bacc-drop", type=float, default=1.0, metavar="PT",
                   help="max balanced-accuracy drop vs fp32, in points (default 1.0)")
    p.add_argument("--gate-agreement", type=float, default=97.0, metavar="PCT",
                   help="min top-1 agreement with fp32, in percent (default 97)")
    p.add_argument("--no-gate", action="store_true", help="report accuracy but never fail on it")
    p.add_argument("--tflite-route", choices=tuple(TFLITE_ROUTES), default=DEFAULT_TFLITE_ROUTE,
                   help="litert: litert-torch + ai-edge-quantizer, int8 with a 16-bit head that outputs "
                        "probabilities (default, best int8 agreement measured, no TensorFlow); onnx2tf: ONNX -> "
                        "onnx2tf -> TF converter, all-int8 with int8 logits out")
    p.add_argument("--onnx-int8", choices=tuple(ONNX_INT8_SCHEMES), default=DEFAULT_ONNX_INT8,
                   help="ONNX int8 scheme: portable (default) has 7-bit weights and computes the same on every CPU; "
                        "vnni has full 8-bit weights and is right only on x86 CPUs with VNNI and on ARM (without "
                        "VNNI onnxruntime's 8-bit kernels saturate)")
    p.add_argument("--no-rounding-fixes", action="store_true",
                   help="turn off both fixes of the int8 weights, GPTQ rounding and bias correction, and quantize "
                        "straight from the float model, whose weights the converter rounds to nearest (for "
                        "comparison; default: weights GPTQ-rounded to the int8 grid, with their output shift on the "
                        "calibration images folded into the biases)")
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX with a dynamic batch dimension")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="threads for conversion")
    p.add_argument("--verbose-converters", action="store_true", help="show the converters' own logs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines or table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    return run_cli(lambda: _run(args), prog="ssdkd-export", error_prefix="ssdkd-export: error: ")


def options_from_args(args: argparse.Namespace) -> ExportOptions:
    """The parsed flags as :class:`ExportOptions` (the gate's flags are in percent, the gate's fields fractions)."""
    if not 0 <= args.gate_agreement <= 100:
        raise InputError(f"--gate-agreement is a percentage in [0, 100], got {args.gate_agreement}")
    if args.gate_bacc_drop < 0:
        raise InputError(f"--gate-bacc-drop must be >= 0 points, got {args.gate_bacc_drop}")
    return ExportOptions(
        targets=args.target, out_dir=args.out, int8=args.int8, fp16=args.fp16, a16w8=args.a16w8,
        calib=args.calib,
        calib_size=args.calib_size, val=args.val, val_size=args.val_size, val_orientations=args.val_orientations,
        split=args.split, imgsz=args.imgsz, android_demo=args.android_demo,
        gate=Gate(args.gate_bacc_drop, args.gate_agreement / 100.0, enabled=not args.no_gate),
        tflite_route=args.tflite_route, onnx_int8=args.onnx_int8, rounding_fixes=not args.no_rounding_fixes,
        dynamic_batch=args.dynamic_batch, threads=args.threads, verbose=not args.quiet,
        quiet_converters=not args.verbose_converters,
    )


def _run(args: argparse.Namespace) -> int:
    from export.pipeline import export

    options = options_from_args(args)
    if options.threads > (os.cpu_count() or 1):
        warn(f"--threads {options.threads} is more than this machine's {os.cpu_count()} CPUs: the extra threads "
             f"only compete for the same cores")
    import torch

    torch.set_num_threads(options.threads)
    report = export(args.checkpoint, options)
    if not report.passed:
        print(f"ssdkd-export: verification failed for {len(report.failures)} artifact(s); files and "
              f"{report.path} kept for diagnosis:\n  " + "\n  ".join(report.failures), file=sys.stderr)
        return EXIT_GATE
    return 0


if __name__ == "__main__":
    sys.exit(main())
