"""SSD-KD loss terms checked against explicit numpy / loop computations on tiny inputs, plus their invariances."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from distill import heads, rotation
from distill.losses import (
    DKDWeights,
    KDWeights,
    RKDWeights,
    SSDKDWeights,
    class_weights_from_counts,
    combined,
    dkd_loss,
    gram_loss,
    gram_matrix,
    kd_kl,
    kd_loss,
    rkd_angle,
    rkd_distance,
    rkd_loss,
    rotation_kd,
    scratch_loss,
    select_rows,
    similarity_kd,
    ss_head_loss,
    ssdkd_loss,
    true_rank,
    weighted_cross_entropy,
)
from distill.losses.rkd import _angles
from models.net import Features

# The test machine's cores are shared; tiny tensors gain nothing from threads.
torch.set_num_threads(1)

ISIC2019_COUNTS = [4522, 12875, 3323, 867, 2624, 239, 253, 628]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64)


# ---------- explicit references (numpy, loops) ----------


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_kd(s: np.ndarray, t: np.ndarray, temp: float) -> float:
    if len(s) == 0:
        return 0.0
    p, q = _np_softmax(t / temp), _np_softmax(s / temp)
    return float((p * (np.log(p) - np.log(q))).sum() / len(s) * temp**2)


def _np_smooth_l1(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(np.where(d < 1, 0.5 * d**2, d - 0.5).mean())


def _np_dist(e: np.ndarray) -> np.ndarray:
    n = len(e)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                d[i, j] = math.sqrt(max(((e[i] - e[j]) ** 2).sum(), 1e-12))
    return d / d[d > 0].mean()


def _np_angles(e: np.ndarray) -> np.ndarray:
    n = len(e)
    unit = np.zeros((n, n, e.shape[1]))
    for i in range(n):
        for j in range(n):
            v = e[j] - e[i]
            unit[i, j] = v / max(np.linalg.norm(v), 1e-12)
    return np.array([unit[i, j] @ unit[i, k] for i in range(n) for j in range(n) for k in range(n)])


def _np_gram(f: np.ndarray) -> np.ndarray:
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w)
    return np.stack([flat[i] @ flat[i].T for i in range(b)]) / (c * h * w)


# ---------- CE and class weights ----------


def test_weighted_cross_entropy_matches_explicit_weighted_mean() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([0, 2, 1])
    weights = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    log_p = np.log(_np_softmax(logits.numpy()))
    w_y = weights.numpy()[target.numpy()]
    nll = -log_p[np.arange(3), target.numpy()]
    expected = (w_y * nll).sum() / w_y.sum()
    assert weighted_cross_entropy(logits, target, weights).item() == pytest.approx(expected, rel=1e-12)


def test_weighted_cross_entropy_accepts_plain_list_weights() -> None:
    logits, target = _randn(4, 3).float(), torch.tensor([0, 1, 2, 1])
    expected = weighted_cross_entropy(logits, target, torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(weighted_cross_entropy(logits, target, [1.0, 2.0, 3.0]), expected)


def test_class_weights_on_isic2019_counts() -> None:
    assert sum(ISIC2019_COUNTS) == 25331
    weights = class_weights_from_counts(ISIC2019_COUNTS)
    assert weights == [round(25331 / n, 3) for n in ISIC2019_COUNTS]
    assert weights[1] == 1.967 and weights[5] == 105.987


def test_class_weights_power_softens_them() -> None:
    assert class_weights_from_counts([90, 10], power=0.5) == [round((100 / 90) ** 0.5, 3), round(10 ** 0.5, 3)]
    assert class_weights_from_counts([90, 10], power=0.0) == [1.0, 1.0]


def test_class_weights_reject_empty_class_by_index() -> None:
    with pytest.raises(ValueError, match="class 2"):
        class_weights_from_counts([5, 3, 0, 1])


# ---------- KD ----------


def test_kd_kl_matches_explicit_formula() -> None:
    s, t = _randn(5, 4, seed=1), _randn(5, 4, seed=2)
    assert kd_kl(s, t, 4.0).item() == pytest.approx(_np_kd(s.numpy(), t.numpy(), 4.0), rel=1e-10)


def test_kd_kl_zero_when_equal_and_teacher_gets_no_grad() -> None:
    s = _randn(3, 5).requires_grad_()
    t = s.detach().clone().requires_grad_()
    loss = kd_kl(s, t, 2.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    loss.backward()
    assert t.grad is None


def test_kd_kl_on_zero_rows_is_zero_and_keeps_graph() -> None:
    s = torch.zeros(0, 3, requires_grad=True)
    loss = kd_kl(s, torch.zeros(0, 3), 4.0)
    assert loss.item() == 0.0
    loss.backward()
    assert s.grad is not None


# ---------- selection ----------


def _scores_with_ranks(ranks: list[int], num_classes: int = 5) -> torch.Tensor:
    """Rows whose true column 0 has exactly ``rank`` strictly larger columns."""
    scores = torch.zeros(len(ranks), num_classes)
    scores[:, 0] = 0.5
    for row, rank in enumerate(ranks):
        scores[row, 1 : 1 + rank] = 1.0
    return scores


def test_true_rank_is_position_in_descending_sort() -> None:
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.9, 0.05, 0.05], [0.3, 0.2, 0.5]])
    assert true_rank(scores, torch.tensor([2, 0, 1])).tolist() == [1, 0, 2]
    ranks = [0, 2, 1, 0, 3, 1]
    assert true_rank(_scores_with_ranks(ranks), torch.zeros(6, dtype=torch.long)).tolist() == ranks


def test_select_rows_keeps_correct_plus_best_ranked_wrong() -> None:
    # 4 wrong rows (ranks 2, 1, 3, 1); ratio 0.75 keeps int(3.0) = 3 of them, dropping the worst (rank 3, row 4).
    scores, target = _scores_with_ranks([0, 2, 1, 0, 3, 1]), torch.zeros(6, dtype=torch.long)
    assert select_rows(scores, target, 0.75).tolist() == [True, True, True, True, False, True]
    assert select_rows(scores, target, 1.0).all()
    assert select_rows(scores, target, 0.0).tolist() == [True, False, False, True, False, False]


@pytest.mark.parametrize(("n_wrong", "kept_wrong"), [(1, 0), (2, 1), (3, 2), (4, 3), (8, 6)])
def test_select_rows_truncates_wrong_count(n_wrong: int, kept_wrong: int) -> None:
    ranks = [0, 0] + [1] * n_wrong
    mask = select_rows(_scores_with_ranks(ranks), torch.zeros(len(ranks), dtype=torch.long), 0.75)
    assert int(mask.sum()) == 2 + kept_wrong
    assert mask[:2].all()


def test_select_rows_ties_broken_by_row_index() -> None:
    mask = select_rows(_scores_with_ranks([1, 1, 1]), torch.zeros(3, dtype=torch.long), 0.5)
    assert mask.tolist() == [True, False, False]


def test_select_rows_rejects_ratio_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="ratio"):
        select_rows(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), 1.5)


# ---------- rotation layout ----------


def test_rotate_batch_row_layout_matches_np_rot90() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = rotation.rotate_batch(x)
    assert out.shape == (8, 3, 4, 4)
    for b in range(2):
        hwc = x[b].permute(1, 2, 0).numpy()  # the official loader rotates H x W x C images
        for r in range(4):
            expected = np.rot90(hwc, r).transpose(2, 0, 1)
            np.testing.assert_array_equal(out[4 * b + r].numpy(), expected)


def test_rotate_batch_keeps_a_channels_last_batch_channels_last() -> None:
    x = _randn(2, 3, 6, 6)
    out = rotation.rotate_batch(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, rotation.rotate_batch(x), rtol=0, atol=0)
    assert rotation.rotate_batch(x).is_contiguous()


def test_rotate_batch_rejects_non_square() -> None:
    with pytest.raises(ValueError, match="H == W"):
        rotation.rotate_batch(torch.zeros(1, 3, 4, 5))


def test_split_rotations_and_targets_are_image_major() -> None:
    x = _randn(3, 1, 2, 2)
    originals, rotated = rotation.split_rotations(rotation.rotate_batch(x))
    torch.testing.assert_close(originals, x)
    assert rotated.shape == (9, 1, 2, 2)
    for j in range(9):
        torch.testing.assert_close(rotated[j], torch.rot90(x[j // 3], j % 3 + 1, dims=(-2, -1)))
    assert rotation.rotated_targets(torch.tensor([4, 7, 1])).tolist() == [4, 4, 4, 7, 7, 7, 1, 1, 1]
    with pytest.raises(ValueError, match="multiple of 4"):
        rotation.split_rotations(torch.zeros(6, 2))


# ---------- heads ----------


def test_heads_shapes_and_similarity_matches_explicit_cosine() -> None:
    head = heads.SSHead(6)
    assert [type(m) for m in head] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    assert head(torch.zeros(2, 6)).shape == (2, 6)
    assert heads.ConvReg(3, 5)(torch.randn(4, 3, 2, 2, generator=_gen())).shape == (4, 5, 2, 2)

    rot, orig = _randn(6, 4, seed=1), _randn(2, 4, seed=2)
    sim = heads.similarity_logits(rot, orig)
    assert sim.shape == (6, 2)
    for j in range(6):
        for b in range(2):
            cos = float(rot[j] @ orig[b] / (rot[j].norm() * orig[b].norm()))
            assert sim[j, b].item() == pytest.approx(cos, rel=1e-12)
    # the official broadcast form, including its eps handling of an all-zero row
    rot[0] = 0
    official = torch.nn.functional.cosine_similarity(rot.unsqueeze(1), orig.unsqueeze(0), dim=-1)
    torch.testing.assert_close(heads.similarity_logits(rot, orig), official, rtol=1e-12, atol=0)


# ---------- self-supervised terms ----------


def test_rotation_kd_selects_on_teacher_and_averages_over_kept_rows() -> None:
    teacher = torch.tensor(
        [[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [1.0, 0.5, 0.0], [2.0, 0.0, 1.0], [0.0, 0.5, 1.0]],
        dtype=torch.float64,
    )
    target = torch.tensor([0, 0, 0, 1, 1, 1])  # teacher ranks: 0, 2, 2, 1, 2, 1 -> 5 wrong
    student = _randn(6, 3, seed=3)
    # ratio 0.5 keeps int(2.5) = 2 wrong rows: the two rank-1 rows (3 and 5), plus correct row 0.
    kept = [0, 3, 5]
    expected = _np_kd(student.numpy()[kept], teacher.numpy()[kept], 4.0)
    assert rotation_kd(student, teacher, target, 4.0, 0.5).item() == pytest.approx(expected, rel=1e-10)
    assert rotation_kd(teacher, teacher, target).item() == pytest.approx(0.0, abs=1e-12)


def test_similarity_kd_matches_explicit_loop() -> None:
    teacher_sim = torch.tanh(_randn(6, 2, seed=4))
    student_sim = torch.tanh(_randn(6, 2, seed=5))
    correct = np.arange(6) // 3
    t = teacher_sim.numpy()
    rank = np.array([(t[j] > t[j, correct[j]]).sum() for j in range(6)])  # no ties in random floats
    wrong = np.flatnonzero(rank > 0)
    n_keep = int(len(wrong) * 0.75)
    kept_wrong = sorted(wrong, key=lambda j: (rank[j], j))[:n_keep]
    kept = sorted(list(np.flatnonzero(rank == 0)) + list(kept_wrong))
    expected = _np_kd(student_sim.numpy()[kept], t[kept], 0.5)
    assert similarity_kd(student_sim, teacher_sim).item() == pytest.approx(expected, rel=1e-10)
    assert similarity_kd(teacher_sim, teacher_sim).item() == pytest.approx(0.0, abs=1e-12)


def test_similarity_kd_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="3B x B"):
        similarity_kd(torch.zeros(4, 2), torch.zeros(4, 2))


def test_ss_head_loss_is_raw_cross_entropy_against_image_column() -> None:
    sim = torch.tanh(_randn(6, 2, seed=6))
    log_p = np.log(_np_softmax(sim.numpy()))
    expected = -np.mean([log_p[j, j // 3] for j in range(6)])
    assert ss_head_loss(sim).item() == pytest.approx(expected, rel=1e-12)


# ---------- relational terms ----------


def test_rkd_distance_matches_explicit_loop() -> None:
    s, t = _randn(5, 3, seed=7), _randn(5, 4, seed=8)
    expected = _np_smooth_l1(_np_dist(s.numpy()), _np_dist(t.numpy()))
    assert rkd_distance(s, t).item() == pytest.approx(expected, rel=1e-9)


def test_rkd_distance_scale_invariant_and_zero_when_equal() -> None:
    s, t = _randn(6, 3, seed=9), _randn(6, 5, seed=10)
    base = rkd_distance(s, t).item()
    assert rkd_distance(3.0 * s, 0.2 * t).item() == pytest.approx(base, rel=1e-9)
    assert rkd_distance(s, s.clone()).item() == pytest.approx(0.0, abs=1e-12)


def test_rkd_distance_single_row_is_zero_not_nan() -> None:
    s = torch.ones(1, 3, requires_grad=True)
    loss = rkd_distance(s, torch.ones(1, 4))
    assert loss.item() == 0.0
    loss.backward()


def test_rkd_angle_matches_explicit_triple_loop() -> None:
    s, t = _randn(4, 3, seed=11), _randn(4, 2, seed=12)
    expected = _np_smooth_l1(_np_angles(s.numpy()), _np_angles(t.numpy()))
    assert rkd_angle(s, t).item() == pytest.approx(expected, rel=1e-9)


def test_rkd_angle_scale_translation_invariant_and_zero_when_equal() -> None:
    s, t = _randn(5, 3, seed=13), _randn(5, 4, seed=14)
    base = rkd_angle(s, t).item()
    assert rkd_angle(2.5 * s + 7.0, 0.3 * t - 1.0).item() == pytest.approx(base, rel=1e-9)
    assert rkd_angle(s, s.clone()).item() == pytest.approx(0.0, abs=1e-12)


def test_rkd_teacher_side_gets_no_grad() -> None:
    s, t = _randn(4, 3, seed=15).requires_grad_(), _randn(4, 3, seed=16).requires_grad_()
    (rkd_distance(s, t) + rkd_angle(s, t)).backward()
    assert t.grad is None and s.grad is not None and torch.isfinite(s.grad).all()


# ---------- Gram ----------


def test_gram_matrix_and_loss_match_numpy() -> None:
    s, t = _randn(2, 3, 2, 2, seed=17), _randn(2, 3, 2, 2, seed=18)
    np.testing.assert_allclose(gram_matrix(s).numpy(), _np_gram(s.numpy()), rtol=1e-12)
    expected = math.sqrt(((_np_gram(s.numpy()) - _np_gram(t.numpy())) ** 2).mean())
    assert gram_loss(s, t).item() == pytest.approx(expected, rel=1e-12)


def test_gram_loss_at_equality_is_floor_with_finite_gradient() -> None:
    t = _randn(2, 3, 2, 2, seed=19)
    s = t.clone().requires_grad_()
    loss = gram_loss(s, t)
    assert 0.0 <= loss.item() <= 1e-6
    loss.backward()
    assert torch.isfinite(s.grad).all()


def test_gram_loss_rejects_unprojected_student() -> None:
    with pytest.raises(ValueError, match="ConvReg"):
        gram_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2))


# ---------- composite objectives ----------


def _features(rows: int, num_classes: int, dim: int, seed: int) -> Features:
    fmap = torch.rand(rows, dim, 2, 2, generator=_gen(seed), dtype=torch.float64)
    return Features(fmap, fmap.mean(dim=(2, 3)), _randn(rows, num_classes, seed=seed + 1))


def _ssdkd_inputs(batch: int = 2) -> dict:
    student, teacher = _features(4 * batch, 3, 4, seed=20), _features(4 * batch, 3, 5, seed=30)
    return {
        "student": student._replace(logits=student.logits.requires_grad_()),
        "teacher": teacher,
        "student_sim": torch.tanh(_randn(3 * batch, batch, seed=40)).requires_grad_(),
        "teacher_sim": torch.tanh(_randn(3 * batch, batch, seed=41)),
        "student_fmap_projected": torch.rand(4 * batch, 5, 2, 2, generator=_gen(42), dtype=torch.float64),
        "targets": torch.tensor([0, 2]),
        "class_weights": torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64),
    }


def test_ssdkd_loss_terms_follow_the_spec_and_total_is_their_sum() -> None:
    inp, w = _ssdkd_inputs(), SSDKDWeights()
    out = ssdkd_loss(**inp, w=w)
    assert list(out) == ["ce", "kd", "rot", "sim", "dist", "angle", "gram", "total"]
    s, t = inp["student"], inp["teacher"]
    s_orig, s_rot = s.logits[0::4], s.logits[[i for i in range(8) if i % 4]]
    t_orig, t_rot = t.logits[0::4], t.logits[[i for i in range(8) if i % 4]]
    expected = {
        "ce": 0.1 * weighted_cross_entropy(s_orig, inp["targets"], inp["class_weights"]),
        "kd": 0.9 * kd_kl(s_orig, t_orig, 4.0),
        "rot": 2.7 * rotation_kd(s_rot, t_rot, torch.tensor([0, 0, 0, 2, 2, 2]), 4.0, 1.0),
        "sim": 10.0 * similarity_kd(inp["student_sim"], inp["teacher_sim"], 0.5, 0.75),
        "dist": 25.0 * rkd_distance(s.embedding, t.embedding),
        "angle": 50.0 * rkd_angle(s.embedding, t.embedding),
        "gram": 1000.0 * gram_loss(inp["student_fmap_projected"], t.feature_map),
    }
    for name, value in expected.items():
        torch.testing.assert_close(out[name], value, msg=name)
        assert out[name].item() > 0, name
    torch.testing.assert_close(out["total"], sum(out[name] for name in expected), rtol=1e-12, atol=0.0)
    out["total"].backward()
    assert torch.isfinite(s.logits.grad).all()


def test_ssdkd_loss_relational_weight_scales_all_three_relational_terms() -> None:
    inp = _ssdkd_inputs()
    base, half = ssdkd_loss(**inp), ssdkd_loss(**inp, w=SSDKDWeights(relational=0.5))
    for name in ("dist", "angle", "gram"):
        torch.testing.assert_close(half[name], 0.5 * base[name])
    torch.testing.assert_close(half["ce"], base["ce"])


def test_switched_off_terms_are_not_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("a term with weight 0 was computed")

    for name in ("similarity_kd", "rotation_kd", "rkd_distance", "rkd_angle", "gram_loss"):
        monkeypatch.setattr(combined, name, must_not_run)
    out = ssdkd_loss(**_ssdkd_inputs(), w=SSDKDWeights(rot=0.0, sim=0.0, relational=0.0))
    for name in ("rot", "sim", "dist", "angle", "gram"):
        assert out[name].item() == 0.0
    torch.testing.assert_close(out["total"], out["ce"] + out["kd"])
    out["total"].backward()


def test_ssdkd_loss_rejects_target_count_mismatch() -> None:
    inp = _ssdkd_inputs()
    inp["targets"] = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="3 targets for 8 rows"):
        ssdkd_loss(**inp)


def test_dkd_and_baselines_match_their_formulas() -> None:
    s, t = _features(4, 3, 4, seed=50), _features(4, 3, 6, seed=60)
    proj = torch.rand(4, 6, 2, 2, generator=_gen(70), dtype=torch.float64)
    y, cw = torch.tensor([0, 1, 2, 1]), torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    wce = weighted_cross_entropy(s.logits, y, cw)

    dkd = dkd_loss(s, t, proj, y, cw)
    torch.testing.assert_close(
        dkd["total"],
        0.5 * wce
        + 0.5 * kd_kl(s.logits, t.logits, 5.0)
        + 25.0 * rkd_distance(s.embedding, t.embedding)
        + 50.0 * rkd_angle(s.embedding, t.embedding)
        + 1000.0 * gram_loss(proj, t.feature_map),
    )
    kd = kd_loss(s, t, y, cw)
    torch.testing.assert_close(kd["total"], 0.1 * wce + 0.9 * kd_kl(s.logits, t.logits, 4.0))
    rkd = rkd_loss(s, t, y, cw)
    torch.testing.assert_close(
        rkd["total"], wce + 25.0 * rkd_distance(s.embedding, t.embedding) + 50.0 * rkd_angle(s.embedding, t.embedding)
    )
    scratch = scratch_loss(s.logits, y, cw)
    assert list(scratch) == ["ce", "total"]
    torch.testing.assert_close(scratch["total"], wce)
    for out in (dkd, kd, rkd):
        torch.testing.assert_close(out["total"], sum(v for k, v in out.items() if k != "total"))


def test_default_weights_are_the_official_ones() -> None:
    official = (0.1, 0.9, 4.0, 2.7, 4.0, 1.0, 10.0, 0.5, 0.75, 1.0, 25.0, 50.0, 1000.0)
    assert dataclasses.astuple(SSDKDWeights()) == official
    assert dataclasses.astuple(DKDWeights()) == (0.5, 0.5, 5.0, 25.0, 50.0, 1000.0)
    assert dataclasses.astuple(KDWeights()) == (0.1, 0.9, 4.0)
    assert dataclasses.astuple(RKDWeights()) == (1.0, 25.0, 50.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SSDKDWeights().ce = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (SSDKDWeights, "gram", -1.0),
        (SSDKDWeights, "kd_T", 0.0),
        (SSDKDWeights, "sim_T", -0.5),
        (SSDKDWeights, "ratio_ss", 1.5),
        (SSDKDWeights, "ratio_tf", -0.1),
        (SSDKDWeights, "ce", math.nan),
        (SSDKDWeights, "rot_T", math.inf),
        (DKDWeights, "kd_T", 0.0),
        (KDWeights, "kd", -0.9),
        (RKDWeights, "angle", -50.0),
    ],
)
def test_weight_validation_names_the_field(cls: type, field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field} "):
        cls(**{field: value})
    valid = cls()
    object.__setattr__(valid, field, value)  # bypass construction to check validate() on its own
    with pytest.raises(ValueError, match=field):
        valid.validate()


@pytest.mark.parametrize("shape", [(3, 40, 2, 2), (2, 9, 2, 3)])
def test_gram_loss_spatial_kernel_path_matches_explicit_grams(shape) -> None:
    # C > H*W takes the HW x HW kernel route; it must equal the explicit C x C definition.
    s = torch.randn(*shape, dtype=torch.float64)
    t = torch.randn(*shape, dtype=torch.float64)
    explicit = ((gram_matrix(s) - gram_matrix(t)) ** 2).mean().sqrt()
    assert gram_loss(s, t).item() == pytest.approx(explicit.item(), rel=1e-10)


def test_rkd_angle_gram_form_matches_difference_vectors_and_has_finite_gradients() -> None:
    # The loss is computed from inner products; check it against the definition on the N x N x D differences.
    torch.manual_seed(0)
    s = torch.randn(12, 40, dtype=torch.float64, requires_grad=True)
    t = torch.randn(12, 30, dtype=torch.float64)

    def explicit(e: torch.Tensor) -> torch.Tensor:
        unit = torch.nn.functional.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2, eps=1e-12)
        return torch.bmm(unit, unit.transpose(1, 2)).flatten()

    expected = torch.nn.functional.smooth_l1_loss(explicit(s), explicit(t))
    loss = rkd_angle(s, t)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    s32 = s.detach().float().requires_grad_()
    rkd_angle(s32, t.float()).backward()
    assert torch.isfinite(s32.grad).all()


def test_rkd_angle_float32_is_accurate_far_from_the_origin_and_zero_on_duplicates() -> None:
    # Post-ReLU embeddings sit far from the origin: uncentred float32 inner products would cancel catastrophically.
    torch.manual_seed(1)
    e = torch.rand(16, 64, dtype=torch.float64) + 50.0
    e[5] = e[3]  # an exact duplicate: e_35 = e_53 = 0
    unit = torch.nn.functional.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2, eps=1e-12)
    expected = torch.bmm(unit, unit.transpose(1, 2))
    got = _angles(e.float()).view(16, 16, 16).double()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    i = torch.arange(16)
    assert (got[3, 5] == 0).all() and (got[3, :, 5] == 0).all() and (got[i, i] == 0).all() and (got[i, :, i] == 0).all()


def test_gram_loss_float32_stays_accurate_when_student_nears_teacher() -> None:
    # Training runs in float32; near convergence G_S ~ G_T and an expansion into large terms would cancel to noise.
    torch.manual_seed(2)
    t = torch.rand(4, 256, 4, 4, dtype=torch.float64) * 6
    s = t + 1e-3 * torch.randn_like(t)
    explicit = ((gram_matrix(s) - gram_matrix(t)) ** 2).mean().sqrt().item()
    s32 = s.float().requires_grad_()
    assert gram_loss(s32, t.float()).item() == pytest.approx(explicit, rel=2e-3)
    gram_loss(s32, t.float()).backward()
    s64 = s.clone().requires_grad_()
    ((gram_matrix(s64) - gram_matrix(t)) ** 2).mean().sqrt().backward()
    torch.testing.assert_close(s32.grad.double(), s64.grad, rtol=1e-2, atol=1e-3 * s64.grad.abs().max().item())


def test_gram_loss_hand_written_gradient_passes_gradcheck() -> None:
    s = torch.randn(2, 12, 2, 2, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 12, 2, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: gram_loss(s, t), (s,))
    s_cl = s.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: gram_loss(s, t), (s_cl,))
