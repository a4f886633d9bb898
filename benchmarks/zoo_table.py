"""Tool (not library code): build the README's model-zoo comparison table from run outputs (nothing typed by hand).

    python -m benchmarks.zoo_table --data ../shared/data/ham10000-isic2019

It describes the committed files, so any checkout can regenerate it: for each of teacher / scratch / kd / rkd / d-kd /
ssd-kd found in ``--zoo`` (``teacher.pt``, ``student_<method>.pt``): test-split accuracy, balanced accuracy, macro
AUC, melanoma recall and calibration (``<file>.test_metrics.json`` from ``ssdkd-distill evaluate``), the SSD-KD
student's balanced accuracy against every other row's (paired on the test images), parameters and MACs, then an
int8 TFLite export
(calibrated on the train split, verified on val in every orientation; both the int8-I/O and the float-I/O file)
and its 1-thread LiteRT latency on this machine; a row whose int8 files fail the gate is exported again with
16-bit activations (``--a16w8``).
Writes ``models/zoo/RESULTS.md`` + ``results.json`` and replaces the README block between the zoo markers.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks.complexity import count_macs
from benchmarks.harness import run_benchmark
from distill.compare import compare_evaluations, read_evaluation
from export import ExportReport, export
from models import count_parameters, load_checkpoint
from models.atomic import atomic_write_json, atomic_write_text
from models.host import host_cpu

REPO = Path(__file__).resolve().parents[1]
ROWS = (("teacher", "teacher"), ("scratch", "student alone (weighted CE)"), ("kd", "KD"), ("rkd", "RKD"),
        ("d-kd", "D-KD"), ("ssd-kd", "SSD-KD"))
PAPER = {"teacher": "82.0 (ResNet-50)", "scratch": "75.4", "ssd-kd": "84.6"}
BEGIN, END = "<!-- zoo-table:begin -->", "<!-- zoo-table:end -->"
CALIB_IMAGES = 600
INT8_FILES = ("int8", "int8_float_io")


def repo_relative(path: str | Path) -> str:
    """``path`` (absolute, or relative to the working directory) relative to the repo root, in posix form.

    results.json is committed: an absolute path would name the directories of the machine that measured it.
    Lexical, not ``resolve()``: ``../shared`` is often a symlink, and its target names this machine again.
    """
    return Path(os.path.relpath(os.path.abspath(path), REPO)).as_posix()


def _int8_fidelity(report: ExportReport, file: str) -> dict:
    """One int8 file against PyTorch fp32 on the val rows (images x orientations)."""
    v = report.artifact(file).verification
    return {"gate": v.status, "agreement": v.agreement, "tied_top1": v.tied_top1, "mean_l1_dp": v.mean_l1_dsoftmax,
            "bacc_change_pt": 100 * (v.balanced_accuracy - report.reference["balanced_accuracy"]),
            "bacc_change_ci_pt": v.bacc_change_ci}


def _relative_paths(settings: dict) -> dict:
    """The export's record of its val images with repo-relative paths (the split file can be absolute there)."""
    return {k: repo_relative(v) if k in ("root", "split_source") and v else v for k, v in settings.items()}


def zoo_files(zoo: Path, key: str) -> tuple[Path, Path]:
    """The checkpoint of one table row in a zoo dir and its ``ssdkd-distill evaluate`` output on the test split."""
    name = "teacher" if key == "teacher" else f"student_{key}"
    return zoo / f"{name}.pt", zoo / f"{name}.test_metrics.json"


def evaluation_figures(test_metrics: Path) -> dict:
    """A row's test-split figures, from its ``ssdkd-distill evaluate`` output."""
    test = read_evaluation(test_metrics)
    return {"test": {**{k: test[k] for k in ("n", "accuracy", "balanced_accuracy", "balanced_accuracy_ci95",
                                             "macro_auc")},
                     "mel_recall": test["per_class"]["MEL"]["recall"]},
            "calibration": test["calibration"]}


def paired_changes(zoo: Path, keys: list[str], reference: str = "ssd-kd") -> dict:
    """``reference``'s test balanced accuracy minus each other row's, paired on the same test images."""
    ref = zoo_files(zoo, reference)[1]
    return {"reference": reference,
            "rows": {k: {**compare_evaluations(ref, zoo_files(zoo, k)[1]), "a": reference, "b": k}
                     for k in keys if k != reference}}


def _p50_ms(file: Path, runs: int) -> float:
    """1-thread LiteRT latency of one file on this machine."""
    bench = run_benchmark([file], runtimes="tflite", threads=(1,), runs=runs, min_seconds=2.0, warmup=10,
                          memory=False, plots=False, progress=False)
    return bench.rows[0]["latency"]["p50_ms"]


