"""The distillation methods ``loss.method`` (``--method``) chooses from, one row each in :data:`METHODS`.

A row says everything the config, the task and the stage need to know about a method: its loss, its weights
dataclass (and the ``loss.*`` config section holding it), whether the batch is rotated, and what the frozen teacher
must provide. To add a method, write its loss (``distill/losses/combined.py``) and add a row.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from distill.losses import (
    DKDWeights,
    KDWeights,
    RKDWeights,
    SSDKDWeights,
    dkd_loss,
    kd_loss,
    rkd_loss,
    ssdkd_loss,
)
from models.errors import InputError
from models.net import Features


class TeacherOutput(enum.Enum):
    """What a method's loss reads from the frozen teacher."""

    LOGITS = "logits"
    EMBEDDING = "embeddings"
    FEATURE_MAP = "feature maps"
    SS_HEAD = "SS head"  # the teacher's trained self-supervision head (`ssdkd-distill ss-head`)


@dataclass(frozen=True)
class LossInputs:
    """What :class:`distill.tasks.DistillTask` hands a method's loss, for the batch as the method sees it (``4B``
    rotated rows when it rotates, else the ``B`` loaded ones); ``targets`` has one label per loaded image."""

    student: Features
    teacher: Features
    targets: torch.Tensor
    class_weights: torch.Tensor
    # the student's map through ConvReg (or as it is, without a Gram term): methods whose teacher gives feature maps
    student_fmap_projected: torch.Tensor | None = None
    # ``3B x B`` rotated-vs-original cosine matrices: methods whose teacher gives an SS head
    student_sim: torch.Tensor | None = None
    teacher_sim: torch.Tensor | None = None


def _no_term(weights: Any) -> float:
    return 0.0


@dataclass(frozen=True)
class Method:
    name: str
    # its weights dataclass (distill.losses.combined) and the LossConfig field holding it; None: nothing to weigh
    weights: type | None
    config_key: str | None
    rotates_batch: bool  # the task stacks every image at four rotations (distill.rotation)
    teacher_provides: frozenset[TeacherOutput]  # empty: trained without a teacher
    # (inputs, weights) -> {term: weighted loss, "total": sum}; None for a method without a teacher, whose student
    # trains as a teacher does (distill.tasks.SupervisedTask)
    loss: Callable[[LossInputs, Any], dict[str, torch.Tensor]] | None
    # > 0: the task trains a ConvReg projecting the student's map to the teacher's channels for the Gram term
    gram_weight: Callable[[Any], float] = _no_term
    # > 0: the student gets its own SS head for the similarity term
    sim_weight: Callable[[Any], float] = _no_term

    @property
    def needs_teacher(self) -> bool:
        return bool(self.teacher_provides)

    @property
    def needs_ss_head(self) -> bool:
        return TeacherOutput.SS_HEAD in self.teacher_provides


_LOGITS, _EMBEDDING, _FMAP, _SS = TeacherOutput

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ssd-kd", SSDKDWeights, "ssd_kd", rotates_batch=True,
           teacher_provides=frozenset({_LOGITS, _EMBEDDING, _FMAP, _SS}),
           loss=lambda i, w: ssdkd_loss(i.student, i.teacher, i.student_sim, i.teacher_sim, i.student_fmap_projected,
                                        i.targets, i.class_weights, w),
           gram_weight=lambda w: w.gram * w.relational, sim_weight=lambda w: w.sim),
    Method("d-kd", DKDWeights, "d_kd", rotates_batch=False, teacher_provides=frozenset({_LOGITS, _EMBEDDING, _FMAP}),
           loss=lambda i, w: dkd_loss(i.student, i.teacher, i.student_fmap_projected, i.targets, i.class_weights, w),
           gram_weight=lambda w: w.gram),
    Method("kd", KDWeights, "kd", rotates_batch=False, teacher_provides=frozenset({_LOGITS}),
           loss=lambda i, w: kd_loss(i.student, i.teacher, i.targets, i.class_weights, w)),
    Method("rkd", RKDWeights, "rkd", rotates_batch=False, teacher_provides=frozenset({_EMBEDDING}),
           loss=lambda i, w: rkd_loss(i.student, i.teacher, i.targets, i.class_weights, w)),
    Method("scratch", None, None, rotates_batch=False, teacher_provides=frozenset(), loss=None),
)}


def method_named(name: str) -> Method:
    """The row of ``name``; an unknown name is a one-line error suggesting the closest valid one."""
    if name in METHODS:
        return METHODS[name]
    close = difflib.get_close_matches(name, METHODS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InputError(f"loss.method: unknown method {name!r}{hint} (expected one of {', '.join(METHODS)})")
