"""``make demo``: the whole pipeline on the embedded sample, stage by stage with timings.

    python -m benchmarks.demo            # distill a student from the zoo teacher -> export -> verify -> bench
    python -m benchmarks.demo --zoo      # skip distillation: export + benchmark the committed zoo student

Writes everything under ``--out`` (default ``runs/demo``) and ends with ``REPORT.md`` (tables + plots).
The Android assets go to a copy of the app's assets under the run dir; ``--install-android`` overwrites the
committed ``android_demo`` assets instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "isic2019_sample"
ZOO = REPO / "models" / "zoo"


class Stages:
    """Runs named stages, printing a banner and the elapsed time of each; stops at the first failure."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []

    def run(self, name: str, fn: Callable[[], int | None]) -> None:
        print(f"\n=== {name} " + "=" * max(0, 66 - len(name)), flush=True)
        t0 = time.perf_counter()
        rc = fn()
        self.times.append((name, time.perf_counter() - t0))
        print(f"--- {name}: {self.times[-1][1]:.1f} s", flush=True)
        if rc:
            raise SystemExit(f"demo: stage '{name}' failed (exit {rc}); outputs so far are kept")

    def table(self) -> str:
        rows = [f"| {n} | {t:.1f} s |" for n, t in self.times]
        total = sum(t for _, t in self.times)
        return "\n".join(["| stage | elapsed |", "|---|---|", *rows, f"| **total** | **{total:.1f} s** |"])


def _distill(run: Path, data: Path, epochs: int) -> Path:
    from distill.cli import main as distill_main

    teacher = ZOO / "teacher.pt"
    common = ["--config", str(REPO / "configs" / "cpu_demo.yaml"), "--data", str(data)]
    if not teacher.is_file():  # a checkout without the zoo still demos: train a small teacher first
        print("zoo teacher not found: training a teacher on the sample first")
        rc = distill_main(["teacher", *common, "--out", str(run / "teacher")])
        if rc:
            raise SystemExit(rc)
        teacher = run / "teacher" / "best.pt"
    rc = distill_main(["ss-head", *common, "--teacher", str(teacher), "--out", str(run / "ss_head"),
                       "--set", "ss_head_optim.epochs=2"])
    if rc:
        raise SystemExit(rc)
    rc = distill_main(["student", *common, "--teacher", str(teacher), "--ss-head", str(run / "ss_head" / "ss_head.pt"),
                       "--method", "ssd-kd", "--out", str(run / "student"),
                       "--set", f"student_optim.epochs={epochs}"])
    if rc:
        raise SystemExit(rc)
    return run / "student" / "best.pt"


def _android_copy(run: Path, install: bool) -> Path:
    """The app project the assets go into: a copy under the run dir unless asked to overwrite the real one."""
    if install:
        return REPO / "android_demo"
    dst = run / "android_demo"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(REPO / "android_demo", dst, ignore=shutil.ignore_patterns("build", ".gradle", "*.tflite"))
    return dst


def _report(run: Path, stages: Stages, checkpoint: Path, android: Path) -> Path:
    export_report = json.loads((run / "export" / "export_report.json").read_text())
    bench_md = (run / "bench" / "results.md").read_text() if (run / "bench" / "results.md").is_file() else ""
    lines = ["# ssdkd demo report", "", f"Checkpoint: `{checkpoint}`", "", "## Stages", "", stages.table(), ""]
    metrics = checkpoint.parent / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        lines += ["## Distillation (validation split of the sample)", "",
                  f"accuracy {m['accuracy']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}, "
                  f"macro AUC {m['macro_auc']:.3f} (n={m['n']}; a few epochs on 257 images: a pipeline check, "
                  "not a result — see the zoo table in the README for real numbers)", ""]
        for png in ("confusion_matrix.png", "learning_curve.png"):
            if (checkpoint.parent / png).is_file():
                lines.append(f"![{png}]({(checkpoint.parent / png).relative_to(run)})")
        lines.append("")
    lines += ["## Export and verification", "", "| artifact | precision | size | agreement | accuracy | status |",
              "|---|---|---|---|---|---|"]
    for a in export_report["artifacts"]:
        v = a.get("verification") or {}
        agree = f"{100 * v['agreement']:.1f}%" if v.get("agreement") is not None else "—"
        acc = f"{v['accuracy']:.3f}" if v.get("accuracy") is not None else "—"
        lines.append(f"| {a['file']} | {a['precision']} | {a['size_bytes'] / 1e6:.2f} MB | {agree} | {acc} | "
                     f"{v.get('status', '—')}{': ' + v['reason'] if v.get('reason') else ''} |")
    lines += ["", "## Benchmark (this machine)", "", bench_md, ""]
    for png in sorted((run / "bench").glob("*.png")):
        lines.append(f"![{png.name}]({png.relative_to(run)})")
    lines += ["", f"Android assets: `{android / 'app' / 'src' / 'main' / 'assets'}`", ""]
    path = run / "REPORT.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", action="store_true", help="skip distillation; use models/zoo/student_ssd-kd.pt")
    p.add_argument("--data", default=str(SAMPLE), help="dataset root (default: the embedded sample)")
    p.add_argument("--out", default=str(REPO / "runs" / "demo"))
    p.add_argument("--epochs", type=int, default=5, help="student epochs on the sample")
    p.add_argument("--install-android", action="store_true", help="overwrite android_demo's committed assets")
    args = p.parse_args(argv)
    from benchmarks.cli import main as bench_main
    from distill.cli import main as distill_main
    from export.cli import main as export_main

    run, data = Path(args.out), Path(args.data)
    run.mkdir(parents=True, exist_ok=True)
    stages = Stages()
    stages.run("check data", lambda: distill_main(["check-data", "--data", str(data)]))
    checkpoint = ZOO / "student_ssd-kd.pt"
    if not args.zoo:
        holder: list[Path] = []
        stages.run("distill (SSD-KD student from the zoo teacher)",
                   lambda: holder.append(_distill(run / "distill", data, args.epochs)))
        checkpoint = holder[0]
    android = _android_copy(run, args.install_android)
    # The sample's val split has 59 images (one flipped answer = 1.7 points), too few for the 97 % / 1 pt gate to
    # mean anything: the demo reports int8 agreement instead of gating on it. The zoo's gate results, on 1,503 real
    # val images, are in the README table.
    gate = ["--no-gate"]
    stages.run("export + verify (ONNX, TFLite, CoreML; int8 calibrated on the sample)", lambda: export_main([
        str(checkpoint), "--target", "all", "--int8", "--fp16", "--calib", str(data), "--val", str(data),
        "--out", str(run / "export"), "--android-demo", str(android), *gate]))
    stages.run("benchmark (latency, memory, accuracy)", lambda: bench_main([
        str(run / "export"), "--data", str(data), "--threads", "1,2", "--runs", "50", "--min-seconds", "1",
        "--warmup", "5", "--out", str(run / "bench")]))
    report = _report(run, stages, checkpoint, android)
    print("\n" + stages.table())
    print(f"\nreport: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
