"""ssdkd-bench: latency, peak memory and accuracy of every exported artifact (thin CLI over benchmarks.harness).

Exit codes: 0 all rows ok (or unsupported/skipped), 1 a runtime failed (named on stderr), 2 bad input, 130 Ctrl-C,
143 SIGTERM (temporary files removed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from models.errors import InputError, run_cli, warn

EPILOG = """examples:
  ssdkd-bench runs/export                                   # every artifact + PyTorch fp32, host, 1 thread
  ssdkd-bench runs/export --threads 1,2 --data data/isic2019_sample --out runs/bench/student
  ssdkd-bench runs/export --target little-1t                # host emulation profile (configs/profiles.yaml)
  ssdkd-bench runs/export/model_int8.tflite --target android --benchmark-binary ./android_aarch64_benchmark_model
  ssdkd-bench runs/bench/new/results.json --compare runs/bench/old/results.json   # compare without re-running
  ssdkd-bench runs/export/model_int8.tflite --reference ../shared/weights/tf2_mobilenet_v2_1.0_224_ptq.tflite
                                                            # race Google's int8 MobileNetV2 (latency + memory, ratio)
"""


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssdkd-bench", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="ARTIFACT_OR_EXPORT_DIR",
                   help="export dir(s), artifact files (.onnx/.tflite/.mlpackage/.pt), or one results.json to compare")
    p.add_argument("--reference", action="append", default=[], metavar="FILE",
                   help="a third-party .tflite/.onnx without a preprocessing contract, raced beside the artifacts "
                        "(latency and memory only, random input of its own shape; p50 ratio printed). Repeatable; "
                        "with no artifacts, the first --reference is the baseline")
    p.add_argument("--runtimes", default="torch,onnxruntime,tflite,coreml",
                   help="comma list of torch, onnxruntime, tflite, coreml (default: all)")
    p.add_argument("--threads", default="1", help="comma list of runtime thread counts (default: 1)")
    p.add_argument("--target", default="host", help="host, android, or a profile name from --profiles")
    p.add_argument("--profiles", type=Path, default=None, help="profiles YAML (default: configs/profiles.yaml)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="PyTorch checkpoint for the fp32 reference (default: the one in export_report.json)")
    g = p.add_argument_group("accuracy")
    g.add_argument("--data", type=Path, default=None, help="labelled images (ISIC 2019 layout or class folders)")
    g.add_argument("--split", choices=("train", "val", "test"), default=None,
                   help="evaluate one split only (split file: --split-file, else the checkpoint's)")
    g.add_argument("--split-file", type=Path, default=None)
    g.add_argument("--max-images", type=int, default=None, help="class-stratified subset for a quick run")
    g = p.add_argument_group("timing")
    g.add_argument("--runs", type=int, default=200, help="minimum timed runs per row (default: 200)")
    g.add_argument("--min-seconds", type=float, default=5.0, help="minimum timed seconds per row (default: 5)")
    g.add_argument("--warmup", type=int, default=20, help="warm-up runs per row (default: 20)")
    g.add_argument("--max-seconds", type=float, default=None,
                   help="give up on a row after this many timed seconds (it then fails: no partial figures)")
    g.add_argument("--no-memory", action="store_true", help="skip the per-artifact memory subprocesses")
    g = p.add_argument_group("android (--target android)")
    g.add_argument("--benchmark-binary", type=Path, default=None, help="the official benchmark_model for the phone")
    g.add_argument("--serial", default=None, help="adb device serial (needed when several are connected)")
    g.add_argument("--adb", default="adb", help="adb executable (default: adb on PATH)")
    g.add_argument("--use-xnnpack", choices=("true", "false"), default="true")
    g.add_argument("--use-gpu", choices=("true", "false"), default="false")
    g.add_argument("--use-nnapi", choices=("true", "false"), default="false")
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None, help="output dir (default: runs/bench/<timestamp>)")
    g.add_argument("--compare", type=Path, default=None, metavar="OLD/results.json",
                   help="print the change per row against an earlier results.json")
    g.add_argument("--no-plots", action="store_true")
    g.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    command = sys.argv if argv is None else ["ssdkd-bench", *argv]
    return run_cli(lambda: _main(args, command), prog="ssdkd-bench", error_prefix="ssdkd-bench: ")


def _main(args: argparse.Namespace, command: list[str]) -> int:
    from benchmarks.report import compare, load_results

    if len(args.paths) == 1 and args.paths[0].endswith(".json"):
        # A results file: compare it with --compare without re-running anything.
        if args.compare is None:
            raise InputError(f"{args.paths[0]}: a results.json is only accepted together with --compare")
        print(compare(load_results(args.compare), load_results(args.paths[0])), end="")
        return 0
    old = load_results(args.compare) if args.compare else None  # fail on a bad --compare before the long run

    from benchmarks.android import AndroidOptions
    from benchmarks.harness import run_benchmark
    from benchmarks.plan import parse_threads

    most = max(parse_threads(args.threads))
    if args.target == "host" and most > (os.cpu_count() or 1):  # a profile or a phone sets its own threads
        warn(f"--threads {most} is more than this machine's {os.cpu_count()} CPUs: the extra threads only compete "
             f"for the same cores, and the latency measures that")

    android = None
    if args.target == "android":
        if args.benchmark_binary is None:
            raise InputError("--target android needs --benchmark-binary (the official benchmark_model for the phone)")
        android = AndroidOptions(args.benchmark_binary, args.serial, args.adb, args.use_xnnpack == "true",
                                 args.use_gpu == "true", args.use_nnapi == "true")
    out = args.out or Path("runs") / "bench" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    results = run_benchmark(
        args.paths, runtimes=args.runtimes, threads=args.threads, target=args.target, data=args.data,
        split=args.split, split_file=args.split_file, max_images=args.max_images, runs=args.runs,
        min_seconds=args.min_seconds, warmup=args.warmup, max_seconds=args.max_seconds, out=out,
        checkpoint=args.checkpoint, memory=not args.no_memory, profiles_file=args.profiles, android=android,
        plots=not args.no_plots, progress=not args.no_progress, command=command, references=args.reference)
    print(results.files["md"].read_text(), end="")
    print(f"\nwrote {', '.join(str(p) for p in results.files.values())}")
    if old is not None:
        text = compare(old, results.doc)
        from models.atomic import atomic_write_text

        atomic_write_text(out / "compare.md", text)
        print("\n" + text, end="")
    if results.failures:
        print(f"ssdkd-bench: runtime(s) failed: {', '.join(results.failed_runtimes)}", file=sys.stderr)
        for f in results.failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
