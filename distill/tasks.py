"""Distillation as task modules (after timm's ``LogitDistillationTask``): ``forward(x, y)`` returns the dict
of named loss terms plus ``total``. Only trainable parts are registered submodules, so DDP wraps exactly
those; the frozen teacher is kept out of DDP and the optimizer.
"""

from __future__ import annotations

import torch
from torch import nn

from distill.config import LossConfig
from distill.heads import ConvReg, SSHead, similarity_logits
from distill.losses import dkd_loss, kd_loss, rkd_loss, scratch_loss, ss_head_loss, ssdkd_loss
from distill.rotation import rotate_batch, split_rotations
from models.net import Classifier, Features, fold_batchnorm


class _Frozen:
    """Holds frozen modules without registering them (not in state_dict, DDP or the optimizer).

    The teacher is held BatchNorm-folded: it only ever runs in eval mode, where folding is exact up to rounding.
    """

    def __init__(self, teacher: Classifier, **modules: nn.Module) -> None:
        modules = {"teacher": fold_batchnorm(teacher), **modules}
        for m in modules.values():
            m.eval().requires_grad_(False)
        self.__dict__.update(modules)

    def to(self, *args, **kwargs) -> _Frozen:
        """Same arguments as :meth:`nn.Module.to` (device, dtype, memory_format)."""
        for m in self.__dict__.values():
            m.to(*args, **kwargs)
        return self


def _teacher_features(teacher: Classifier, x: torch.Tensor) -> Features:
    # inference_mode is cheapest; clone() turns the inference tensors into normal ones so the loss
    # functions may save them for the student's backward pass.
    with torch.inference_mode():
        f = teacher.forward_features(x)
    return Features(*(t.clone() for t in f))


class SupervisedTask(nn.Module):
    """Teacher training and the no-teacher baseline: class-weighted CE."""

    def __init__(self, model: Classifier, class_weights: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("class_weights", class_weights)

    @property
    def classifier(self) -> Classifier:
        return self.model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return scratch_loss(self.model(x), y, self.class_weights)


class SSHeadTask(nn.Module):
    """Trains the teacher's self-supervision head with the teacher backbone frozen: CE over the
    ``3B x B`` cosine matrix of rotated vs original views (correct column ``j // 3``)."""

    def __init__(self, teacher: Classifier) -> None:
        super().__init__()
        self.frozen = _Frozen(teacher=teacher)
        self.ss_head = SSHead(teacher.feature_dim)

    def similarity(self, x: torch.Tensor) -> torch.Tensor:
        emb = _teacher_features(self.frozen.teacher, rotate_batch(x)).embedding
        orig, rot = split_rotations(self.ss_head(emb))
        return similarity_logits(rot, orig)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ss": (loss := ss_head_loss(self.similarity(x))), "total": loss}


class DistillTask(nn.Module):
    """Student + its trainable SSD-KD heads, distilled from a frozen teacher (+ its trained SS head)."""

    def __init__(self, student: Classifier, teacher: Classifier, class_weights: torch.Tensor, loss: LossConfig,
                 teacher_ss_head: nn.Module | None = None) -> None:
        super().__init__()
        self.method = loss.method
        self.loss = loss
        self.student = student
        self.register_buffer("class_weights", class_weights)
        frozen = {}
        if self.method == "ssd-kd":
            if teacher_ss_head is None:
                raise ValueError("ssd-kd needs the teacher's trained SS head (run `ssdkd-distill ss-head` first)")
            frozen["ss_head"] = teacher_ss_head
            if loss.ssd_kd.sim > 0:
                self.ss_head = SSHead(student.feature_dim)
        gram_w = {"ssd-kd": loss.ssd_kd.gram * loss.ssd_kd.relational, "d-kd": loss.d_kd.gram}.get(self.method, 0.0)
        if gram_w > 0:
            self.conv_reg = ConvReg(student.feature_dim, teacher.feature_dim)
        self.frozen = _Frozen(teacher, **frozen)

    @property
    def classifier(self) -> Classifier:
        return self.student

    def _projected(self, s: Features) -> torch.Tensor:
        return self.conv_reg(s.feature_map) if hasattr(self, "conv_reg") else s.feature_map

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        teacher = self.frozen.teacher
        if self.method == "ssd-kd":
            xr = rotate_batch(x)
            t = _teacher_features(teacher, xr)
            s = self.student.forward_features(xr)
            with torch.inference_mode():
                t_orig, t_rot = split_rotations(self.frozen.ss_head(t.embedding))
                t_sim = similarity_logits(t_rot, t_orig)
            t_sim = t_sim.clone()
            if hasattr(self, "ss_head"):
                s_orig, s_rot = split_rotations(self.ss_head(s.embedding))
                s_sim = similarity_logits(s_rot, s_orig)
            else:
                s_sim = t_sim
            return ssdkd_loss(s, t, s_sim, t_sim, self._projected(s), y, self.class_weights, self.loss.ssd_kd)
        t = _teacher_features(teacher, x)
        s = self.student.forward_features(x)
        if self.method == "d-kd":
            return dkd_loss(s, t, self._projected(s), y, self.class_weights, self.loss.d_kd)
        if self.method == "kd":
            return kd_loss(s, t, y, self.class_weights, self.loss.kd)
        if self.method == "rkd":
            return rkd_loss(s, t, y, self.class_weights, self.loss.rkd)
        raise ValueError(f"unknown distillation method {self.method!r}")
