"""The training loop shared by every stage: SGD or AdamW; plateau/multistep LR per epoch or warm-up + cosine per
step; early stopping on validation loss, atomic ``last.pt`` every epoch for exact resume, ``best.pt`` with the
model card, NaN guard, DDP.

Resume is exact because every epoch reseeds all RNGs (and the loader's shuffle generator) from
``(seed, epoch)``: an epoch replayed after a kill draws the same batches, augmentations and dropout.
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from distill.config import OptimConfig, RuntimeConfig
from distill.distributed import DistInfo, all_mean, barrier, params_in_sync
from distill.malloc import keep_freed_memory
from distill.teacher_runtime import OnnxTeacher, resolve_teacher_runtime
from models.atomic import atomic_save, atomic_write_text
from models.checkpoint import load_tensors, state_dict_problem
from models.errors import InputError, warn, worker_errors


class TrainingDiverged(InputError):
    """A loss term became NaN/Inf: the run stops, naming the term; files written so far are kept."""


@dataclass
class FitResult:
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    history: list[dict] = field(default_factory=list)
    ddp_sync: dict | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(rt: RuntimeConfig) -> torch.device:
    if rt.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if rt.device == "cuda" and not torch.cuda.is_available():
        raise InputError("runtime.device=cuda but no CUDA device is available")
    return torch.device(rt.device)


def autocast(device: torch.device, rt: RuntimeConfig):
    """bf16 autocast on CUDA when enabled; plain fp32 on CPU (CPU autocast is slower for these nets)."""
    if device.type == "cuda" and rt.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def place_task(task: nn.Module, device: torch.device, rt: RuntimeConfig) -> None:
    """Move ``task`` and its frozen teacher to ``device``, channels_last when enabled; on CPU, tune the allocator
    and (``rt.teacher_runtime``) run the frozen teacher through onnxruntime.

    channels_last pays on CPU as well as CUDA: oneDNN's NHWC kernels avoid the layout reorders that its NCHW path
    inserts around every convolution.
    """
    teacher_runtime = resolve_teacher_runtime(rt.teacher_runtime, device)
    if device.type == "cpu" and rt.keep_freed_memory:
        keep_freed_memory()
    fmt = {"memory_format": torch.channels_last} if rt.channels_last else {}
    task.to(device, **fmt)
    if hasattr(task, "frozen"):
        task.frozen.to(device, **fmt)
        if teacher_runtime == "onnxruntime" and not isinstance(task.frozen.teacher, OnnxTeacher):
            task.frozen.teacher = _onnx_teacher(task.frozen.teacher, explicit=rt.teacher_runtime == "onnxruntime")


def _onnx_teacher(teacher: nn.Module, explicit: bool) -> nn.Module | OnnxTeacher:
    """The teacher on onnxruntime; if it cannot be exported (a user's architecture), PyTorch keeps it under
    ``auto`` with a warning, and an explicit ``onnxruntime`` choice is a clear error."""
    try:
        return OnnxTeacher(teacher, torch.get_num_threads())
    except Exception as e:  # noqa: BLE001 - any exporter/runtime failure means: run the teacher in PyTorch
        reason = f"{type(e).__name__}: {next(iter(str(e).strip().splitlines()), 'no message')}"
        if explicit:
            raise InputError(f"runtime.teacher_runtime=onnxruntime: the teacher could not run on onnxruntime "
                             f"({reason}); set runtime.teacher_runtime=torch") from None
        warnings.warn(f"the frozen teacher stays in PyTorch: onnxruntime could not run it ({reason})", stacklevel=2)
        return teacher


Params = Iterable[torch.nn.Parameter]
Scheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau

_OPTIMIZERS: dict[str, Callable[[Params, OptimConfig], torch.optim.Optimizer]] = {
    "sgd": lambda params, o: torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay),
    "adamw": lambda params, o: torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay),
}


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_factor: float) -> float:
    """LR multiplier for optimizer step ``step`` (0-based): linear warm-up to 1, then cosine down to ``min_factor``.

    Warm-up step s uses ``(s + 1) / warmup_steps`` rather than ``s / warmup_steps`` so no step is spent at LR 0 and the
    last warm-up step reaches the full LR; the decay then runs over the remaining steps, ending at ``min_factor``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _warmup_cosine(opt: torch.optim.Optimizer, o: OptimConfig, steps_per_epoch: int) -> Scheduler:
    total = o.epochs * steps_per_epoch
    warmup = min(total, round(o.warmup_epochs * steps_per_epoch))
    # A closure, not a callable object: LambdaLR saves a callable object's attributes in its state dict and restores
    # them on resume, which would pin the schedule to the first run's epochs; this way the config decides.

    def factor(step: int) -> float:
        return warmup_cosine_factor(step, warmup, total, o.min_lr / o.lr)

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@dataclass(frozen=True)
class _SchedulerKind:
    build: Callable[[torch.optim.Optimizer, OptimConfig, int], Scheduler]  # (optimizer, config, steps per epoch)
    per_step: bool  # stepped after every optimizer step, else once per epoch after validation
    epoch_step: Callable[[Scheduler, float], None] = lambda s, val_loss: s.step()


_SCHEDULERS: dict[str, _SchedulerKind] = {
    "plateau": _SchedulerKind(
        lambda opt, o, _: torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=o.plateau_factor, patience=o.plateau_patience, min_lr=o.min_lr),
        per_step=False, epoch_step=lambda s, val_loss: s.step(val_loss)),
    "multistep": _SchedulerKind(
        lambda opt, o, _: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(o.milestones), gamma=0.1),
        per_step=False),
    "cosine": _SchedulerKind(_warmup_cosine, per_step=True),
}


