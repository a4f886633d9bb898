"""Distillation as task modules (after timm's ``LogitDistillationTask``): ``forward(x, y)`` returns the dict
of named loss terms plus ``total``. Only trainable parts are registered submodules, so DDP wraps exactly
those; the frozen teacher is kept out of DDP and the optimizer.
"""

from __future__ import annotations

import torch
from torch import nn

from distill.config import LossConfig
from distill.heads import ConvReg, SSHead, similarity_logits
from distill.losses import scratch_loss, ss_head_loss
from distill.methods import LossInputs, TeacherOutput, method_named
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
    """Student + the trainable heads its method needs, distilled from a frozen teacher (+ its trained SS head), by
    the method's row in :data:`distill.methods.METHODS`."""

    def __init__(self, student: Classifier, teacher: Classifier, class_weights: torch.Tensor, loss: LossConfig,
                 teacher_ss_head: nn.Module | None = None) -> None:
        super().__init__()
        self.method = method_named(loss.method)
        if self.method.loss is None:
            raise ValueError(f"{self.method.name} trains without a teacher: use SupervisedTask")
        self.weights = loss.weights()
        self.student = student
        self.register_buffer("class_weights", class_weights)
        frozen = {}
        if self.method.needs_ss_head:
            if teacher_ss_head is None:
                raise ValueError(f"{self.method.name} needs the teacher's trained SS head "
                                 f"(run `ssdkd-distill ss-head` first)")
            frozen["ss_head"] = teacher_ss_head
            if self.method.sim_weight(self.weights) > 0:
                self.ss_head = SSHead(student.feature_dim)
        if self.method.gram_weight(self.weights) > 0:
            self.conv_reg = ConvReg(student.feature_dim, teacher.feature_dim)
        self.frozen = _Frozen(teacher, **frozen)

    @property
    def classifier(self) -> Classifier:
        return self.student

    def _projected(self, s: Features) -> torch.Tensor:
        return self.conv_reg(s.feature_map) if hasattr(self, "conv_reg") else s.feature_map

    def _similarities(self, s: Features, t: Features) -> tuple[torch.Tensor, torch.Tensor]:
        """Student and teacher ``3B x B`` similarity matrices; without its own SS head (no similarity term) the
        student's is the teacher's."""
        with torch.inference_mode():
            t_orig, t_rot = split_rotations(self.frozen.ss_head(t.embedding))
            t_sim = similarity_logits(t_rot, t_orig)
        t_sim = t_sim.clone()
        if not hasattr(self, "ss_head"):
            return t_sim, t_sim
        s_orig, s_rot = split_rotations(self.ss_head(s.embedding))
        return similarity_logits(s_rot, s_orig), t_sim

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.method.rotates_batch:
            x = rotate_batch(x)
        t = _teacher_features(self.frozen.teacher, x)
        s = self.student.forward_features(x)
        # Similarities before the projection, the order the losses take them in: autograd sums a tensor's incoming
        # gradients in the order its graph was built, so the order shows in the last bits of the gradients.
        s_sim, t_sim = self._similarities(s, t) if self.method.needs_ss_head else (None, None)
        fmap = self._projected(s) if TeacherOutput.FEATURE_MAP in self.method.teacher_provides else None
        inputs = LossInputs(s, t, y, self.class_weights, student_fmap_projected=fmap, student_sim=s_sim,
                            teacher_sim=t_sim)
        return self.method.loss(inputs, self.weights)
