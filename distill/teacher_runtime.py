"""The frozen teacher's forward pass through onnxruntime on CPU.

The teacher never trains during distillation, so nothing needs its autograd graph: onnxruntime's fused CPU kernels
(conv + bias + clip in one pass, blocked layouts) run it faster than eager PyTorch, even with BatchNorm folded and
channels_last, and the teacher's forward on the 4B rotated rows is a sizeable share of an SSD-KD step. Same fp32
math; outputs agree with PyTorch to float rounding (tested).
"""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import torch
from torch import nn

from models.errors import InputError
from models.net import Classifier, Features

TEACHER_RUNTIMES = ("auto", "torch", "onnxruntime")


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def check_teacher_runtime(choice: str) -> None:
    if choice not in TEACHER_RUNTIMES:
        raise InputError(f"runtime.teacher_runtime must be one of {', '.join(TEACHER_RUNTIMES)}, got {choice!r}")


def resolve_teacher_runtime(choice: str, device: torch.device) -> str:
    """``auto`` -> onnxruntime on CPU when installed, else torch. An explicit choice that cannot run is an error."""
    check_teacher_runtime(choice)
    if choice == "auto":
        return "onnxruntime" if device.type == "cpu" and onnxruntime_available() else "torch"
    if choice == "onnxruntime":
        if device.type != "cpu":
            raise InputError(f"runtime.teacher_runtime=onnxruntime runs on CPU only, not {device.type}; use torch")
        if not onnxruntime_available():
            raise InputError("runtime.teacher_runtime=onnxruntime needs onnxruntime: pip install 'ssdkd[onnx]'")
    return choice


class _FeaturesOf(nn.Module):
    """ONNX export wants tensors or tuples out, not a NamedTuple."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.forward_features(x))


class OnnxTeacher:
    """Drop-in for a frozen :class:`Classifier`'s ``forward_features`` (``N x 3 x H x W`` -> :class:`Features`).

    Batch, height and width are dynamic, so the last short batch and any input size run on one session.
    """

    def __init__(self, teacher: Classifier, threads: int) -> None:
        import onnxruntime as ort

        self.feature_dim = teacher.feature_dim
        probe = torch.zeros(2, 3, 64, 64)
        buf = io.BytesIO()
        names = ["feature_map", "embedding", "logits"]
        with torch.no_grad():
            torch.onnx.export(
                _FeaturesOf(teacher).eval(), (probe,), buf, dynamo=False, opset_version=17, input_names=["x"],
                output_names=names, dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, **{k: {0: "n"} for k in names}},
            )
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        # Spinning pool threads would keep a core busy after the teacher's turn, stealing it from the student's
        # backward pass that runs next on the same cores.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])

    def forward_features(self, x: torch.Tensor) -> Features:
        inp = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return Features(*(torch.from_numpy(a) for a in self.session.run(None, {"x": inp})))

    def to(self, *args, **kwargs) -> OnnxTeacher:
        """:meth:`distill.tasks._Frozen.to` moves every frozen part; this one stays on its CPU session."""
        return self
