"""The three stages the CLI runs -- ``teacher``, ``ss-head``, ``student`` -- plus ``evaluate``.

Each stage writes into its run dir: ``config.yaml`` (resolved), ``split.json``, ``history.csv``,
``last.pt`` (resume), ``best.pt`` (model card inside), ``metrics.json`` and PNG figures. A classifier stage ends by
fitting a softmax temperature on the val split (``calibrate``): into ``best.pt``'s card, ``metrics.json`` and
``reliability.png``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from distill.config import Config, ModelConfig, OptimConfig, dump_config, to_dict
from distill.data import ImageDataset, LabeledImages, load_labeled_images, load_split, resolve_split, save_split
from distill.data.check import require_readable_images
from distill.data.split import Split
from distill.distributed import DistInfo, init_distributed
from distill.engine import FitResult, fit, resolve_device, seed_everything
from distill.heads import SSHead
from distill.losses import class_weights_from_counts, weighted_cross_entropy
from distill.methods import METHODS
from distill.metrics import balanced_accuracy_ci95, classification_metrics
from distill.plots import plot_confusion, plot_learning_curves, plot_reliability
from distill.tasks import DistillTask, SSHeadTask, SupervisedTask
from models import ModelCard, build_model, calibration, load_checkpoint, save_checkpoint
from models.atomic import atomic_save, atomic_write_json, atomic_write_text, check_writable_dir, ensure_writable_dir
from models.checkpoint import load_tensors, replace_card, state_dict_problem
from models.errors import InputError, warn
from models.net import Classifier
from models.pretrained import is_folded_batchnorm, reestimate_folded_batchnorm

LICENCE_NOTE = ("Weights trained on CC BY-NC 4.0 data (HAM10000 / ISIC Archive): non-commercial use only. "
                "Research use; not a medical device.")
# What a stage leaves in its run dir about a trained model: a dir holding any of them holds a run, which a new run
# replaces only when asked (--overwrite; --resume continues it).
RUN_RECORD = ("best.pt", "last.pt", "ss_head.pt", "metrics.json", "history.csv")


@dataclass
class StageData:
    ds: LabeledImages
    split: Split
    train: ImageDataset
    val: ImageDataset
    class_weights: torch.Tensor


def prepare_data(cfg: Config, model_cfg: ModelConfig, split_file: str | Path | None = None) -> StageData:
    """Read the dataset and resolve the split (reuse ``split_file``/``data.split_file``, else make one); the run
    saves it when it starts (:func:`_recorder`)."""
    if cfg.data.root is None:
        raise InputError("no dataset: pass --data ROOT (ISIC 2019 layout or class folders)")
    ds = load_labeled_images(cfg.data.root, include_unk=cfg.data.include_unk)
    given = cfg.data.split_file or split_file
    if given is not None and not Path(given).is_file():
        raise InputError(f"{given}: split file not found")
    split = resolve_split(ds, given, cfg.data.split_seed, cfg.data.val_frac, cfg.data.test_frac)
    train_records = ds.subset(split.train)
    if cfg.data.max_train_images and len(train_records) > cfg.data.max_train_images:
        rng = np.random.default_rng(cfg.data.split_seed)
        keep = sorted(rng.choice(len(train_records), cfg.data.max_train_images, replace=False))
        train_records = [train_records[i] for i in keep]
    counts = [sum(r.label == c for r in train_records) for c in range(len(ds.classes))]
    try:
        weights = class_weights_from_counts(counts, power=cfg.loss.class_weight_power)
    except ValueError as e:
        raise InputError(f"{ds.root}: the train split has an empty class ({e})") from None
    size = cfg.data.image_size
    return StageData(
        ds, split,
        ImageDataset(train_records, size, model_cfg.mean, model_cfg.std, train=True, augmentation=cfg.data.augment),
        ImageDataset(ds.subset(split.val), size, model_cfg.mean, model_cfg.std, train=False),
        torch.tensor(weights, dtype=torch.float32),
    )


def build_from_config(mc: ModelConfig, num_classes: int, calib: Dataset | None = None) -> Classifier:
    """Build ``mc.arch``; for folded-BN weights (the offline MobileNetV2), re-estimate BN on real images."""
    kwargs = {} if mc.width is None else {"width": mc.width}
    model = build_model(mc.arch, num_classes, weights=mc.weights, **kwargs)
    if mc.weights not in (None, "imagenet") and is_folded_batchnorm(model.body) and calib is not None:
        n = min(mc.bn_reestimate_images, len(calib))
        loader = DataLoader(Subset(calib, range(n)), batch_size=32)
        reestimate_folded_batchnorm(model.body, (x for x, _ in loader))
    return model


def make_card(cfg: Config, mc: ModelConfig, data: StageData, stage: str, metrics: dict) -> ModelCard:
    return ModelCard(
        arch=mc.arch, width=mc.width, num_classes=len(data.ds.classes), labels=list(data.ds.classes),
        input_size=cfg.data.image_size, mean=list(mc.mean), std=list(mc.std),
        training={"stage": stage, "method": cfg.loss.method if stage == "student" else "supervised",
                  "command": " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]]),
                  "config": to_dict(cfg), "torch": torch.__version__},
        metrics=metrics,
        data={"root": str(data.ds.root), "layout": data.ds.layout, "split_file": "split.json",
              "split_seed": data.split.seed, "train_images": len(data.train), "val_images": len(data.val),
              "class_weights": data.class_weights.tolist(), "licence": LICENCE_NOTE},
    )


@torch.no_grad()
def predict_logits(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels over a loader (model in eval mode)."""
    model.eval()
    logits, ys = [], []
    for x, y in loader:
        logits.append(model(x.to(device)).float().cpu())
        ys.append(y)
    return torch.cat(logits).numpy(), torch.cat(ys).numpy()