class LRSchedule:
    """A scheduler and when it steps: :meth:`after_step` every optimizer step, :meth:`after_epoch` after
    validation; each is a no-op for the other kind. Its state is the scheduler's (saved in ``last.pt``)."""

    def __init__(self, scheduler: Scheduler, kind: _SchedulerKind) -> None:
        self.scheduler, self._kind = scheduler, kind

    def after_step(self) -> None:
        if self._kind.per_step:
            self.scheduler.step()

    def after_epoch(self, val_loss: float) -> None:
        if not self._kind.per_step:
            self._kind.epoch_step(self.scheduler, val_loss)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def make_optimizer(params: Params, o: OptimConfig,
                   steps_per_epoch: int = 1) -> tuple[torch.optim.Optimizer, LRSchedule]:
    """``o.optimizer`` and ``o.scheduler`` from their tables; ``steps_per_epoch`` sizes per-step schedules."""
    opt = _OPTIMIZERS[o.optimizer](params, o)
    kind = _SCHEDULERS[o.scheduler]
    return opt, LRSchedule(kind.build(opt, o, steps_per_epoch), kind)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2])}


@dataclass(frozen=True)
class _Loop:
    """What stays fixed through one :func:`fit`: its arguments, and the optimizer with its schedule."""

    task: nn.Module
    train_set: Dataset
    val_set: Dataset
    optim: OptimConfig
    run_dir: Path
    evaluate: Callable[[nn.Module, DataLoader, torch.device], dict]
    save_best: Callable[[nn.Module, dict, int], None]
    seed: int
    runtime: RuntimeConfig
    dist: DistInfo
    device: torch.device
    num_workers: int
    desc: str
    opt: torch.optim.Optimizer
    sched: LRSchedule


@dataclass
class _Progress:
    """Where a run stands after its last finished epoch: what ``last.pt`` records and ``--resume`` restores."""

    next_epoch: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = -1  # 0-based; -1 until the first validation
    bad_epochs: int = 0  # epochs since the best one
    history: list[dict] = field(default_factory=list)

    def patience_spent(self, early_stop: int) -> bool:
        """``early_stop`` epochs in a row without a better validation loss (0: never)."""
        return self.best_epoch >= 0 and early_stop > 0 and self.bad_epochs >= early_stop

    def record(self, epoch: int, val_loss: float) -> bool:
        """Count a validated epoch; True when its loss is the best so far."""
        self.next_epoch = epoch + 1
        improved = val_loss < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
        else:
            self.bad_epochs += 1
        return improved


