"""The three stages the CLI runs -- ``teacher``, ``ss-head``, ``student`` -- plus ``evaluate``.

Each stage writes into its run dir: ``config.yaml`` (resolved), ``split.json``, ``history.csv``,
``last.pt`` (resume), ``best.pt`` (model card inside), ``metrics.json`` and PNG figures.
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

from distill.config import Config, ModelConfig, dump_config, to_dict
from distill.data import ImageDataset, LabeledImages, load_labeled_images, load_split, resolve_split, save_split
from distill.data.split import Split
from distill.distributed import DistInfo, init_distributed
from distill.engine import FitResult, fit, resolve_device, seed_everything
from distill.heads import SSHead
from distill.losses import class_weights_from_counts, weighted_cross_entropy
from distill.metrics import classification_metrics
from distill.plots import plot_confusion, plot_learning_curves
from distill.tasks import DistillTask, SSHeadTask, SupervisedTask
from models import ModelCard, build_model, load_checkpoint, save_checkpoint
from models.atomic import atomic_save, atomic_write_json, atomic_write_text, ensure_writable_dir
from models.errors import InputError
from models.net import Classifier
from models.pretrained import is_folded_batchnorm, reestimate_folded_batchnorm

LICENCE_NOTE = ("Weights trained on CC BY-NC 4.0 data (HAM10000 / ISIC Archive): non-commercial use only. "
                "Research use; not a medical device.")


@dataclass
class StageData:
    ds: LabeledImages
    split: Split
    train: ImageDataset
    val: ImageDataset
    class_weights: torch.Tensor


def prepare_data(cfg: Config, run_dir: Path, model_cfg: ModelConfig, dist: DistInfo,
                 split_file: str | Path | None = None) -> StageData:
    """Read the dataset, resolve the split (reuse ``split_file``/``data.split_file``, else make one) and save it."""
    if cfg.data.root is None:
        raise InputError("no dataset: pass --data ROOT (ISIC 2019 layout or class folders)")
    ds = load_labeled_images(cfg.data.root, include_unk=cfg.data.include_unk)
    given = cfg.data.split_file or split_file
    if given is not None and not Path(given).is_file():
        raise InputError(f"{given}: split file not found")
    split = resolve_split(ds, given, cfg.data.split_seed, cfg.data.val_frac, cfg.data.test_frac)
    if dist.is_main:
        save_split(run_dir / "split.json", split, ds)
    train_records = ds.subset(split.train)
    if cfg.data.max_train_images and len(train_records) > cfg.data.max_train_images:
        rng = np.random.default_rng(cfg.data.split_seed)
        keep = sorted(rng.choice(len(train_records), cfg.data.max_train_images, replace=False))
        train_records = [train_records[i] for i in keep]
    counts = [sum(r.label == c for r in train_records) for c in range(len(ds.classes))]
    try:
        weights = class_weights_from_counts(counts)
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
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and labels over a loader (model in eval mode)."""
    model.eval()
    probs, ys = [], []
    for x, y in loader:
        probs.append(torch.softmax(model(x.to(device)).float(), dim=1).cpu())
        ys.append(y)
    return torch.cat(probs).numpy(), torch.cat(ys).numpy()


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


def _setup(cfg: Config, out: str | Path) -> tuple[Path, DistInfo, torch.device]:
    device = resolve_device(cfg.runtime)
    dist = init_distributed(device.type)
    run_dir = ensure_writable_dir(out)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    seed_everything(cfg.seed)
    if dist.is_main:
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    return run_dir, dist, device


def _finish(run_dir: Path, result: FitResult, data: StageData, dist: DistInfo,
            device: torch.device, title: str) -> dict:
    """Reload best.pt, write metrics.json and figures (rank 0)."""
    if not dist.is_main:
        return {}
    model, card = load_checkpoint(run_dir / "best.pt")
    loader = DataLoader(data.val, batch_size=64, shuffle=False)
    probs, ys = predict(model.to(device), loader, device)
    m = classification_metrics(ys, probs, list(data.ds.classes))
    metrics = {"split": "val", "best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
               "epochs_run": result.epochs_run, "stopped_early": result.stopped_early, **m}
    if result.ddp_sync is not None:
        metrics["ddp_sync"] = result.ddp_sync
    atomic_write_json(run_dir / "metrics.json", metrics)
    plot_confusion(m["confusion_matrix"], m["labels"], run_dir / "confusion_matrix.png", f"{title} (val)")
    plot_learning_curves(result.history, run_dir / "learning_curve.png", title)
    print(f"{title}: best epoch {result.best_epoch}, val accuracy {m['accuracy']:.3f}, "
          f"balanced accuracy {m['balanced_accuracy']:.3f}, macro AUC {m['macro_auc']:.3f} -> {run_dir}/best.pt")
    return metrics