def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (T = 1) and labels over a loader (model in eval mode)."""
    logits, ys = predict_logits(model, loader, device)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy(), ys


def classifier_evaluator(class_weights: torch.Tensor, labels: list[str]):
    """Validation = weighted CE of the classifier (official early-stop criterion) + metrics."""

    def evaluate(task: nn.Module, loader: DataLoader, device: torch.device) -> dict:
        model = task.classifier
        probs, ys = predict(model, loader, device)
        p = torch.from_numpy(probs).clamp_min(1e-12).log()
        loss = float(weighted_cross_entropy(p, torch.from_numpy(ys), class_weights.cpu()))
        m = classification_metrics(ys, probs, labels)
        return {"val_loss": loss, "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
                "macro_auc": m["macro_auc"], "_full": m}

    return evaluate


def _setup(cfg: Config, out: str | Path, *, resume: bool, overwrite: bool) -> tuple[Path, DistInfo, torch.device]:
    """Device, processes, threads and seeds, and whether ``out`` may take this run; nothing is written into it
    until the run can start (:func:`_recorder`)."""
    device = resolve_device(cfg.runtime)
    dist = init_distributed(device.type)
    run_dir = check_writable_dir(out)
    held = [name for name in RUN_RECORD if (run_dir / name).is_file()]
    if resume and overwrite:
        raise InputError("--resume continues the run in the run dir and --overwrite replaces it: pass one of them")
    if held and not (resume or overwrite):
        raise InputError(f"{run_dir}: already holds a run ({', '.join(held)}); pass --resume to continue it or "
                         f"--overwrite to replace it")
    if cfg.runtime.threads:
        if cfg.runtime.threads > (os.cpu_count() or 1):
            warn(f"runtime.threads={cfg.runtime.threads} is more than this machine's {os.cpu_count()} CPUs: the "
                 f"extra threads only compete for the same cores")
        torch.set_num_threads(cfg.runtime.threads)
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    seed_everything(cfg.seed)
    return run_dir, dist, device


def _preflight(data: StageData, optim: OptimConfig, name: str, dist: DistInfo) -> None:
    """Before the first step: decode every image the run will read (a corrupt one found now, not when an epoch
    reaches it hours in), and warn about a batch larger than the training split."""
    require_readable_images([*data.train.records, *data.val.records], data.ds.root,
                            progress=dist.is_main and sys.stderr.isatty())
    if optim.batch_size > len(data.train) and dist.is_main:
        warn(f"{name}.batch_size={optim.batch_size} is larger than the {len(data.train)} training images: every "
             f"epoch is one batch of {len(data.train)}")


def _recorder(run_dir: Path, cfg: Config, data: StageData, dist: DistInfo, overwrite: bool):
    """What the run writes when it starts (called by ``fit`` once everything, ``last.pt`` included, has been
    checked): the run dir, ``config.yaml`` and ``split.json``; with ``overwrite``, the old run's record goes first
    so that no file of it is left beside the new config."""

    def start() -> None:
        if not dist.is_main:
            return
        ensure_writable_dir(run_dir)
        if overwrite:
            for name in RUN_RECORD:
                (run_dir / name).unlink(missing_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
        save_split(run_dir / "split.json", data.split, data.ds)

    return start


def _finish(run_dir: Path, result: FitResult, data: StageData, dist: DistInfo,
            device: torch.device, title: str) -> dict:
    """Reload best.pt, write metrics.json and figures (rank 0)."""
    if not dist.is_main:
        return {}
    model, card = load_checkpoint(run_dir / "best.pt")
    loader = DataLoader(data.val, batch_size=64, shuffle=False)
    logits, ys = predict_logits(model.to(device), loader, device)
    m = classification_metrics(ys, torch.softmax(torch.from_numpy(logits), dim=1).numpy(), list(data.ds.classes))
    metrics = {"split": "val", "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
               "epochs_run": result.epochs_run, "stopped_early": result.stopped_early, **m,
               "balanced_accuracy_ci95": balanced_accuracy_ci95(ys, logits.argmax(1),
                                                                [r.group for r in data.val.records]),
               "calibration": calibrate(run_dir / "best.pt", card, logits, ys, "val", title)}
    if result.ddp_sync is not None:
        metrics["ddp_sync"] = result.ddp_sync
    atomic_write_json(run_dir / "metrics.json", metrics)
    plot_confusion(m["confusion_matrix"], m["labels"], run_dir / "confusion_matrix.png", f"{title} (val)")
    plot_learning_curves(result.history, run_dir / "learning_curve.png", title)
    low, high = metrics["balanced_accuracy_ci95"]
    print(f"{title}: best epoch {result.best_epoch}, val accuracy {m['accuracy']:.3f}, "
          f"balanced accuracy {m['balanced_accuracy']:.3f} [95 % {low:.3f}, {high:.3f}], "
          f"macro AUC {m['macro_auc']:.3f}, "
          f"{describe_calibration(metrics['calibration'])} -> {run_dir}/best.pt")
    return metrics


def calibrate(ckpt: Path, card: ModelCard, logits: np.ndarray, ys: np.ndarray, split_name: str, title: str,
              out: Path | None = None) -> dict:
    """Fit a temperature on held-out logits, record it in the checkpoint's card (``out``, default in place,
    atomically) and draw ``reliability.png`` beside it; returns the record (``Calibration.to_json`` + split)."""
    fitted = calibration.fit(logits, ys)
    record = {**fitted.to_json(), "split": split_name}
    dest = replace_card(ckpt, replace(card, calibration=record), out)
    plot_reliability([(f"{split_name} split, {record['n']} images", [
        ("T = 1", fitted.before), (f"T = {fitted.temperature:.2f} (fitted)", fitted.after)])],
        dest.parent / "reliability.png", f"{title}: calibration")
    return record


def describe_calibration(record: dict) -> str:
    return (f"ECE {record['ece_before']:.3f} at T = 1, {record['ece_after']:.3f} at T = {record['temperature']:.2f}"
            f" ({record['bins']} bins)")


def _checkpoint_saver(run_dir: Path, cfg: Config, mc: ModelConfig, data: StageData, stage: str):
    def save(task: nn.Module, val: dict, epoch: int) -> None:
        metrics = {k: v for k, v in val.items() if not k.startswith("_")} | {"epoch": epoch + 1, "split": "val"}
        save_checkpoint(run_dir / "best.pt", task.classifier, make_card(cfg, mc, data, stage, metrics))

    return save


def train_teacher(cfg: Config, out: str | Path, resume: bool = False, *, overwrite: bool = False) -> dict:
    """Stage 1: supervised teacher (class-weighted CE), best by validation loss."""
    run_dir, dist, device = _setup(cfg, out, resume=resume, overwrite=overwrite)
    data = prepare_data(cfg, cfg.teacher)
    _preflight(data, cfg.teacher_optim, "teacher_optim", dist)
    model = build_from_config(cfg.teacher, len(data.ds.classes), data.val)
    task = SupervisedTask(model, data.class_weights)
    result = fit(task, data.train, data.val, cfg.teacher_optim, run_dir,
                 evaluate=classifier_evaluator(data.class_weights, list(data.ds.classes)),
                 save_best=_checkpoint_saver(run_dir, cfg, cfg.teacher, data, "teacher"),
                 seed=cfg.seed, runtime=cfg.runtime, dist=dist, device=device,
                 num_workers=cfg.data.num_workers, resume=resume, desc="teacher",
                 on_start=_recorder(run_dir, cfg, data, dist, overwrite))
    return _finish(run_dir, result, data, dist, device, f"teacher {cfg.teacher.arch}")


def _teacher_checkpoint(cfg: Config) -> Path:
    if not cfg.teacher.checkpoint:
        raise InputError("no teacher: pass --teacher PATH/TO/best.pt (from `ssdkd-distill teacher`)")
    p = Path(cfg.teacher.checkpoint)
    return p / "best.pt" if p.is_dir() else p


def _teacher_split(ckpt: Path, card: ModelCard, data_root: str | None) -> Path | None:
    """The teacher's split file, so the student never trains on images the teacher validated or was tested on.

    Only when distilling on the teacher's own dataset; a teacher trained elsewhere (e.g. the zoo teacher used on
    the embedded sample) gets a fresh split of the new data.
    """
    name = card.data.get("split_file")
    p = ckpt.parent / name if name else None
    same_data = data_root is not None and Path(card.data.get("root", "")).resolve() == Path(data_root).resolve()
    return p if p is not None and p.is_file() and same_data else None


def train_ss_head(cfg: Config, out: str | Path, resume: bool = False, *, overwrite: bool = False) -> dict:
    """Stage 2: the teacher's self-supervision head, backbone frozen (official: 60 epochs, MultiStep 30/45)."""
    run_dir, dist, device = _setup(cfg, out, resume=resume, overwrite=overwrite)
    ckpt = _teacher_checkpoint(cfg)
    teacher, card = load_checkpoint(ckpt)
    tcfg = replace(cfg, data=replace(cfg.data, image_size=card.input_size))
    mc = replace(cfg.teacher, mean=tuple(card.mean), std=tuple(card.std))
    data = prepare_data(tcfg, mc, _teacher_split(ckpt, card, cfg.data.root))
    _preflight(data, cfg.ss_head_optim, "ss_head_optim", dist)
    task = SSHeadTask(teacher)

    def evaluate(t: nn.Module, loader: DataLoader, dev: torch.device) -> dict:
        losses, correct, rows = [], 0, 0
        for x, _ in loader:
            if x.shape[0] < 2:
                continue
            sim = t.similarity(x.to(dev))
            target = torch.arange(sim.shape[0], device=dev) // 3
            losses.append(float(torch.nn.functional.cross_entropy(sim, target)) * sim.shape[0])
            correct += int((sim.argmax(1) == target).sum())
            rows += sim.shape[0]
        return {"val_loss": sum(losses) / max(rows, 1), "similarity_accuracy": correct / max(rows, 1)}

    def save(t: nn.Module, val: dict, epoch: int) -> None:
        payload = {"ss_head": t.ss_head.state_dict(), "feature_dim": torch.tensor(teacher.feature_dim),
                   "teacher_checkpoint": str(ckpt.resolve()), "val": json.dumps(
                       {k: v for k, v in val.items() if not k.startswith("_")} | {"epoch": epoch + 1})}
        atomic_save(run_dir / "ss_head.pt", lambda tmp: torch.save(payload, tmp))

    result = fit(task, data.train, data.val, cfg.ss_head_optim, run_dir, evaluate=evaluate, save_best=save,
                 seed=cfg.seed, runtime=cfg.runtime, dist=dist, device=device, num_workers=cfg.data.num_workers,
                 resume=resume, desc="ss-head", on_start=_recorder(run_dir, cfg, data, dist, overwrite))
    metrics = {"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
               "similarity_accuracy": result.history[result.best_epoch - 1].get("val_similarity_accuracy")
               if result.history else None}
    if dist.is_main:
        atomic_write_json(run_dir / "metrics.json", metrics)
        print(f"ss-head: best epoch {result.best_epoch}, rotation-matching accuracy "
              f"{metrics['similarity_accuracy']} -> {run_dir}/ss_head.pt")
    return metrics


