"""CPU runtime settings the engine applies: allocator tuning, channels_last placement, the onnxruntime teacher."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch

from distill.config import Config, LossConfig, RuntimeConfig
from distill.engine import place_task
from distill.heads import SSHead
from distill.tasks import DistillTask
from distill.teacher_runtime import OnnxTeacher, resolve_teacher_runtime
from models import build_model
from models.errors import InputError
from models.net import fold_batchnorm
from models.registry import list_models

_STEPS = """
import resource, sys, torch
from distill.malloc import keep_freed_memory
from models import build_model
from models.net import fold_batchnorm
from models.registry import list_models
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
torch.manual_seed(0)
model = build_model("mobilenet_v2", 8, width=0.35)
x, y = torch.randn(64, 3, 112, 112), torch.arange(64) % 8
def step():
    torch.nn.functional.cross_entropy(model(x), y).backward()
step(); step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _steady_state_page_faults(mode: str) -> int:
    # A fresh process each: the allocator setting is process-wide and cannot be undone.
    out = subprocess.run([sys.executable, "-c", _STEPS, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_keep_freed_memory_stops_training_steps_faulting_their_activations_in() -> None:
    default, tuned = _steady_state_page_faults("default"), _steady_state_page_faults("tuned")
    assert default > 10_000, "glibc's default should re-fault the large activations every step"
    assert tuned < default / 10


def _task() -> DistillTask:
    teacher = build_model("mobilenet_v2", 8, width=0.35)
    return DistillTask(build_model("mobilenet_v2", 8, width=0.35), teacher, torch.ones(8), LossConfig(),
                       SSHead(teacher.feature_dim))


def _spatial_conv_weights(task: DistillTask) -> list[torch.Tensor]:
    # 1x1 convs are both contiguous and channels_last; only k x k kernels tell the layouts apart.
    return [m.weight for m in (*task.modules(), *task.frozen.teacher.modules())
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]


@pytest.mark.parametrize("channels_last", [True, False])
def test_place_task_lays_out_student_heads_and_frozen_teacher(channels_last: bool) -> None:
    task = _task()
    place_task(task, torch.device("cpu"),
               RuntimeConfig(device="cpu", channels_last=channels_last, teacher_runtime="torch"))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    weights = _spatial_conv_weights(task)
    assert len(weights) > 20 and all(w.is_contiguous(memory_format=fmt) for w in weights)


@pytest.mark.parametrize("arch", list_models())
def test_onnx_teacher_matches_the_torch_teacher_at_any_batch_size_and_layout(arch: str) -> None:
    torch.manual_seed(0)
    teacher = build_model(arch, 8).eval()
    onnx_teacher = OnnxTeacher(fold_batchnorm(teacher), threads=1)  # folded, as distillation holds it
    for shape in [(3, 3, 64, 64), (5, 3, 96, 96)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = teacher.forward_features(x)
        got = onnx_teacher.forward_features(x.contiguous(memory_format=torch.channels_last))
        for r, g in zip(ref, got, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5 * float(r.abs().max()))


def test_place_task_puts_the_cpu_teacher_on_onnxruntime_with_the_same_losses() -> None:
    cpu = torch.device("cpu")
    reference = _task()
    task = copy.deepcopy(reference)
    place_task(reference, cpu, RuntimeConfig(device="cpu", teacher_runtime="torch"))
    place_task(task, cpu, RuntimeConfig(device="cpu"))  # auto
    assert isinstance(task.frozen.teacher, OnnxTeacher) and not isinstance(reference.frozen.teacher, OnnxTeacher)
    x, y = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(3)), torch.arange(4)
    losses = []
    for t in (reference, task):
        torch.manual_seed(1)  # the student's dropout
        losses.append(t.train()(x, y))
    for name, value in losses[0].items():
        torch.testing.assert_close(losses[1][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_teacher_runtime_choice_is_checked() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_teacher_runtime("auto", cpu) == "onnxruntime"
    assert resolve_teacher_runtime("auto", cuda) == "torch"
    with pytest.raises(InputError, match="CPU only"):
        resolve_teacher_runtime("onnxruntime", cuda)
    with pytest.raises(InputError, match="runtime.teacher_runtime must be one of auto, torch, onnxruntime"):
        Config(runtime=RuntimeConfig(teacher_runtime="tensorrt")).validate()


def test_a_teacher_onnxruntime_cannot_run_stays_in_pytorch_under_auto_and_is_a_clear_error_when_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import distill.engine

    class Unexportable(OnnxTeacher):
        def __init__(self, teacher, threads):
            raise RuntimeError("Exporting the operator 'aten::custom_op' to ONNX opset 17 is not supported.\nmore")

    monkeypatch.setattr(distill.engine, "OnnxTeacher", Unexportable)
    task = _task()
    teacher = task.frozen.teacher
    with pytest.warns(UserWarning, match="teacher stays in PyTorch: onnxruntime could not run it .*aten::custom_op"):
        place_task(task, torch.device("cpu"), RuntimeConfig(device="cpu"))
    assert task.frozen.teacher is teacher
    with pytest.raises(InputError, match=r"teacher_runtime=onnxruntime: .*aten::custom_op.*; set runtime"):
        place_task(_task(), torch.device("cpu"), RuntimeConfig(device="cpu", teacher_runtime="onnxruntime"))
