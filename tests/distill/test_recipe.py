"""The table-driven fine-tuning recipe: optimizer/scheduler/augmentation choices, warm-up + cosine LR per step,
and exact resume of a per-step schedule. Tiny models and synthetic tensors: seconds in all."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from distill import engine
from distill.cli import main as distill_main
from distill.config import OPTIMIZERS, SCHEDULERS, OptimConfig, RuntimeConfig, load_config
from distill.data import ImageDataset, load_labeled_images
from distill.data.transforms import AUGMENTATIONS, RandomDihedral, official_augment, train_augment
from distill.distributed import DistInfo

REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- config


def test_defaults_keep_the_official_recipe() -> None:
    cfg = load_config()
    for o in (cfg.teacher_optim, cfg.ss_head_optim, cfg.student_optim):
        assert o.optimizer == "sgd" and o.warmup_epochs == 0.0
    assert cfg.student_optim.scheduler == "plateau" and cfg.data.augment == "official"


@pytest.mark.parametrize("name", ["cpu_demo.yaml", "ham_zoo.yaml", "paper_isic2019.yaml"])
def test_committed_configs_build_the_optimizer_and_schedule_they_name(name: str) -> None:
    cfg = load_config(REPO / "configs" / name)
    for o in (cfg.teacher_optim, cfg.ss_head_optim, cfg.student_optim):
        opt, sched = engine.make_optimizer([nn.Parameter(torch.zeros(1))], o, steps_per_epoch=7)
        assert type(opt) is {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[o.optimizer]
        if o.optimizer == "sgd":
            assert opt.param_groups[0]["momentum"] == o.momentum
        expected = {"plateau": torch.optim.lr_scheduler.ReduceLROnPlateau,
                    "multistep": torch.optim.lr_scheduler.MultiStepLR,
                    "cosine": torch.optim.lr_scheduler.LambdaLR}[o.scheduler]
        assert type(sched.scheduler) is expected


def test_the_paper_recipe_stays_sgd() -> None:
    cfg = load_config(REPO / "configs" / "paper_isic2019.yaml")
    assert {o.optimizer for o in (cfg.teacher_optim, cfg.ss_head_optim, cfg.student_optim)} == {"sgd"}


def test_new_keys_parse() -> None:
    cfg = load_config(REPO / "configs" / "cpu_demo.yaml", [
        "student_optim.optimizer=adamw", "student_optim.scheduler=cosine", "student_optim.warmup_epochs=0.5",
        "student_optim.min_lr=0", "data.augment=dihedral"])
    o = cfg.student_optim
    assert (o.optimizer, o.scheduler, o.warmup_epochs, o.min_lr) == ("adamw", "cosine", 0.5, 0.0)
    assert cfg.data.augment == "dihedral" and cfg.teacher_optim.optimizer == "sgd"


def test_engine_tables_cover_exactly_the_config_names() -> None:
    assert set(engine._OPTIMIZERS) == set(OPTIMIZERS)
    assert set(engine._SCHEDULERS) == set(SCHEDULERS)


@pytest.mark.parametrize("override,match", [
    ("student_optim.optimizer=adam", "student_optim.optimizer must be one of sgd, adamw, got 'adam'"),
    ("teacher_optim.scheduler=step", "teacher_optim.scheduler must be one of plateau, multistep, cosine, got 'step'"),
    ("data.augment=flips", "data.augment must be one of official, dihedral, got 'flips'"),
    ("student_optim.warmup_epochs=1", "student_optim.warmup_epochs needs student_optim.scheduler=cosine"),
    ("student_optim.warmup_epochs=fast", "student_optim.warmup_epochs: expected a number"),
    ("student_optim.optimizer=1", "student_optim.optimizer: expected a string"),
    ("loss.class_weight_power=2", "loss.class_weight_power must be in [0, 1], got 2"),
])
def test_bad_recipe_values_are_one_line_errors(override: str, match: str, sample_root, tmp_path, capsys) -> None:
    rc = distill_main(["student", "--data", str(sample_root), "--out", str(tmp_path), "--set", override])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and err.count("\n") == 1, err


@pytest.mark.parametrize("extra,match", [
    (["student_optim.warmup_epochs=-1"], r"warmup_epochs must be in \[0, epochs=150\], got -1.0"),
    (["student_optim.epochs=2", "student_optim.warmup_epochs=3"], r"warmup_epochs must be in \[0, epochs=2\]"),
    (["student_optim.lr=0.001", "student_optim.min_lr=0.01"], r"student_optim.min_lr must be in \[0, lr=0.001\]"),
])
def test_cosine_ranges_are_checked(extra: list[str], match: str) -> None:
    from models.errors import InputError

    with pytest.raises(InputError, match=match):
        load_config(overrides=["student_optim.scheduler=cosine", *extra])


# ---------------------------------------------------------------- LR schedules


def _lrs_per_step(o: OptimConfig, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, list[float]]:
    """The LR each optimizer step of a whole run uses, stepping the schedule as fit() does."""
    opt, sched = engine.make_optimizer([nn.Parameter(torch.zeros(2))], o, steps_per_epoch)
    lrs = []
    for _ in range(o.epochs):
        for _ in range(steps_per_epoch):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.after_step()
        sched.after_epoch(1.0)
    return opt, lrs + [opt.param_groups[0]["lr"]]


def test_adamw_cosine_warmup_lr_at_known_steps() -> None:
    o = OptimConfig(epochs=4, lr=0.1, min_lr=0.001, optimizer="adamw", scheduler="cosine", warmup_epochs=1.0,
                    weight_decay=0.05)
    opt, lrs = _lrs_per_step(o, steps_per_epoch=10)  # 40 steps: 10 warm-up, 30 cosine
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["weight_decay"] == 0.05
    expected = {0: 0.01, 4: 0.05, 9: 0.1,  # linear warm-up, full LR on the last warm-up step
                10: 0.1,  # cosine starts at the top
                25: 0.001 + 0.099 * 0.5,  # halfway through the decay
                40: 0.001}  # after the last step: min_lr
    for step, lr in expected.items():
        assert lrs[step] == pytest.approx(lr, rel=1e-9), (step, lrs[step])
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_fractional_warmup_counts_steps_and_zero_warmup_starts_at_lr() -> None:
    _, lrs = _lrs_per_step(OptimConfig(epochs=2, lr=1.0, min_lr=0.0, scheduler="cosine", warmup_epochs=0.5), 8)
    assert lrs[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    _, lrs = _lrs_per_step(OptimConfig(epochs=2, lr=1.0, min_lr=0.0, scheduler="cosine"), 8)
    assert lrs[0] == 1.0 and lrs[8] == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 16)))


def test_epoch_schedulers_ignore_optimizer_steps() -> None:
    _, lrs = _lrs_per_step(OptimConfig(epochs=3, lr=1.0, scheduler="multistep", milestones=(2,)), 4)
    assert lrs == [1.0] * 8 + [0.1] * 4 + [0.1]
    _, lrs = _lrs_per_step(OptimConfig(epochs=3, lr=1.0, plateau_patience=0, plateau_factor=0.5), 4)
    # a constant val loss improves once (on inf), then every later epoch is bad and halves the LR
    assert lrs == [1.0] * 8 + [0.5] * 4 + [0.25]


# ---------------------------------------------------------------- resume of a per-step schedule


class _TinyTask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = nn.functional.cross_entropy(self.net(x), y)
        return {"ce": loss, "total": loss}


class _Crash(Exception):
    pass


def _evaluate(task: nn.Module, loader: DataLoader, device: torch.device) -> dict:
    return {"val_loss": sum(float(task(x, y)["total"]) for x, y in loader) / len(loader)}


def _fit(run: Path, optim: OptimConfig, evaluate=_evaluate, resume: bool = False) -> engine.FitResult:
    g = torch.Generator().manual_seed(0)
    train = TensorDataset(torch.randn(40, 8, generator=g), torch.randint(0, 3, (40,), generator=g))
    val = TensorDataset(torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g))
    torch.manual_seed(1)
    task = _TinyTask()
    rt = RuntimeConfig(device="cpu", channels_last=False, keep_freed_memory=False, teacher_runtime="torch")
    return engine.fit(task, train, val, optim, run, evaluate=evaluate, save_best=lambda *a: None, seed=5,
                      runtime=rt, dist=DistInfo(), device=torch.device("cpu"), resume=resume)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_resume_mid_run_continues_the_per_step_schedule(optimizer: str, tmp_path: Path, monkeypatch) -> None:
    optim = OptimConfig(epochs=2, batch_size=8, lr=0.05, min_lr=1e-4, optimizer=optimizer, scheduler="cosine",
                        warmup_epochs=0.6, early_stop=0)  # 5 steps an epoch, 3 of warm-up
    used: list[float] = []
    after_step = engine.LRSchedule.after_step

    def record(self: engine.LRSchedule) -> None:  # the LR the optimizer step just used
        used.append(self.scheduler.optimizer.param_groups[0]["lr"])
        after_step(self)

    monkeypatch.setattr(engine.LRSchedule, "after_step", record)
    _fit(tmp_path / "full", optim)
    full = list(used)
    assert len(full) == 10 and full[2] == pytest.approx(0.05) and full[0] == pytest.approx(0.05 / 3)

    # The interrupted run dies validating epoch 2 (after its steps, before last.pt): last.pt keeps epoch 1.
    calls = []

    def crash_on_second(task, loader, device):
        calls.append(1)
        if len(calls) == 2:
            raise _Crash
        return _evaluate(task, loader, device)

    used.clear()
    with pytest.raises(_Crash):
        _fit(tmp_path / "cut", optim, evaluate=crash_on_second)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 0
    used.clear()
    result = _fit(tmp_path / "cut", optim, resume=True)
    assert result.epochs_run == 2 and used == full[5:], (used, full)

    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    for k in a["task"]:
        assert torch.equal(a["task"][k], b["task"][k]), k
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 10
    assert a["scheduler"]["_last_lr"] == b["scheduler"]["_last_lr"] == [pytest.approx(1e-4)]
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k


def test_early_stop_counts_only_the_epochs_that_ran_and_a_resume_stays_stopped(tmp_path: Path) -> None:
    optim = OptimConfig(epochs=10, batch_size=8, lr=0.05, early_stop=2)
    calls = []

    def worsening(task, loader, device):  # epoch 1 is the best; epochs 2 and 3 spend the patience
        calls.append(1)
        return {"val_loss": float(len(calls))}

    result = _fit(tmp_path, optim, evaluate=worsening)
    assert (result.stopped_early, result.epochs_run, result.best_epoch, len(result.history)) == (True, 3, 1, 3)
    assert [row["best"] for row in result.history] == [True, False, False]
    resumed = _fit(tmp_path, optim, evaluate=worsening, resume=True)
    assert len(calls) == 3, "a resumed run whose patience is spent trains no further"
    assert (resumed.stopped_early, resumed.epochs_run, resumed.best_epoch, len(resumed.history)) == (True, 3, 1, 3)


# ---------------------------------------------------------------- augmentation


def test_dihedral_draws_each_of_the_eight_symmetries() -> None:
    x = torch.arange(9.0).view(1, 3, 3)
    group = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    group += [g.flip(-1) for g in group]
    assert len({tuple(g.flatten().tolist()) for g in group}) == 8
    torch.manual_seed(0)
    flip = RandomDihedral()
    seen = [next(i for i, g in enumerate(group) if torch.equal(out, g)) for out in (flip(x) for _ in range(400))]
    counts = [seen.count(i) for i in range(8)]
    assert min(counts) > 25, counts  # uniform: 50 each on average
    with pytest.raises(ValueError, match="square"):
        RandomDihedral()(torch.zeros(3, 4, 5))


def test_augment_table_and_default(sample_root: Path) -> None:
    assert list(AUGMENTATIONS) == ["official", "dihedral"]
    assert [type(t) for t in train_augment().transforms] == [type(t) for t in official_augment().transforms]
    with pytest.raises(ValueError, match="augment must be one of official, dihedral, got 'x'"):
        train_augment("x")
    ds = load_labeled_images(sample_root)
    torch.manual_seed(0)
    x, _ = ImageDataset(ds.records[:1], 48, (0.5,) * 3, (0.5,) * 3, train=True, augmentation="dihedral")[0]
    assert x.shape == (3, 48, 48) and torch.isfinite(x).all() and -1.0 <= x.min() and x.max() <= 1.0


def test_class_weight_power_reaches_the_stage_weights(sample_root) -> None:
    from distill.stages import prepare_data

    def weights(power: float) -> torch.Tensor:
        cfg = load_config(overrides=[f"data.root={sample_root}", f"loss.class_weight_power={power}"])
        return prepare_data(cfg, cfg.student).class_weights

    official, soft = weights(1.0), weights(0.5)
    assert official.max() > 2  # the sample is imbalanced, so softening is visible
    torch.testing.assert_close(soft, official.sqrt(), atol=2e-3, rtol=0)