def _default_ss_head(teacher_ckpt: Path) -> Path:
    """``ss_head.pt`` in the conventional ``<teacher run>/ss_head/`` dir, else beside the teacher."""
    nested = teacher_ckpt.parent / "ss_head" / "ss_head.pt"
    return nested if nested.is_file() else teacher_ckpt.parent / "ss_head.pt"


def load_ss_head(path: Path, feature_dim: int) -> SSHead:
    if not path.is_file():
        raise InputError(f"{path}: teacher SS head not found (run `ssdkd-distill ss-head` or pass --ss-head)")
    payload = load_tensors(path, "a teacher SS head")
    if not isinstance(payload, dict) or not {"ss_head", "feature_dim"} <= set(payload):
        raise InputError(f"{path}: not a teacher SS head (expected keys 'ss_head' and 'feature_dim')")
    if int(payload["feature_dim"]) != feature_dim:
        raise InputError(f"{path}: SS head is for a {int(payload['feature_dim'])}-d teacher, not {feature_dim}-d")
    head = SSHead(feature_dim)
    try:
        head.load_state_dict(payload["ss_head"])
    except RuntimeError as e:
        raise InputError(f"{path}: SS head weights do not match ({state_dict_problem(e)})") from None
    return head


def train_student(cfg: Config, out: str | Path, resume: bool = False, ss_head: str | Path | None = None, *,
                  overwrite: bool = False) -> dict:
    """Stage 3: the student, by ``cfg.loss.method`` (a row of :data:`distill.methods.METHODS`)."""
    run_dir, dist, device = _setup(cfg, out, resume=resume, overwrite=overwrite)
    method = METHODS[cfg.loss.method]
    teacher = card = ckpt = None
    split_file = None
    if method.needs_teacher:
        ckpt = _teacher_checkpoint(cfg)
        teacher, card = load_checkpoint(ckpt)
        split_file = _teacher_split(ckpt, card, cfg.data.root)
        if card.input_size != cfg.data.image_size:
            print(f"note: teacher trained at {card.input_size}px, distilling at {cfg.data.image_size}px")
    data = prepare_data(cfg, cfg.student, split_file)
    if teacher is not None and teacher.num_classes != len(data.ds.classes):
        raise InputError(f"{ckpt}: teacher has {teacher.num_classes} classes, dataset has {len(data.ds.classes)}")
    if teacher is not None and (tuple(card.mean), tuple(card.std)) != (tuple(cfg.student.mean), tuple(cfg.student.std)):
        teacher = _renormalizing(teacher, card, cfg.student)
    _preflight(data, cfg.student_optim, "student_optim", dist)
    student = build_from_config(cfg.student, len(data.ds.classes), data.val)
    if method.needs_teacher:
        head = None
        if method.needs_ss_head:
            head = load_ss_head(Path(ss_head) if ss_head else _default_ss_head(ckpt), teacher.feature_dim)
        task: nn.Module = DistillTask(student, teacher, data.class_weights, cfg.loss, head)
    else:
        task = SupervisedTask(student, data.class_weights)
    result = fit(task, data.train, data.val, cfg.student_optim, run_dir,
                 evaluate=classifier_evaluator(data.class_weights, list(data.ds.classes)),
                 save_best=_checkpoint_saver(run_dir, cfg, cfg.student, data, "student"),
                 seed=cfg.seed, runtime=cfg.runtime, dist=dist, device=device,
                 num_workers=cfg.data.num_workers, resume=resume, desc=f"student {cfg.loss.method}",
                 on_start=_recorder(run_dir, cfg, data, dist, overwrite))
    return _finish(run_dir, result, data, dist, device, f"student {cfg.student.arch} ({cfg.loss.method})")


