"""SSD-KD loss terms, one per module, and the composite objectives built from them."""

from distill.losses.ce import class_weights_from_counts, weighted_cross_entropy
from distill.losses.combined import (
    DKDWeights,
    KDWeights,
    RKDWeights,
    SSDKDWeights,
    dkd_loss,
    kd_loss,
    rkd_loss,
    scratch_loss,
    ssdkd_loss,
)
from distill.losses.gram import gram_loss, gram_matrix
from distill.losses.kd import kd_kl
from distill.losses.rkd import rkd_angle, rkd_distance
from distill.losses.selection import select_rows, true_rank
from distill.losses.sskd import rotation_kd, similarity_kd, ss_head_loss

__all__ = [
    "DKDWeights",
    "KDWeights",
    "RKDWeights",
    "SSDKDWeights",
    "class_weights_from_counts",
    "dkd_loss",
    "gram_loss",
    "gram_matrix",
    "kd_kl",
    "kd_loss",
    "rkd_angle",
    "rkd_distance",
    "rkd_loss",
    "rotation_kd",
    "scratch_loss",
    "select_rows",
    "similarity_kd",
    "ss_head_loss",
    "ssdkd_loss",
    "true_rank",
    "weighted_cross_entropy",
]