def fit(
    task: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    optim: OptimConfig,
    run_dir: Path,
    *,
    evaluate: Callable[[nn.Module, DataLoader, torch.device], dict],
    save_best: Callable[[nn.Module, dict, int], None],
    seed: int,
    runtime: RuntimeConfig,
    dist: DistInfo,
    device: torch.device,
    num_workers: int = 0,
    resume: bool = False,
    desc: str = "train",
    on_start: Callable[[], None] | None = None,
) -> FitResult:
    """Train ``task`` (``forward(x, y) -> {term: loss, "total": loss}``).

    ``evaluate(task, loader, device)`` returns at least ``{"val_loss": float}`` (lower is better, used for
    the scheduler, early stopping and best selection); ``save_best(task, val_metrics, epoch)`` writes the
    best checkpoint. Only rank 0 writes files. ``on_start()`` runs once everything, ``last.pt`` included, has
    been checked, just before the first epoch: the caller's first writes into ``run_dir`` go there.
    """
    place_task(task, device, runtime)
    params = [p for p in task.parameters() if p.requires_grad]
    # The loader's length (per rank, after drop_last) is the same every epoch; only its shuffle seed changes.
    steps_per_epoch = len(_train_loader(train_set, optim.batch_size, seed, dist, num_workers, 0))
    opt, sched = make_optimizer(params, optim, steps_per_epoch)
    loop = _Loop(task, train_set, val_set, optim, run_dir, evaluate, save_best, seed, runtime, dist, device,
                 num_workers, desc, opt, sched)
    progress = _restore(loop, resume=resume)
    if on_start is not None:
        on_start()
    model = DistributedDataParallel(task) if dist.enabled else task
    stopped_early = False
    for epoch in range(progress.next_epoch, optim.epochs):
        if progress.patience_spent(optim.early_stop):
            stopped_early = True
            break
        terms, train_seconds = _train_reseeded(loop, model, epoch)
        val = _validate(loop, epoch)
        _end_epoch(loop, progress, epoch, terms, train_seconds, val)
    sync = params_in_sync(task, dist) if dist.enabled else None
    return FitResult(progress.best_epoch + 1, progress.best_val_loss, progress.next_epoch, stopped_early,
                     progress.history, sync)


def _restore(loop: _Loop, *, resume: bool) -> _Progress:
    """With ``resume`` and a ``last.pt``, the progress it records, its states loaded into the task, optimizer and
    schedule; otherwise a first epoch's."""
    last = loop.run_dir / "last.pt"
    if not (resume and last.is_file()):
        if resume and loop.dist.is_main:
            warn(f"--resume: {last} not found, so {loop.desc} starts from the first epoch")
        return _Progress()
    state = _load_resume_state(last, loop.task, loop.opt, loop.sched)
    start = state["epoch"] + 1
    progress = _Progress(start, state["best_val_loss"], state["best_epoch"], state["bad_epochs"],
                         _read_history(loop.run_dir / "history.csv")[:start])
    if loop.dist.is_main:
        print(f"resuming {loop.desc} from epoch {start} (best val loss {progress.best_val_loss:.4f} at epoch "
              f"{progress.best_epoch})")
    return progress


def _train_reseeded(loop: _Loop, model: nn.Module, epoch: int) -> tuple[dict[str, float], float]:
    """One epoch of training with every RNG and the shuffle seeded from ``(seed, epoch)``, so that an epoch replayed
    after a kill draws the same batches; the epoch's mean loss terms and its seconds."""
    epoch_seed = loop.seed * 1000 + epoch
    seed_everything(epoch_seed)
    loader = _train_loader(loop.train_set, loop.optim.batch_size, epoch_seed, loop.dist, loop.num_workers, epoch)
    t0 = time.perf_counter()
    with worker_errors():
        terms = _train_epoch(model, loader, loop.opt, loop.sched, loop.device, loop.runtime, loop.dist,
                             f"{loop.desc} {epoch + 1}/{loop.optim.epochs}")
    return terms, time.perf_counter() - t0


def _validate(loop: _Loop, epoch: int) -> dict:
    """``evaluate`` on the validation split in eval mode; a non-finite loss stops the run before ``last.pt`` is
    replaced."""
    loader = DataLoader(loop.val_set, batch_size=loop.optim.batch_size, shuffle=False, num_workers=loop.num_workers)
    loop.task.eval()
    with torch.no_grad(), autocast(loop.device, loop.runtime), worker_errors():
        val = loop.evaluate(loop.task, loader, loop.device)
    if not math.isfinite(val["val_loss"]):
        raise TrainingDiverged(
            f"validation loss became {val['val_loss']} at epoch {epoch + 1}; last.pt keeps epoch {epoch}"
        )
    return val