def _checkpoint_saver(run_dir: Path, cfg: Config, mc: ModelConfig, data: StageData, stage: str):
    def save(task: nn.Module, val: dict, epoch: int) -> None:
        metrics = {k: v for k, v in val.items() if not k.startswith("_")} | {"epoch": epoch + 1, "split": "val"}
        save_checkpoint(run_dir / "best.pt", task.classifier, make_card(cfg, mc, data, stage, metrics))

    return save


def train_teacher(cfg: Config, out: str | Path, resume: bool = False) -> dict:
    """Stage 1: supervised teacher (class-weighted CE), best by validation loss."""
    run_dir, dist, device = _setup(cfg, out)
    data = prepare_data(cfg, run_dir, cfg.teacher, dist)
    model = build_from_config(cfg.teacher, len(data.ds.classes), data.val)
    task = SupervisedTask(model, data.class_weights)
    result = fit(task, data.train, data.val, cfg.teacher_optim, run_dir,
                 evaluate=classifier_evaluator(data.class_weights, list(data.ds.classes)),
                 save_best=_checkpoint_saver(run_dir, cfg, cfg.teacher, data, "teacher"),
                 seed=cfg.seed, runtime=cfg.runtime, dist=dist, device=device,
                 num_workers=cfg.data.num_workers, resume=resume, desc="teacher")
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


def train_ss_head(cfg: Config, out: str | Path, resume: bool = False) -> dict:
    """Stage 2: the teacher's self-supervision head, backbone frozen (official: 60 epochs, MultiStep 30/45)."""
    run_dir, dist, device = _setup(cfg, out)
    ckpt = _teacher_checkpoint(cfg)
    teacher, card = load_checkpoint(ckpt)
    tcfg = replace(cfg, data=replace(cfg.data, image_size=card.input_size))
    mc = replace(cfg.teacher, mean=tuple(card.mean), std=tuple(card.std))
    data = prepare_data(tcfg, run_dir, mc, dist, _teacher_split(ckpt, card, cfg.data.root))
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
                 resume=resume, desc="ss-head")
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
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if int(payload["feature_dim"]) != feature_dim:
        raise InputError(f"{path}: SS head is for a {int(payload['feature_dim'])}-d teacher, not {feature_dim}-d")
    head = SSHead(feature_dim)
    head.load_state_dict(payload["ss_head"])
    return head


def train_student(cfg: Config, out: str | Path, resume: bool = False, ss_head: str | Path | None = None) -> dict:
    """Stage 3: the student, by ``cfg.loss.method`` (ssd-kd, d-kd, kd, rkd or scratch)."""
    run_dir, dist, device = _setup(cfg, out)
    teacher = card = ckpt = None
    split_file = None
    if cfg.loss.method != "scratch":
        ckpt = _teacher_checkpoint(cfg)
        teacher, card = load_checkpoint(ckpt)
        split_file = _teacher_split(ckpt, card, cfg.data.root)
        if card.input_size != cfg.data.image_size:
            print(f"note: teacher trained at {card.input_size}px, distilling at {cfg.data.image_size}px")
    data = prepare_data(cfg, run_dir, cfg.student, dist, split_file)
    if teacher is not None and teacher.num_classes != len(data.ds.classes):
        raise InputError(f"{ckpt}: teacher has {teacher.num_classes} classes, dataset has {len(data.ds.classes)}")
    if teacher is not None and (tuple(card.mean), tuple(card.std)) != (tuple(cfg.student.mean), tuple(cfg.student.std)):
        teacher = _renormalizing(teacher, card, cfg.student)
    student = build_from_config(cfg.student, len(data.ds.classes), data.val)
    if cfg.loss.method == "scratch":
        task: nn.Module = SupervisedTask(student, data.class_weights)
    else:
        head = None
        if cfg.loss.method == "ssd-kd":
            head = load_ss_head(Path(ss_head) if ss_head else _default_ss_head(ckpt), teacher.feature_dim)
        task = DistillTask(student, teacher, data.class_weights, cfg.loss, head)
    result = fit(task, data.train, data.val, cfg.student_optim, run_dir,
                 evaluate=classifier_evaluator(data.class_weights, list(data.ds.classes)),
                 save_best=_checkpoint_saver(run_dir, cfg, cfg.student, data, "student"),
                 seed=cfg.seed, runtime=cfg.runtime, dist=dist, device=device,
                 num_workers=cfg.data.num_workers, resume=resume, desc=f"student {cfg.loss.method}")
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
    dataset = ImageDataset(ds.subset(split.ids(split_name)), card.input_size, card.mean, card.std)
    probs, ys = predict(model, DataLoader(dataset, batch_size=64), torch.device("cpu"))
    m = {"checkpoint": str(ckpt), "split": split_name, **classification_metrics(ys, probs, list(ds.classes))}
    if out is not None:
        atomic_write_json(Path(out), m)
    return m