def _a16w8(ckpt: Path, data: Path, out: Path, runs: int) -> dict:
    """``ssdkd-export --a16w8`` for a row whose int8 files fail the gate: the same int8 weights with 16-bit
    activations, verified the same way. It runs on LiteRT's reference kernels, hence its own latency."""
    report = export(ckpt, targets="tflite", a16w8=True, calib=data, val=data, out_dir=out,
                    calib_size=CALIB_IMAGES, val_size=None, verbose=False)
    return {**_int8_fidelity(report, "model_a16w8.tflite"),
            "bytes": report.artifact("model_a16w8.tflite").size_bytes,
            "p50_ms_1thread": _p50_ms(out / "model_a16w8.tflite", runs)}


def measure(ckpt: Path, test_metrics: Path, data: Path, out: Path, runs: int) -> dict:
    model, card = load_checkpoint(ckpt)
    report = export(ckpt, targets="tflite", int8=True, calib=data, val=data, out_dir=out,
                    calib_size=CALIB_IMAGES, val_size=None, verbose=False)
    arch = f"{card.arch}-{card.width}" if card.width else card.arch
    row = {"checkpoint": repo_relative(ckpt), "arch": arch, "input_size": card.input_size,
           "method": card.training.get("method"), **evaluation_figures(test_metrics),
           "params": count_parameters(model), "macs": count_macs(model, card.input_size),
           "int8_tflite_bytes": report.artifact("model_int8.tflite").size_bytes,
           "int8_p50_ms_1thread": _p50_ms(out / "model_int8.tflite", runs),
           "val": _relative_paths(report.settings["val"]),
           "int8": _int8_fidelity(report, "model_int8.tflite"),
           "int8_float_io": _int8_fidelity(report, "model_int8_fio.tflite")}
    if any(row[k]["gate"] != "passed" for k in INT8_FILES):
        row["a16w8"] = _a16w8(ckpt, data, out / "a16w8", runs)
    return row


def _fidelity(f: dict) -> str:
    ci = f["bacc_change_ci_pt"]
    return (f"{100 * f['agreement']:.1f}% agree ({100 * f['tied_top1']:.1f}% tied), mean L1 Δp {f['mean_l1_dp']:.3f}, "
            f"{f['bacc_change_pt']:+.1f} pt bacc [{ci[0]:+.1f}, {ci[1]:+.1f}] ({f['gate']})")


def _calibration(cal: dict | None) -> str:
    """``T: ECE at T = 1 -> at T`` on the test split; rows measured before calibration existed have neither."""
    if cal is None:
        return "1 (none fitted): —"
    if not cal["fitted"]:
        return f"1 (none fitted): {cal['ece_before']:.3f}"
    return f"{cal['temperature']:.2f}: {cal['ece_before']:.3f} → {cal['ece_after']:.3f}"