def _end_epoch(loop: _Loop, progress: _Progress, epoch: int, terms: dict[str, float], train_seconds: float,
               val: dict) -> None:
    """After validation: step an epoch schedule, keep the best (``save_best``), add the history row and, on rank 0,
    write ``history.csv`` and ``last.pt`` and log the epoch."""
    loop.sched.after_epoch(val["val_loss"])
    improved = progress.record(epoch, val["val_loss"])
    if improved and loop.dist.is_main:
        loop.save_best(loop.task, val, epoch)
    progress.history.append({
        "epoch": epoch + 1, "lr": loop.opt.param_groups[0]["lr"], "train_loss": terms["total"],
        **{f"train_{k}": v for k, v in terms.items() if k != "total"},
        **{k if k.startswith("val_") else f"val_{k}": v for k, v in val.items() if isinstance(v, float | int)},
        "images_per_s": len(loop.train_set) / train_seconds, "best": improved,
    })
    if loop.dist.is_main:
        _save_progress(loop, progress, epoch)
        tqdm.write(f"{loop.desc} epoch {epoch + 1}: train {terms['total']:.4f}  val loss {val['val_loss']:.4f}  "
                   + "  ".join(f"{k} {v:.3f}" for k, v in val.items() if k in ("accuracy", "balanced_accuracy"))
                   + ("  *" if improved else ""))
    barrier(loop.dist)


def _save_progress(loop: _Loop, progress: _Progress, epoch: int) -> None:
    """``history.csv``, then ``last.pt``, each replaced atomically: a kill at any moment leaves a state that
    ``--resume`` continues from (history rows past ``last.pt``'s epoch are dropped on resume)."""
    _write_history(loop.run_dir / "history.csv", progress.history)
    state = {"task": loop.task.state_dict(), "optimizer": loop.opt.state_dict(), "scheduler": loop.sched.state_dict(),
             "epoch": epoch, "best_val_loss": progress.best_val_loss, "best_epoch": progress.best_epoch,
             "bad_epochs": progress.bad_epochs, "rng": _rng_state()}
    atomic_save(loop.run_dir / "last.pt", lambda tmp: torch.save(state, tmp))


RESUME_KEYS = ("task", "optimizer", "scheduler", "epoch", "best_val_loss", "best_epoch", "bad_epochs")


def _load_resume_state(last: Path, task: nn.Module, opt: torch.optim.Optimizer, sched: LRSchedule) -> dict:
    """``last.pt`` loaded into ``task``, ``opt`` and ``sched``. A file that is corrupt, refused (pickled objects) or
    written by another run (other model, optimizer or schedule) is a one-line error, raised before anything is
    written."""
    state = load_tensors(last, "a training state to resume")
    missing = [k for k in RESUME_KEYS if k not in state] if isinstance(state, dict) else list(RESUME_KEYS)
    if missing:
        raise InputError(f"{last}: not a training state to resume (missing {', '.join(missing)})")
    try:
        task.load_state_dict(state["task"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{last}: written by a run with another model, optimizer or schedule "
                         f"({state_dict_problem(e)}); resume with that run's config, or pass --overwrite to start "
                         f"again") from None
    return state


def _train_loader(ds: Dataset, batch_size: int, seed: int, dist: DistInfo, num_workers: int,
                  epoch: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    if dist.enabled:
        sampler = DistributedSampler(ds, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=seed,
                                     drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True,
                          generator=g, persistent_workers=False)
    # drop_last: a final batch of 1 breaks BatchNorm and the relational terms.
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=num_workers, drop_last=len(ds) > batch_size,
                      generator=g)


def _train_epoch(model: nn.Module, loader: DataLoader, opt: torch.optim.Optimizer, sched: LRSchedule,
                 device: torch.device, runtime: RuntimeConfig, dist: DistInfo, desc: str) -> dict[str, float]:
    model.train()
    sums: dict[str, float] = {}
    n = 0
    t0 = time.perf_counter()
    # closed on any exit, so that a Ctrl-C or SIGTERM message is not followed by the bar redrawn at shutdown
    with tqdm(loader, desc=desc, unit="batch", leave=False, disable=not dist.is_main, dynamic_ncols=True) as bar:
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if runtime.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, runtime):
                terms = model(x, y)
            for k, v in terms.items():
                if not torch.isfinite(v.detach()).all():
                    raise TrainingDiverged(f"loss term {k!r} became {v.item()} ({desc}, batch {n + 1}); "
                                           f"the run stopped, last.pt keeps the previous epoch")
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt.step()
            sched.after_step()
            n += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{sums['total'] / n:.3f}", img_s=f"{n * x.shape[0] / (time.perf_counter() - t0):.0f}")
    if n == 0:
        raise InputError("the training split is smaller than one batch; lower the batch size")
    return {k: all_mean(v / n, dist) for k, v in sums.items()}


def _write_history(path: Path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    atomic_write_text(path, buf.getvalue())


def _read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out.append({k: _num(v) for k, v in row.items()})
    return out


def _num(v: str):
    if v in ("True", "False"):
        return v == "True"
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v
