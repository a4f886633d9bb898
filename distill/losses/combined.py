"""Composite objectives: SSD-KD, its D-KD variant and the baselines, each returning every weighted term and the total.

Each loss returns ``dict[str, Tensor]``: one entry per weighted term (weight already applied) and ``"total"``, the
exact sum of those entries, so logs show what each term contributes. A term whose weight is 0 is not computed
(a zero tensor is returned instead) so ablations cost nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from distill.losses.ce import weighted_cross_entropy
from distill.losses.gram import gram_loss
from distill.losses.kd import kd_kl
from distill.losses.rkd import rkd_angle, rkd_distance
from distill.losses.sskd import rotation_kd, similarity_kd
from distill.rotation import rotated_targets, split_rotations
from models.net import Features


@dataclass(frozen=True)
class _Weights:
    """Validation shared by every weights dataclass; the field name says what a value is.

    ``*_T``: a temperature, must be > 0; ``ratio*``: a selection ratio in [0, 1]; anything else: a weight >= 0.
    Runs on construction (and on ``dataclasses.replace``), so an invalid configuration never reaches training.
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field, its value and the allowed range."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_T"):
                kind, valid = "a temperature and must be finite and > 0", 0 < value < math.inf
            elif field.name.startswith("ratio"):
                kind, valid = "a ratio and must be in [0, 1]", 0 <= value <= 1
            else:
                kind, valid = "a weight and must be finite and >= 0", 0 <= value < math.inf
            if not valid:  # NaN fails every comparison, so it is rejected too
                raise ValueError(f"{type(self).__name__}.{field.name} is {kind}, got {value}")


@dataclass(frozen=True)
class SSDKDWeights(_Weights):
    """Official SSD-KD weights: total = ce*CE + kd*KD + rot*RotKD + sim*SimKD + relational*(dist + angle + gram)."""

    ce: float = 0.1
    kd: float = 0.9
    kd_T: float = 4.0
    rot: float = 2.7
    rot_T: float = 4.0
    ratio_tf: float = 1.0
    sim: float = 10.0
    sim_T: float = 0.5
    ratio_ss: float = 0.75
    relational: float = 1.0
    dist: float = 25.0
    angle: float = 50.0
    gram: float = 1000.0


@dataclass(frozen=True)
class DKDWeights(_Weights):
    """D-KD (no self-supervision): 0.5*WCE + 0.5*KD(T=5) + 25*dist + 50*angle + 1000*gram."""

    ce: float = 0.5
    kd: float = 0.5
    kd_T: float = 5.0
    dist: float = 25.0
    angle: float = 50.0
    gram: float = 1000.0


@dataclass(frozen=True)
class KDWeights(_Weights):
    """Hinton KD baseline: 0.1*WCE + 0.9*KD(T=4)."""

    ce: float = 0.1
    kd: float = 0.9
    kd_T: float = 4.0


@dataclass(frozen=True)
class RKDWeights(_Weights):
    """Relational KD baseline: 1.0*WCE + 25*dist + 50*angle."""

    ce: float = 1.0
    dist: float = 25.0
    angle: float = 50.0


