"""Training throughput: a plain student step vs an SSD-KD step (teacher forward included), same batch and size.

    python -m benchmarks.train_throughput --size 112 --batch 32 --steps 5

Prints images/s of each and their ratio (target: SSD-KD step <= 5x the plain step; the 4 rotations are inherent).
Images/s counts the original (unrotated) images, the unit a user's epoch is made of.
"""

from __future__ import annotations

import argparse
import time

import torch

from distill.config import LossConfig, RuntimeConfig
from distill.engine import place_task
from distill.heads import SSHead
from distill.tasks import DistillTask, SupervisedTask
from models import build_model


def _time_steps(task: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int,
                runtime: RuntimeConfig) -> float:
    # The engine's own placement and input layout, so the figures are what `ssdkd-distill` gets.
    place_task(task, torch.device("cpu"), runtime)
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in task.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    task.train()
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        task(x, y)["total"].backward()
        opt.step()
    return steps * x.shape[0] / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
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
    plain = _time_steps(SupervisedTask(student, w), x, y, a.steps, a.warmup, rt)
    results = {"scratch (weighted CE)": plain}
    for method in ("kd", "d-kd", "ssd-kd"):
        task = DistillTask(build_model("mobilenet_v2", 8, width=a.student_width), teacher, w,
                           LossConfig(method=method), SSHead(teacher.feature_dim))
        results[method] = _time_steps(task, x, y, a.steps, a.warmup, rt)
    print(f"batch {a.batch}, {a.size}px, {torch.get_num_threads()} threads, teacher {a.teacher}, "
          f"student mobilenet_v2-{a.student_width}, {'channels_last' if rt.channels_last else 'NCHW'}")
    print(f"{'step':<24}{'images/s':>10}{'x plain':>10}")
    for name, ips in results.items():
        print(f"{name:<24}{ips:>10.1f}{plain / ips:>10.2f}")
    ratio = plain / results["ssd-kd"]
    print(f"SSD-KD step costs {ratio:.2f}x the plain step (target <= 5x): {'OK' if ratio <= 5 else 'OVER'}")


if __name__ == "__main__":
    main()