class _Renormalize(nn.Module):
    """Lets a teacher trained with other mean/std see the student's normalised input unchanged."""

    def __init__(self, src_mean, src_std, dst_mean, dst_std) -> None:
        super().__init__()
        t = lambda v: torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1)  # noqa: E731
        self.register_buffer("scale", t(src_std) / t(dst_std))
        self.register_buffer("shift", (t(src_mean) - t(dst_mean)) / t(dst_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _renormalizing(teacher: Classifier, card: ModelCard, student_mc: ModelConfig) -> Classifier:
    # x_student = (p - m_s)/s_s; the teacher wants (p - m_t)/s_t = x_student * s_s/s_t + (m_s - m_t)/s_t.
    pre = _Renormalize(student_mc.mean, student_mc.std, card.mean, card.std)
    teacher.body = nn.Sequential(pre, teacher.body)
    return teacher


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | Path, split_name: str = "test",
                        split_file: str | Path | None = None, out: str | Path | None = None) -> dict:
    """Metrics of a checkpoint on one split of its own split file (the test split only for final tables)."""
    ckpt = Path(checkpoint)
    model, card = load_checkpoint(ckpt)
    ds = load_labeled_images(data_root)
    sf = Path(split_file) if split_file else ckpt.parent / card.data.get("split_file", "split.json")
    split = load_split(sf, ds)
    records = ds.subset(split.ids(split_name))
    if not records:
        raise InputError(f"{sf}: the {split_name} split is empty; there is nothing to evaluate")
    dataset = ImageDataset(records, card.input_size, card.mean, card.std)
    logits, ys = predict_logits(model, DataLoader(dataset, batch_size=64), torch.device("cpu"))
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    pred, groups = probs.argmax(1), np.array([r.group for r in records])
    m = {"checkpoint": str(ckpt), "split": split_name, **classification_metrics(ys, probs, list(ds.classes)),
         "balanced_accuracy_ci95": balanced_accuracy_ci95(ys, pred, groups),
         # one row per image, so that two checkpoints can be compared paired (``paired_bacc_change``)
         "predictions": {"image": [r.image_id for r in records], "group": groups.tolist(),
                         "label": ys.tolist(), "pred": pred.tolist()},
         # T = 1 for a checkpoint without a fitted temperature: "fitted" says which
         "calibration": {**calibration.assess(logits, ys, card.temperature).to_json(),
                         "fitted": bool(card.calibration)}}
    if out is not None:
        atomic_write_json(Path(out), m)
    return m


def calibrate_checkpoint(checkpoint: str | Path, data_root: str | Path, split_file: str | Path | None = None,
                         out: str | Path | None = None) -> dict:
    """Fit a temperature for a trained checkpoint on the val split of its split file, without retraining: write it
    into the card of ``out`` (default: ``checkpoint`` itself, replaced atomically) and ``reliability.png`` beside."""
    ckpt = Path(checkpoint)
    model, card = load_checkpoint(ckpt)
    ds = load_labeled_images(data_root)
    sf = Path(split_file) if split_file else ckpt.parent / card.data.get("split_file", "split.json")
    dataset = ImageDataset(ds.subset(load_split(sf, ds).ids("val")), card.input_size, card.mean, card.std)
    if not len(dataset):
        raise InputError(f"{sf}: the val split is empty; a temperature needs held-out images")
    logits, ys = predict_logits(model, DataLoader(dataset, batch_size=64), torch.device("cpu"))
    dest = Path(out) if out is not None else ckpt
    return calibrate(ckpt, card, logits, ys, "val", f"{card.arch} ({card.training.get('method', '?')})", dest)