def _weighted(weight: float, term: Callable[[], torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """``weight * term()``, or a zero scalar without calling ``term`` when the weight is 0 (ablations skip the work)."""
    return weight * term() if weight else like.new_zeros(())


def _with_total(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add ``"total"``, the sum of the weighted (scalar) terms."""
    return {**terms, "total": torch.stack(list(terms.values())).sum()}


def ssdkd_loss(
    student: Features,
    teacher: Features,
    student_sim: torch.Tensor,
    teacher_sim: torch.Tensor,
    student_fmap_projected: torch.Tensor,
    targets: torch.Tensor,
    class_weights: torch.Tensor,
    w: SSDKDWeights = SSDKDWeights(),
) -> dict[str, torch.Tensor]:
    """The SSD-KD objective on a rotated batch (spec "Terms" 1-8).

    student, teacher: :class:`Features` of the ``4B`` rows from :func:`distill.rotation.rotate_batch` (row ``4b + r``).
    student_sim, teacher_sim: ``3B x B`` from :func:`distill.heads.similarity_logits`.
    student_fmap_projected: ``4B x C_T x H x W`` (student map through ConvReg); targets: ``B``; class_weights: ``K``.
    Returns ``ce``, ``kd`` (originals), ``rot``, ``sim`` (selected rotated rows), ``dist``, ``angle``, ``gram``
    (all 4B rows; each already multiplied by ``w.relational``) and ``total``.
    """
    logits_orig, logits_rot = split_rotations(student.logits)
    teacher_orig, teacher_rot = split_rotations(teacher.logits)
    if targets.shape[0] != logits_orig.shape[0]:
        raise ValueError(f"{targets.shape[0]} targets for {student.logits.shape[0]} rows; expected one per 4 rows")
    like = student.logits
    terms = {
        "ce": _weighted(w.ce, lambda: weighted_cross_entropy(logits_orig, targets, class_weights), like),
        "kd": _weighted(w.kd, lambda: kd_kl(logits_orig, teacher_orig, w.kd_T), like),
        "rot": _weighted(
            w.rot, lambda: rotation_kd(logits_rot, teacher_rot, rotated_targets(targets), w.rot_T, w.ratio_tf), like
        ),
        "sim": _weighted(w.sim, lambda: similarity_kd(student_sim, teacher_sim, w.sim_T, w.ratio_ss), like),
        "dist": _weighted(w.relational * w.dist, lambda: rkd_distance(student.embedding, teacher.embedding), like),
        "angle": _weighted(w.relational * w.angle, lambda: rkd_angle(student.embedding, teacher.embedding), like),
        "gram": _weighted(w.relational * w.gram, lambda: gram_loss(student_fmap_projected, teacher.feature_map), like),
    }
    return _with_total(terms)


def dkd_loss(
    student: Features,
    teacher: Features,
    student_fmap_projected: torch.Tensor,
    targets: torch.Tensor,
    class_weights: torch.Tensor,
    w: DKDWeights = DKDWeights(),
) -> dict[str, torch.Tensor]:
    """D-KD on a plain batch of B rows: WCE, KD, RKD distance and angle, Gram.

    student, teacher: :class:`Features` of ``B`` rows; student_fmap_projected: ``B x C_T x H x W``; targets: ``B``;
    class_weights: ``K``. Returns ``ce``, ``kd``, ``dist``, ``angle``, ``gram`` (weighted) and ``total``.
    """
    like = student.logits
    terms = {
        "ce": _weighted(w.ce, lambda: weighted_cross_entropy(student.logits, targets, class_weights), like),
        "kd": _weighted(w.kd, lambda: kd_kl(student.logits, teacher.logits, w.kd_T), like),
        "dist": _weighted(w.dist, lambda: rkd_distance(student.embedding, teacher.embedding), like),
        "angle": _weighted(w.angle, lambda: rkd_angle(student.embedding, teacher.embedding), like),
        "gram": _weighted(w.gram, lambda: gram_loss(student_fmap_projected, teacher.feature_map), like),
    }
    return _with_total(terms)


def kd_loss(
    student: Features,
    teacher: Features,
    targets: torch.Tensor,
    class_weights: torch.Tensor,
    w: KDWeights = KDWeights(),
) -> dict[str, torch.Tensor]:
    """KD baseline on a plain batch of B rows (only the ``B x K`` logits are used). Returns ce, kd, total."""
    like = student.logits
    terms = {
        "ce": _weighted(w.ce, lambda: weighted_cross_entropy(student.logits, targets, class_weights), like),
        "kd": _weighted(w.kd, lambda: kd_kl(student.logits, teacher.logits, w.kd_T), like),
    }
    return _with_total(terms)


def rkd_loss(
    student: Features,
    teacher: Features,
    targets: torch.Tensor,
    class_weights: torch.Tensor,
    w: RKDWeights = RKDWeights(),
) -> dict[str, torch.Tensor]:
    """RKD baseline on a plain batch of B rows (embeddings ``B x D``). Returns ce, dist, angle, total."""
    like = student.logits
    terms = {
        "ce": _weighted(w.ce, lambda: weighted_cross_entropy(student.logits, targets, class_weights), like),
        "dist": _weighted(w.dist, lambda: rkd_distance(student.embedding, teacher.embedding), like),
        "angle": _weighted(w.angle, lambda: rkd_angle(student.embedding, teacher.embedding), like),
    }
    return _with_total(terms)


def scratch_loss(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """Training without a teacher: weighted CE only. logits ``B x K``, targets ``B``. Returns ce and total."""
    return _with_total({"ce": weighted_cross_entropy(logits, targets, class_weights)})
