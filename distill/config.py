"""Typed, frozen configuration loaded from YAML with ``--set key=value`` overlays.

Unknown keys and ill-typed values are errors naming the key (a silently ignored typo costs a 150-epoch run).
The resolved config is saved beside every run as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distill.data.transforms import AUGMENTATIONS
from distill.losses import DKDWeights, KDWeights, RKDWeights, SSDKDWeights
from distill.methods import method_named
from distill.teacher_runtime import check_teacher_runtime
from models.errors import InputError

# The names distill.engine's builder tables accept (engine imports this module, so the names live here and a test
# checks the tables match).
OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("plateau", "multistep", "cosine")


@dataclass(frozen=True)
class DataConfig:
    root: str | None = None
    image_size: int = 224
    split_seed: int = 2021
    val_frac: float = 0.15
    test_frac: float = 0.15
    split_file: str | None = None  # reuse an existing split (e.g. the teacher's) instead of making one
    include_unk: bool = False
    num_workers: int = 2
    max_train_images: int | None = None  # for smoke tests: a class-stratified cap on the train split
    augment: str = "official"  # official | dihedral (see distill.data.transforms.AUGMENTATIONS)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "mobilenet_v2"
    width: float | None = None
    weights: str | None = None  # None | "imagenet" | path to a torchvision state dict
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    checkpoint: str | None = None  # a trained ssdkd checkpoint (the teacher, for ss-head/student)
    bn_reestimate_images: int = 256  # for weights whose BatchNorm was folded (see models.pretrained)


@dataclass(frozen=True)
class OptimConfig:
    epochs: int = 150
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "sgd"  # sgd | adamw (adamw: decoupled weight_decay, betas (0.9, 0.999); momentum unused)
    momentum: float = 0.9
    weight_decay: float = 1e-3
    scheduler: str = "plateau"  # plateau | multistep (per epoch) | cosine (per optimizer step, to min_lr)
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    min_lr: float = 1e-6
    milestones: tuple[int, ...] = ()
    warmup_epochs: float = 0.0  # cosine only: linear warm-up to lr over this many epochs, counted in steps
    early_stop: int = 15  # epochs without val-loss improvement; 0 disables


@dataclass(frozen=True)
class LossConfig:
    method: str = "ssd-kd"  # a name in distill.methods.METHODS; its row's config_key names its weights' section
    ssd_kd: SSDKDWeights = field(default_factory=SSDKDWeights)
    d_kd: DKDWeights = field(default_factory=DKDWeights)
    kd: KDWeights = field(default_factory=KDWeights)
    rkd: RKDWeights = field(default_factory=RKDWeights)
    # The CE class weights are (N / N_c) ** class_weight_power in every stage: 1 is the official recipe, whose weights
    # reach ~88 for DF on HAM10000; 0.5 softens them to their square root.
    class_weight_power: float = 1.0

    def weights(self) -> Any:
        """The weights dataclass of ``method`` (None for a method without weights)."""
        key = method_named(self.method).config_key
        return None if key is None else getattr(self, key)


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast, CUDA only
    channels_last: bool = True  # NHWC activations (faster on CUDA and on CPU's oneDNN)
    deterministic: bool = False
    keep_freed_memory: bool = True  # CPU: glibc reuses freed activations instead of page-faulting them (distill.malloc)
    threads: int | None = None  # torch intra-op threads on CPU
    teacher_runtime: str = "auto"  # auto | torch | onnxruntime: the frozen teacher's forward (auto: onnxruntime on CPU)


@dataclass(frozen=True)
class Config:
    seed: int = 2021
    data: DataConfig = field(default_factory=DataConfig)
    teacher: ModelConfig = field(default_factory=lambda: ModelConfig(arch="resnet50"))
    student: ModelConfig = field(default_factory=ModelConfig)
    teacher_optim: OptimConfig = field(default_factory=lambda: OptimConfig(batch_size=128))
    ss_head_optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(epochs=60, scheduler="multistep", milestones=(30, 45), early_stop=0)
    )
    student_optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def validate(self) -> Config:
        method_named(self.loss.method)  # an unknown name is the one-line error
        check_teacher_runtime(self.runtime.teacher_runtime)
        if self.data.image_size < 32:
            raise InputError(f"data.image_size must be >= 32, got {self.data.image_size}")
        _check_choice("data.augment", self.data.augment, tuple(AUGMENTATIONS))
        if not 0 <= self.loss.class_weight_power <= 1:
            raise InputError(f"loss.class_weight_power must be in [0, 1], got {self.loss.class_weight_power}")
        for name in ("teacher_optim", "ss_head_optim", "student_optim"):
            o: OptimConfig = getattr(self, name)
            for key, (ok, wanted) in _OPTIM_BOUNDS.items():
                if not ok(getattr(o, key)):
                    raise InputError(f"{name}.{key} must be {wanted}, got {getattr(o, key)!r}")
            for key, allowed in _OPTIM_CHOICES.items():
                _check_choice(f"{name}.{key}", getattr(o, key), allowed)
            if not 0 <= o.warmup_epochs <= o.epochs:
                raise InputError(f"{name}.warmup_epochs must be in [0, epochs={o.epochs}], got {o.warmup_epochs}")
            # A warm-up the epoch schedulers would silently ignore is a typo'd run, not a choice.
            if o.warmup_epochs and o.scheduler != "cosine":
                raise InputError(f"{name}.warmup_epochs needs {name}.scheduler=cosine, got {o.scheduler!r}")
            if o.scheduler == "cosine" and not 0 <= o.min_lr <= o.lr:
                raise InputError(f"{name}.min_lr must be in [0, lr={o.lr}] for the cosine decay, got {o.min_lr}")
        return self


_OPTIM_CHOICES: dict[str, tuple[str, ...]] = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}
_OPTIM_BOUNDS: dict[str, tuple[typing.Callable[[float], bool], str]] = {  # key -> (test, what it must be)
    "epochs": (lambda v: v >= 1, ">= 1"), "batch_size": (lambda v: v >= 2, ">= 2"),
    "lr": (lambda v: 0 < v < math.inf, "a finite number > 0"),
    "weight_decay": (lambda v: 0 <= v < math.inf, "a finite number >= 0"),
}


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")


def to_dict(cfg: Any) -> Any:
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, tuple):
        return list(cfg)
    return cfg


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except InputError as e:
                errors.append(str(e))
        raise InputError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0]
        if len(args) != 2 or args[1] is not Ellipsis:
            if len(value) != len(args):
                raise InputError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InputError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise InputError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise InputError(f"{key}: expected a string, got {value!r}")
    return value


def from_dict(cls: type, d: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise InputError(f"unknown config key {where}{unknown[0]!r}; valid keys: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(hints[k], v, f"{prefix}.{k}" if prefix else k) for k, v in d.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:  # weight dataclasses validate themselves
        raise InputError(f"{prefix or cls.__name__}: {e}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=3", "loss.method=kd"]`` -> nested dict; values parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--set {item!r}: expected key=value (e.g. student_optim.epochs=5)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Defaults <- YAML file <- overrides; validated."""
    d: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise InputError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            raise InputError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(d, dict):
            raise InputError(f"{path}: expected a mapping at the top level")
    if overrides:
        d = _merge(d, parse_overrides(overrides) if isinstance(overrides, list) else overrides)
    return from_dict(Config, d).validate()


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
