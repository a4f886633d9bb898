"""``ssdkd-distill``: check-data | teacher | ss-head | student | evaluate | compare | calibrate | adjust |
operating-point (a thin layer over distill.stages)."""

from __future__ import annotations

import argparse
import json
import sys

from distill.config import load_config
from distill.methods import METHODS
from models.errors import run_cli

ABLATIONS = {  # switch -> config override (turns one SSD-KD term off)
    "no_ce": "loss.ssd_kd.ce=0", "no_kd": "loss.ssd_kd.kd=0", "no_rot": "loss.ssd_kd.rot=0",
    "no_sim": "loss.ssd_kd.sim=0", "no_dist": "loss.ssd_kd.dist=0", "no_angle": "loss.ssd_kd.angle=0",
    "no_gram": "loss.ssd_kd.gram=0",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssdkd-distill", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check-data", help="validate a dataset and print its summary")
    c.add_argument("--data", required=True, help="dataset root (ISIC 2019 layout or class folders)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster, finds fewer problems)")
    c.add_argument("--include-unk", action="store_true", help="keep UNK rows as a 9th class")

    for name, help_ in (("teacher", "train the teacher"), ("ss-head", "train the teacher's self-supervision head"),
                        ("student", "train/distill the student")):
        s = sub.add_parser(name, help=help_, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        s.add_argument("--config", help="YAML config (e.g. configs/cpu_demo.yaml); defaults = official values")
        s.add_argument("--data", help="dataset root (overrides data.root)")
        s.add_argument("--out", required=True, help="run directory")
        s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set student_optim.epochs=5 (repeatable)")
        s.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
        s.add_argument("--overwrite", action="store_true",
                       help="start again in a run dir that already holds a run (without it, that is an error)")
        if name != "teacher":
            s.add_argument("--teacher", help="teacher checkpoint (best.pt or its run dir)")
        if name == "student":
            s.add_argument("--method", choices=list(METHODS), help="distillation method (overrides loss.method)")
            s.add_argument("--ss-head", help="teacher SS head (default: TEACHER_RUN/ss_head/ss_head.pt)")
            for flag in ABLATIONS:
                s.add_argument(f"--{flag.replace('_', '-')}", action="store_true",
                               help=f"ablation: {ABLATIONS[flag]}")

    e = sub.add_parser("evaluate", help="metrics of a checkpoint on one split of its split file")
    e.add_argument("checkpoint")
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="test", choices=("train", "val", "test"))
    e.add_argument("--split-file", help="default: the split.json beside the checkpoint")
    e.add_argument("--out", help="write the metrics JSON here (with per-image predictions, for `compare`)")

    m = sub.add_parser("compare", help="balanced-accuracy change between two `evaluate --out` files of the same "
                       "split, with a 95 %% interval from a paired bootstrap of the lesions")
    m.add_argument("a", help="evaluation JSON of the model in question")
    m.add_argument("b", help="evaluation JSON of the reference model")

    k = sub.add_parser("calibrate", help="fit a softmax temperature on the val split of a trained checkpoint "
                       "(no retraining) and write it into the checkpoint's model card",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    k.add_argument("checkpoint")
    k.add_argument("--data", required=True, help="dataset root the checkpoint's split file refers to")
    k.add_argument("--split-file", help="default: the split.json beside the checkpoint")
    k.add_argument("--out", help="write the calibrated checkpoint here (default: replace CHECKPOINT atomically); "
                   "reliability.png goes beside it")

    a = sub.add_parser("adjust", help="fold a logit adjustment towards the balanced class prior into a trained "
                       "checkpoint's bias (no retraining; for checkpoints trained with loss.class_weight_power < 1)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("checkpoint")
    a.add_argument("--data", required=True, help="dataset root the checkpoint's split file refers to")
    a.add_argument("--out", required=True, help="the adjusted checkpoint (reliability.png goes beside it)")
    a.add_argument("--tau", type=float, help="logits -= tau * log(train prior); default 1 - loss.class_weight_power")
    a.add_argument("--split-file", help="default: the split.json beside the checkpoint")

    o = sub.add_parser("operating-point", help="raise one class's recall on the val split to a minimum by an offset "
                       "on its logit, folded into a trained checkpoint's bias (no retraining; e.g. MEL=0.9 for "
                       "screening)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    o.add_argument("checkpoint")
    o.add_argument("--data", required=True, help="dataset root the checkpoint's split file refers to")
    o.add_argument("--out", required=True, help="the new checkpoint (reliability.png goes beside it)")
    o.add_argument("--min-recall", required=True, type=_label_recall, metavar="LABEL=RECALL",
                   help="the class and the val recall it must reach, e.g. MEL=0.9")
    o.add_argument("--split-file", help="default: the split.json beside the checkpoint")
    return p


def _label_recall(text: str) -> tuple[str, float]:
    label, sep, value = text.partition("=")
    try:
        recall = float(value)
    except ValueError:
        recall = None
    if not sep or not label or recall is None:
        raise argparse.ArgumentTypeError(f"expected LABEL=RECALL such as MEL=0.9, got {text!r}")
    if not 0 < recall <= 1:  # before the checkpoint and the images load
        raise argparse.ArgumentTypeError(f"a recall must be in (0, 1], got {recall:g} in {text!r}")
    return label, recall


def _config(args: argparse.Namespace):
    overrides = list(args.set)
    if args.data:
        overrides.append(f"data.root={args.data}")
    if getattr(args, "teacher", None):
        overrides.append(f"teacher.checkpoint={args.teacher}")
    if getattr(args, "method", None):
        overrides.append(f"loss.method={args.method}")
    overrides += [v for k, v in ABLATIONS.items() if getattr(args, k, False)]
    return load_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    if args.command == "check-data":
        from distill.data.check import check_data

        report = check_data(args.data, decode=not args.no_decode, include_unk=args.include_unk,
                            progress=sys.stderr.isatty())
        print(json.dumps(report.to_json(), indent=2) if args.json else report.format())
        return 0 if report.ok else 1
    if args.command == "evaluate":
        from distill.stages import describe_calibration, evaluate_checkpoint

        m = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.split_file, args.out)
        low, high = m["balanced_accuracy_ci95"]
        print(f"{args.split}: n={m['n']} accuracy {m['accuracy']:.4f}  balanced accuracy "
              f"{m['balanced_accuracy']:.4f} [95 % {low:.4f}, {high:.4f}]  macro AUC {m['macro_auc']:.4f}")
        print(f"{args.split}: {describe_calibration(m['calibration'])}" if m["calibration"]["fitted"] else
              f"{args.split}: ECE {m['calibration']['ece_before']:.3f} ({m['calibration']['bins']} bins); the "
              "checkpoint has no fitted temperature, so T = 1 (fit one with `ssdkd-distill calibrate`)")
        return 0
    if args.command == "compare":
        from distill.compare import compare_evaluations

        c = compare_evaluations(args.a, args.b)
        low, high = c["ci_pt"]
        print(f"{args.a} - {args.b} ({c['split']}, n={c['n']}): balanced accuracy {c['change_pt']:+.1f} pt "
              f"[95 % {low:+.1f}, {high:+.1f}] (paired bootstrap of the lesions within each class)")
        return 0
    if args.command == "calibrate":
        from distill.stages import calibrate_checkpoint, describe_calibration

        record = calibrate_checkpoint(args.checkpoint, args.data, args.split_file, args.out)
        print(f"{record['split']}: n={record['n']} {describe_calibration(record)} -> {args.out or args.checkpoint}")
        return 0
    if args.command == "adjust":
        from distill.logit_adjust import adjust_checkpoint
        from distill.stages import describe_calibration

        m = adjust_checkpoint(args.checkpoint, args.data, out=args.out, tau=args.tau, split_file=args.split_file)
        print(f"val: n={m['n']} accuracy {m['accuracy']:.4f}  balanced accuracy {m['balanced_accuracy']:.4f}  "
              f"macro AUC {m['macro_auc']:.4f} (tau {m['tau']:g}); {describe_calibration(m['calibration'])} "
              f"-> {args.out}")
        return 0
    if args.command == "operating-point":
        from distill.logit_adjust import set_operating_point
        from distill.stages import describe_calibration

        label, recall = args.min_recall
        m = set_operating_point(args.checkpoint, args.data, out=args.out, label=label, min_recall=recall,
                                split_file=args.split_file)
        op = m["operating_point"]
        print(f"val: n={m['n']} {label} recall {op['val_recall_before']:.3f} -> {m['per_class'][label]['recall']:.3f} "
              f"(+{op['offset']:.3f} on its logit)  accuracy {m['accuracy']:.4f}  balanced accuracy "
              f"{m['balanced_accuracy']:.4f}  macro AUC {m['macro_auc']:.4f}; {describe_calibration(m['calibration'])}"
              f" -> {args.out}")
        return 0
    from distill import stages

    cfg = _config(args)
    run_dir = {"resume": args.resume, "overwrite": args.overwrite}
    if args.command == "teacher":
        stages.train_teacher(cfg, args.out, **run_dir)
    elif args.command == "ss-head":
        stages.train_ss_head(cfg, args.out, **run_dir)
    else:
        stages.train_student(cfg, args.out, ss_head=args.ss_head, **run_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    training = args.command in ("teacher", "ss-head", "student")
    return run_cli(lambda: run(args), prog="ssdkd-distill", error_prefix="ssdkd-distill: error: ",
                   resume_hint="; resume with --resume" if training else "")


if __name__ == "__main__":
    sys.exit(main())
