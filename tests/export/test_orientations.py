"""Verification sees each val image in up to eight orientations, made on the fly from the one stored copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export import export
from export.calibration import ORIENTATIONS, ImageSet, orient
from export.verify import bacc_change_interval
from models.errors import InputError
from models.preprocessing import Preprocessing, quantize

RNG = np.random.default_rng(0)


def _image_set(n: int = 5, size: int = 6) -> ImageSet:
    x = RNG.normal(size=(n, size, size, 3)).astype(np.float32)
    return ImageSet(x, np.arange(n) % 3, Path("."), "val", "test", groups=np.array([f"L{i // 2}" for i in range(n)]))


def test_the_eight_orientations_are_the_flips_and_right_angle_turns():
    x = _image_set(1).x
    views = [orient(x, k) for k in range(ORIENTATIONS)]
    assert len({v.tobytes() for v in views}) == ORIENTATIONS  # all distinct on an asymmetric image
    assert np.array_equal(views[0], x)
    assert np.array_equal(views[1], x[:, :, ::-1]) and np.array_equal(views[2], x[:, ::-1])
    assert np.array_equal(views[3], np.rot90(x, 2, axes=(1, 2)))
    turns = {np.rot90(x, k, axes=(1, 2)).tobytes() for k in (1, 3)}
    assert {views[5].tobytes(), views[6].tobytes()} == turns
    assert np.array_equal(views[4], x.transpose(0, 2, 1, 3))
    # the first 2 and the first 4 orientations are groups: composing two of them gives one of them
    for n in (2, 4):
        members = {views[k].tobytes() for k in range(n)}
        for a in range(n):
            for b in range(n):
                assert orient(orient(x, a), b).tobytes() in members
    with pytest.raises(ValueError, match="orientation must be in"):
        orient(x, 8)


def test_rows_are_every_image_in_every_orientation_in_orientation_major_order():
    images = _image_set(5)
    seen = images.with_orientations(ORIENTATIONS)
    assert len(seen) == 5 * ORIENTATIONS and seen.x is images.x  # no copies stored
    assert np.array_equal(seen.labels, np.tile(images.labels, ORIENTATIONS))
    assert np.array_equal(seen.groups, np.tile(images.groups, ORIENTATIONS))
    want = np.concatenate([orient(images.x, k) for k in range(ORIENTATIONS)])
    assert np.array_equal(seen.rows(), want)
    for start, stop in [(3, 12), (0, 1), (9, 40), (38, 99)]:  # batches that straddle orientations, or overrun
        assert np.array_equal(seen.rows(start, stop), want[start:stop])
    assert seen.rows(40, 45).shape == (0, 6, 6, 3)
    # integer, NCHW inputs go through the same shared quantisation as unrotated ones
    pre = Preprocessing(input_size=6, mean=(0.5,) * 3, std=(0.5,) * 3, labels=("a", "b", "c"), layout="NCHW",
                        input_dtype="int8", input_scale=0.05, input_zero_point=3)
    assert np.array_equal(seen.model_input(pre, 4, 13),
                          quantize(np.ascontiguousarray(want[4:13].transpose(0, 3, 1, 2)), 0.05, 3, "int8"))
    # re-orienting starts again from the images, not from the rows
    assert len(seen.with_orientations(2)) == 10
    assert seen.describe()["n_images"] == 5 and seen.describe()["orientations"] == ORIENTATIONS
    with pytest.raises(ValueError, match="orientations must be one of"):
        images.with_orientations(3)


def test_orientations_of_one_image_are_resampled_together():
    # One image flips in all 8 orientations. Its 8 rows share its group, so a resample draws them together and the
    # interval is exactly that of the single image; treating the 8 rows as independent would narrow it.
    labels = np.repeat([0, 1], 10)
    ref = labels.copy()
    pred = labels.copy()
    pred[0] = 1
    base = ImageSet(np.zeros((20, 2, 2, 3), np.float32), labels, Path("."), "val", "t", groups=np.arange(20))
    seen = base.with_orientations(8)
    tiled_pred, tiled_ref = np.tile(pred, 8), np.tile(ref, 8)
    grouped = bacc_change_interval(tiled_pred, tiled_ref, seen.labels, seen.groups)
    independent = bacc_change_interval(tiled_pred, tiled_ref, seen.labels, None)
    assert grouped == bacc_change_interval(pred, ref, labels, base.groups)
    assert grouped[0] < independent[0]


def test_export_rejects_an_orientation_count_that_is_not_a_group(trained_checkpoint, tmp_path):
    with pytest.raises(InputError, match="--val-orientations must be one of 1, 2, 4, 8"):
        export(trained_checkpoint, targets="onnx", out_dir=tmp_path / "o", val_orientations=3, verbose=False)
    assert not (tmp_path / "o").exists()


def test_export_report_names_the_orientations(exported):
    val = exported.settings["val"]
    assert val["orientations"] == ORIENTATIONS == exported.settings["val_orientations"]
    assert exported.reference["n_images"] == val["n_images"] * ORIENTATIONS
    for a in exported.artifacts:
        if a.verification.agreement is not None:
            assert a.verification.n_images == exported.reference["n_images"]
    assert f"x {ORIENTATIONS} orientations" in exported.table()


def test_fp32_artifacts_match_pytorch_in_every_orientation(exported):
    """fp32 files match PyTorch on every row, so each rotated input reaches both identically."""
    fp32 = [a for a in exported.artifacts if a.precision == "fp32" and a.verification.agreement is not None]
    assert fp32 and all(a.verification.max_abs_dsoftmax < 1e-4 for a in fp32)

