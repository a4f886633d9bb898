"""Training throughput: a plain student step vs an SSD-KD step (teacher forward included), same batch and size.

    python -m benchmarks.train_throughput --size 112 --batch 32

Prints images/s of each and their ratio (target: SSD-KD step <= 5x the plain step; the 4 rotations are inherent).
Images/s counts the original (unrotated) images, the unit a user's epoch is made of.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from distill.config import LossConfig, RuntimeConfig
from distill.engine import place_task
from distill.heads import SSHead
from distill.tasks import DistillTask, SupervisedTask
from models import build_model


def _stepper(task: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, runtime: RuntimeConfig) -> Callable[[], None]:
    """One optimizer step of ``task`` on a fixed batch, placed as the engine places it (what `ssdkd-distill` gets)."""
    place_task(task, torch.device("cpu"), runtime)
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in task.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    task.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        task(x, y)["total"].backward()
        opt.step()

    return step


def _images_per_second(steppers: dict[str, Callable[[], None]], batch: int, rounds: int,
                       steps: int) -> dict[str, float]:
    """Median images/s over ``rounds``. Each round runs every step kind in turn (a slow spell on a shared machine
    hits all kinds alike), and each kind gets one untimed step first so it is not charged for the caches and
    allocator state the previous kind left behind."""
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(rounds):
        for name, step in steppers.items():
            step()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - t0) / steps)
    return {name: batch / statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="timed steps per kind per round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median round is reported")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--teacher", default="mobilenet_v2", help="teacher arch (the paper: resnet50)")
    p.add_argument("--teacher-width", type=float, default=1.0)
    p.add_argument("--student-width", type=float, default=0.5)
    p.add_argument("--no-channels-last", action="store_true", help="NCHW activations (runtime.channels_last=false)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.arange(a.batch) % 8
    w = torch.ones(8)
    tkw = {"width": a.teacher_width} if a.teacher.startswith("mobilenet_v2") else {}
    teacher = build_model(a.teacher, 8, **tkw).eval()
    student = build_model("mobilenet_v2", 8, width=a.student_width)
    rt = RuntimeConfig(device="cpu", channels_last=not a.no_channels_last)
    steppers = {"scratch (weighted CE)": _stepper(SupervisedTask(student, w), x, y, rt)}
    for method in ("kd", "d-kd", "ssd-kd"):
        task = DistillTask(build_model("mobilenet_v2", 8, width=a.student_width), teacher, w,
                           LossConfig(method=method), SSHead(teacher.feature_dim))
        steppers[method] = _stepper(task, x, y, rt)
    results = _images_per_second(steppers, a.batch, a.rounds, a.steps)
    plain = results["scratch (weighted CE)"]
    print(f"batch {a.batch}, {a.size}px, {torch.get_num_threads()} threads, teacher {a.teacher}, "
          f"student mobilenet_v2-{a.student_width}, {'channels_last' if rt.channels_last else 'NCHW'}")
    print(f"{'step':<24}{'images/s':>10}{'x plain':>10}")
    for name, ips in results.items():
        print(f"{name:<24}{ips:>10.1f}{plain / ips:>10.2f}")
    ratio = plain / results["ssd-kd"]
    print(f"SSD-KD step costs {ratio:.2f}x the plain step (target <= 5x): {'OK' if ratio <= 5 else 'OVER'}")


if __name__ == "__main__":
    main()
