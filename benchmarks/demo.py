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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "isic2019_sample"
ZOO = REPO / "models" / "zoo"
CONFIG = REPO / "configs" / "cpu_demo.yaml"


class Stages:
    """Runs named stages, printing a banner and the elapsed time of each; stops at the first failure."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """``with stages.stage(name): ...`` times the block (a stage that returns a value)."""
        print(f"\n=== {name} " + "=" * max(0, 66 - len(name)), flush=True)
        t0 = time.perf_counter()
        yield
        self.times.append((name, time.perf_counter() - t0))
        print(f"--- {name}: {self.times[-1][1]:.1f} s", flush=True)

    def run(self, name: str, fn: Callable[[], int | None]) -> None:
        """Times a CLI-style stage; a non-zero exit status stops the demo."""
        with self.stage(name):
            rc = fn()
        if rc:
            raise SystemExit(f"demo: stage '{name}' failed (exit {rc}); outputs so far are kept")

    def table(self) -> str:
        rows = [f"| {n} | {t:.1f} s |" for n, t in self.times]
        total = sum(t for _, t in self.times)
        return "\n".join(["| stage | elapsed |", "|---|---|", *rows, f"| **total** | **{total:.1f} s** |"])


def _absolute_weights(config: Path) -> list[str]:
    """``--set`` overrides that turn the config's repo-relative weight paths (read from the current directory by
    ``build_model``) into absolute ones, so the demo runs from any directory."""
    cfg = yaml.safe_load(config.read_text()) or {}
    sets = []
    for section in ("teacher", "student"):
        w = (cfg.get(section) or {}).get("weights")
        if w and w != "imagenet" and not Path(w).is_absolute() and (REPO / w).is_file():
            sets += ["--set", f"{section}.weights={REPO / w}"]
    return sets


def _distill(run: Path, data: Path, epochs: int | None) -> Path:
    from distill.cli import main as distill_main

    teacher = ZOO / "teacher.pt"
    # --overwrite: each demo run retrains into the same run dirs
    common = ["--config", str(CONFIG), "--data", str(data), "--overwrite", *_absolute_weights(CONFIG)]
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
    epochs_set = ["--set", f"student_optim.epochs={epochs}"] if epochs else []
    rc = distill_main(["student", *common, "--teacher", str(teacher), "--ss-head", str(run / "ss_head" / "ss_head.pt"),
                       "--method", "ssd-kd", "--out", str(run / "student"), *epochs_set])
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


def _describe(checkpoint: Path) -> str:
    """``mobilenet_v2-1.0, 112 px, ImageNet init, SSD-KD, 5 epochs`` from the model card."""
    from models import read_checkpoint

    card = read_checkpoint(checkpoint)[1]
    cfg = card.training.get("config") or {}
    student = cfg.get("student") or {}
    init = "ImageNet init" if student.get("weights") else "random init"
    method = {"ssd-kd": "SSD-KD", "d-kd": "D-KD", "kd": "KD", "rkd": "RKD"}.get(
        card.training.get("method", ""), card.training.get("method", "?"))
    epochs = (cfg.get("student_optim") or {}).get("epochs")
    arch = f"{card.arch}-{card.width}" if card.width else card.arch
    return f"{arch}, {card.input_size} px, {init}, {method}" + (f", {epochs} epochs" if epochs else "")


def _share(m: dict, label: str) -> float:
    """Fraction of the evaluated images that are ``label``."""
    support = {c: v["support"] for c, v in m["per_class"].items()}
    return support.get(label, 0) / max(1, sum(support.values()))


def _accuracy_section(run: Path, checkpoint: Path) -> list[str]:
    """This run's student on the sample's val split beside the zoo student on the HAM10000 test split."""
    rows: list[tuple[str, str, str, str, dict]] = []  # model, what, evaluated on, that split's name, metrics
    metrics = checkpoint.parent / "metrics.json"
    ours = json.loads(metrics.read_text()) if metrics.is_file() and checkpoint.parent != ZOO else None
    if ours is not None:
        rows.append(("this run's student", _describe(checkpoint), f"embedded sample, **val** split (n={ours['n']})",
                     "the sample's val split", ours))
    zoo_ckpt, zoo_metrics = ZOO / "student_ssd-kd.pt", ZOO / "student_ssd-kd.test_metrics.json"
    if zoo_ckpt.is_file() and zoo_metrics.is_file():
        z = json.loads(zoo_metrics.read_text())
        rows.append(("zoo student (`models/zoo/student_ssd-kd.pt`)", _describe(zoo_ckpt),
                     f"HAM10000, **test** split (n={z['n']})", "HAM10000's test split", z))
    if not rows:
        return []
    lines = ["## Student accuracy", "",
             "| model | what | evaluated on | accuracy | balanced accuracy | macro AUC |", "|---|---|---|---|---|---|"]
    for name, what, where, _, m in rows:
        lines.append(f"| {name} | {what} | {where} | {100 * m['accuracy']:.1f} % | "
                     f"**{100 * m['balanced_accuracy']:.1f} %** | {m['macro_auc']:.3f} |")
    shares = ", ".join(f"{split} is {100 * _share(m, 'NV'):.0f} % NV" for *_, split, m in rows)
    lines += ["", "Chance balanced accuracy is 12.5 % (8 classes). "
              + (f"The rows are scored on different images and are no ranking: {shares}." if len(rows) > 1
                 else f"{shares[0].upper()}{shares[1:]}.")]
    if ours is not None:
        lines += [f"The sample's val split is small: one image moves accuracy by {100 / ours['n']:.1f} points. The "
                  "sample images are HAM10000 images, many of them in the zoo teacher's training split; the demo "
                  "student trains on the sample's train split only.", "",
                  "Per-class recall of this run's student (sample val split): "
                  + ", ".join(f"{c} {100 * v['recall']:.0f} % (n={v['support']})"
                              for c, v in ours["per_class"].items()), ""]
        for png in ("confusion_matrix.png", "learning_curve.png"):
            if (checkpoint.parent / png).is_file():
                lines.append(f"![{png}]({(checkpoint.parent / png).relative_to(run)})")
    lines.append("")
    return lines


def _report(run: Path, stages: Stages, checkpoint: Path, android: Path) -> Path:
    export_report = json.loads((run / "export" / "export_report.json").read_text())
    bench_md = (run / "bench" / "results.md").read_text() if (run / "bench" / "results.md").is_file() else ""
    lines = ["# ssdkd demo report", "", f"Checkpoint: `{checkpoint}`", "", "## Stages", "", stages.table(), ""]
    lines += _accuracy_section(run, checkpoint)
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
    p.add_argument("--epochs", type=int, help="student epochs on the sample (default: configs/cpu_demo.yaml's)")
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
        with stages.stage("distill (SSD-KD student from the zoo teacher)"):
            checkpoint = _distill(run / "distill", data, args.epochs)
    android = _android_copy(run, args.install_android)
    # The sample's val split has 59 images (one flipped answer = 1.7 points), too few for the 97 % / 1 pt gate to
    # mean anything: the demo reports int8 agreement instead of gating on it. The zoo's gate results, on 1,503 real
    # val images, are in the README table.
    gate = ["--no-gate"]
    stages.run("export + verify (ONNX, TFLite, CoreML; int8 calibrated on the sample)", lambda: export_main([
        str(checkpoint), "--target", "all", "--int8", "--fp16", "--calib", str(data), "--val", str(data),
        "--out", str(run / "export"), "--android-demo", str(android), *gate]))
    # A student distilled here is scored on its own val split, as in the report's accuracy table (its train images
    # would flatter it); --zoo has no split of the sample and scores every sample image.
    split = checkpoint.parent / "split.json"
    on_val = ["--split", "val", "--split-file", str(split)] if not args.zoo and split.is_file() else []
    stages.run("benchmark (latency, memory, accuracy)", lambda: bench_main([
        str(run / "export"), "--data", str(data), *on_val, "--threads", "1,2", "--runs", "50", "--min-seconds", "1",
        "--warmup", "5", "--out", str(run / "bench")]))
    report = _report(run, stages, checkpoint, android)
    print("\n" + stages.table())
    print(f"\nreport: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
