"""Tool (not library code): ``make demo``, the whole pipeline on the embedded sample, stage by stage with timings.

    python -m benchmarks.demo            # distill a student from the zoo teacher -> export -> verify -> bench
    python -m benchmarks.demo --zoo      # skip distillation: export + benchmark the committed zoo student

It calls the library functions the three CLIs call (``distill.stages``, ``export.export``,
``benchmarks.harness.run_benchmark``) on the repository's own files (the sample, the zoo, ``configs/cpu_demo.yaml``,
``android_demo``), so it runs from a checkout. Writes everything under ``--out`` (default ``runs/demo``) and ends
with ``REPORT.md`` (tables + plots). The Android assets go to a copy of the app's assets under the run dir;
``--install-android`` overwrites the committed ``android_demo`` assets instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from models.errors import InputError, run_cli

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "isic2019_sample"
ZOO = REPO / "models" / "zoo"
CONFIG = REPO / "configs" / "cpu_demo.yaml"


class StageFailed(Exception):
    """A stage ran to the end but its result stops the demo (a dataset with problems, a failed artifact)."""


class Stages:
    """Runs named stages, printing a banner and the elapsed time of each; stops at the first failure."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """``with stages.stage(name): ...`` times the block; a :class:`StageFailed` or bad input raised in it stops
        the demo with one line naming the stage."""
        print(f"\n=== {name} " + "=" * max(0, 66 - len(name)), flush=True)
        t0 = time.perf_counter()
        try:
            yield
        except (StageFailed, InputError) as e:
            self._done(name, t0)
            raise SystemExit(f"demo: stage '{name}' failed: {e}; outputs so far are kept") from None
        self._done(name, t0)

    def _done(self, name: str, t0: float) -> None:
        self.times.append((name, time.perf_counter() - t0))
        print(f"--- {name}: {self.times[-1][1]:.1f} s", flush=True)

    def table(self) -> str:
        rows = [f"| {n} | {t:.1f} s |" for n, t in self.times]
        total = sum(t for _, t in self.times)
        return "\n".join(["| stage | elapsed |", "|---|---|", *rows, f"| **total** | **{total:.1f} s** |"])


def _absolute_weights(config: Path) -> list[str]:
    """Config overrides that turn the config's repo-relative weight paths (read from the current directory by
    ``build_model``) into absolute ones, so the demo runs from any directory."""
    cfg = yaml.safe_load(config.read_text()) or {}
    overrides = []
    for section in ("teacher", "student"):
        w = (cfg.get(section) or {}).get("weights")
        if w and w != "imagenet" and not Path(w).is_absolute() and (REPO / w).is_file():
            overrides.append(f"{section}.weights={REPO / w}")
    return overrides


def _check_data(data: Path) -> None:
    from distill.data.check import check_data

    report = check_data(data, progress=sys.stderr.isatty())
    print(report.format())
    if not report.ok:
        raise StageFailed(f"{len(report.problems)} problem(s) in {data} (listed above)")


def _distill(run: Path, data: Path, epochs: int | None) -> Path:
    """The SSD-KD student of ``configs/cpu_demo.yaml`` on ``data`` (its teacher first when the zoo has none)."""
    from distill.config import load_config
    from distill.stages import train_ss_head, train_student, train_teacher

    common = [f"data.root={data}", *_absolute_weights(CONFIG)]
    teacher = ZOO / "teacher.pt"
    # overwrite: each demo run retrains into the same run dirs
    if not teacher.is_file():  # a checkout without the zoo still demos: train a small teacher first
        print("zoo teacher not found: training a teacher on the sample first")
        train_teacher(load_config(CONFIG, common), run / "teacher", overwrite=True)
        teacher = run / "teacher" / "best.pt"
    common.append(f"teacher.checkpoint={teacher}")
    train_ss_head(load_config(CONFIG, [*common, "ss_head_optim.epochs=2"]), run / "ss_head", overwrite=True)
    epochs_set = [f"student_optim.epochs={epochs}"] if epochs else []
    student = load_config(CONFIG, [*common, "loss.method=ssd-kd", *epochs_set])
    train_student(student, run / "student", ss_head=run / "ss_head" / "ss_head.pt", overwrite=True)
    return run / "student" / "best.pt"


def _export(checkpoint: Path, data: Path, out: Path, android: Path) -> None:
    """Every target, int8 calibrated on the sample, verified on it; the int8 TFLite also into ``android``."""
    import torch

    from export import Gate, export

    threads = min(2, os.cpu_count() or 1)  # ssdkd-export's default, for the converters and for torch
    torch.set_num_threads(threads)
    # The sample's val split has 59 images (one flipped answer = 1.7 points), too few for the 97 % / 1 pt gate to
    # mean anything: the demo reports int8 agreement instead of gating on it. The zoo's gate results, on 1,503 real
    # val images, are in the README table.
    report = export(checkpoint, targets="all", int8=True, fp16=True, calib=data, val=data, out_dir=out,
                    android_demo=android, gate=Gate(enabled=False), threads=threads)
    if not report.passed:
        raise StageFailed(f"verification failed for {len(report.failures)} artifact(s): " + "; ".join(report.failures))


def _benchmark(export_dir: Path, data: Path, split_file: Path | None, out: Path) -> None:
    """Latency at 1 and 2 threads, memory and accuracy on ``data`` (its val split when ``split_file`` is given)."""
    from benchmarks.harness import run_benchmark

    results = run_benchmark([export_dir], data=data, split="val" if split_file else None, split_file=split_file,
                            threads=(1, 2), runs=50, min_seconds=1, warmup=5, out=out)
    print(results.files["md"].read_text(), end="")
    if results.failures:
        raise StageFailed(f"runtime(s) failed: {', '.join(results.failed_runtimes)}: " + "; ".join(results.failures))


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


def _interval(m: dict) -> str:
    """`` [low, high] %`` of a metrics file's balanced accuracy; empty for files written before it had one."""
    ci = m.get("balanced_accuracy_ci95")
    return f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""


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
                     f"**{100 * m['balanced_accuracy']:.1f} %**{_interval(m)} | {m['macro_auc']:.3f} |")
    shares = ", ".join(f"{split} is {100 * _share(m, 'NV'):.0f} % NV" for *_, split, m in rows)
    lines += ["", "Chance balanced accuracy is 12.5 % (8 classes). [ ]: 95 % interval from 2,000 resamples of the "
              "split's lesions within each class, the spread another split of this size would show. "
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
    return run_cli(lambda: _run(args), prog="demo", error_prefix="demo: error: ")


def _run(args: argparse.Namespace) -> int:
    run, data = Path(args.out), Path(args.data)
    run.mkdir(parents=True, exist_ok=True)
    stages = Stages()
    with stages.stage("check data"):
        _check_data(data)
    checkpoint = ZOO / "student_ssd-kd.pt"
    if not args.zoo:
        with stages.stage("distill (SSD-KD student from the zoo teacher)"):
            checkpoint = _distill(run / "distill", data, args.epochs)
    android = _android_copy(run, args.install_android)
    with stages.stage("export + verify (ONNX, TFLite, CoreML; int8 calibrated on the sample)"):
        _export(checkpoint, data, run / "export", android)
    # A student distilled here is scored on its own val split, as in the report's accuracy table (its train images
    # would flatter it); --zoo has no split of the sample and scores every sample image.
    split = checkpoint.parent / "split.json"
    with stages.stage("benchmark (latency, memory, accuracy)"):
        _benchmark(run / "export", data, split if not args.zoo and split.is_file() else None, run / "bench")
    report = _report(run, stages, checkpoint, android)
    print("\n" + stages.table())
    print(f"\nreport: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