def render(results: dict) -> str:
    lines = ["| model | arch @ px | test acc % | test bal. acc % | macro AUC | MEL recall | T: test ECE at T=1 → T | "
             "params | MACs | int8 TFLite | int8 p50, 1 thread | int8 vs fp32 (val) | float-I/O int8 vs fp32 (val) | "
             "paper acc % (ISIC 2019, 224 px) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, label in ROWS:
        r = results["rows"].get(key)
        if r is None:
            continue
        t = r["test"]
        low, high = t["balanced_accuracy_ci95"]
        lines.append(f"| {label} | {r['arch']} @ {r['input_size']} | {100 * t['accuracy']:.1f} | "
                     f"{100 * t['balanced_accuracy']:.1f} [{100 * low:.1f}, {100 * high:.1f}] | "
                     f"{t['macro_auc']:.3f} | {t['mel_recall']:.2f} | "
                     f"{_calibration(r.get('calibration'))} | {r['params'] / 1e6:.2f} M | "
                     f"{r['macs'] / 1e6:.0f} M | {r['int8_tflite_bytes'] / 1e6:.2f} MB | "
                     f"{r['int8_p50_ms_1thread']:.2f} ms | {_fidelity(r['int8'])} | {_fidelity(r['int8_float_io'])} | "
                     f"{PAPER.get(key, '—')} |")
    first = next(iter(results["rows"].values()))
    val = first["val"]
    passed = sum(r[k]["gate"] == "passed" for r in results["rows"].values() for k in INT8_FILES)
    lines += ["", f"Test split: {first['test']['n']} images of HAM10000 (lesion-grouped, seed 2021), touched only "
              "for this table; [ ] after a balanced accuracy: its 95 % interval from 2,000 resamples of the test "
              f"lesions within each class. Latency: LiteRT, batch 1, 1 thread, on {results['machine']}. The "
              "paper's numbers are on ISIC 2019 (25k images) at 224 px with a ResNet-50 teacher and 150-epoch "
              "budgets: a different dataset, resolution and budget, given for orientation only. int8: TFLite "
              "full-integer (int8 backbone, 16-bit head, probabilities out; int8 I/O is the file the app ships; "
              f"weights GPTQ-rounded and bias-corrected), calibrated on {results['calib_images']} train images, "
              f"compared with PyTorch fp32 on all {val['n_images']:,} val images, each in {val['orientations']} "
              "orientations (flips and right-angle turns); the gate is agreement >= 97 % and balanced accuracy "
              f"within 1 pt: {passed} of {2 * len(results['rows'])} files pass. tied: rows whose int8 top "
              "probability is shared by two classes; mean L1 Δp: mean over rows of the summed |Δ probability|; "
              "[ ] in the int8 columns: 95 % interval of the balanced-accuracy change from a paired bootstrap of "
              "the val lesions within each class. T: the softmax temperature fitted on the val split "
              "(`ssdkd-distill calibrate`; 1 = none fitted, as for checkpoints trained before calibration existed; "
              "it changes no prediction); test ECE: expected calibration error (15 bins of top-1 probability) of "
              "the test-split probabilities at T = 1 and at T."]
    names = dict(ROWS)
    fallback = [f"{names[k]}: {_fidelity(r['a16w8'])}, {r['a16w8']['bytes'] / 1e6:.2f} MB, "
                f"p50 {r['a16w8']['p50_ms_1thread']:.1f} ms on 1 thread "
                f"(its int8 file: {r['int8_p50_ms_1thread']:.2f} ms)"
                for k, r in results["rows"].items() if "a16w8" in r]
    if fallback:
        lines += ["", "Rows whose int8 files fail the gate are exported again with `ssdkd-export --a16w8` (the same "
                  "int8 weights, 16-bit activations, float I/O; the same calibration and val rows). LiteRT has no "
                  "optimised 16x8 kernels on a CPU, hence the latency: " + "; ".join(fallback) + "."]
    paired = results["paired"]
    changes = [f"{names[k]} {c['change_pt']:+.1f} [{c['ci_pt'][0]:+.1f}, {c['ci_pt'][1]:+.1f}]"
               for k, c in paired["rows"].items()]
    lines += ["", f"{names[paired['reference']]}'s test balanced accuracy minus each other row's, in points, paired "
              "on the same test images (95 % interval from 2,000 resamples of the lesions within each class; an "
              f"interval that holds 0 is no evidence of a difference): {'; '.join(changes)}."]
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", default=str(REPO / "models" / "zoo"),
                   help="dir with teacher.pt, student_<method>.pt and their .test_metrics.json")
    p.add_argument("--out", default="runs/zoo_table", help="where the int8 exports go")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ham10000-isic2019"))
    p.add_argument("--bench-runs", type=int, default=100)
    p.add_argument("--readme", default=str(REPO / "README.md"))
    p.add_argument("--only", nargs="+", choices=[k for k, _ in ROWS], metavar="ROW",
                   help="measure only these rows and keep the others from the committed results.json "
                        f"(one of {', '.join(k for k, _ in ROWS)})")
    p.add_argument("--render-only", action="store_true",
                   help="re-render RESULTS.md and the README block from the committed results.json, re-reading only "
                        "the test figures from the .test_metrics.json files (no export, no latency)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    zoo, committed = Path(args.zoo), REPO / "models" / "zoo" / "results.json"
    if args.render_only:  # the exports and latencies stay; the test figures are re-read
        results = json.loads(committed.read_text())
        for key in results["rows"]:
            results["rows"][key].update(evaluation_figures(zoo_files(zoo, key)[1]))
    else:
        cpu = host_cpu()
        results = {"machine": f"{cpu['cpu_model'] or 'unknown CPU'}, {os.cpu_count()} cores "
                              f"({', '.join(cpu['isa']) or 'no int8-relevant ISA extension'})",
                   "calib_images": CALIB_IMAGES, "rows": {}}
        if args.only:  # rows measured on another day keep their figures; the machine must be the same one
            kept = json.loads(committed.read_text())
            if kept["machine"] != results["machine"]:
                raise SystemExit(f"zoo_table: --only: {committed} was measured on {kept['machine']}, "
                                 f"this is {results['machine']}: measure every row")
            results["rows"] = {k: r for k, r in kept["rows"].items()
                               if k not in args.only and zoo_files(zoo, k)[0].is_file()}
        for key, label in ROWS:
            ckpt, test_metrics = zoo_files(zoo, key)
            if ckpt.is_file() and (not args.only or key in args.only):
                print(f"measuring {label} ({ckpt.name}) ...", flush=True)
                results["rows"][key] = measure(ckpt, test_metrics, Path(args.data), Path(args.out) / key,
                                               args.bench_runs)
    results["rows"] = {k: results["rows"][k] for k, _ in ROWS if k in results["rows"]}  # --only appends its rows
    results["paired"] = paired_changes(zoo, list(results["rows"]))
    table = render(results)
    atomic_write_json(committed, results)
    atomic_write_text(REPO / "models" / "zoo" / "RESULTS.md", "# Model zoo results\n\n" + table + "\n")
    readme = Path(args.readme)
    text = readme.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        atomic_write_text(readme, head + BEGIN + "\n" + table + "\n" + END + rest.split(END, 1)[1])
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
