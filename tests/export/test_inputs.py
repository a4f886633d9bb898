"""Bad input fails fast with one line (exit 2), and calibration/verification images come from disjoint splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distill.data import load_labeled_images, load_split
from export.calibration import read_split_images
from export.cli import main
from models import load_checkpoint
from models.errors import InputError


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, never a traceback
    return err[0]


def test_missing_checkpoint(tmp_path, capsys):
    assert main([str(tmp_path / "nope.pt"), "--target", "onnx", "--out", str(tmp_path / "o"), "-q"]) == 2
    assert "checkpoint not found" in _one_line_error(capsys)


def test_foreign_checkpoint(tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert main([str(foreign), "--target", "onnx", "--out", str(tmp_path / "o"), "-q"]) == 2
    assert "not an ssdkd checkpoint" in _one_line_error(capsys)


def test_unwritable_output(trained_checkpoint, tmp_path, capsys):
    # Tests run as root, where permission bits do not stop writes: an output path below a file cannot be created.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([str(trained_checkpoint), "--target", "onnx", "--out", str(blocker / "out"), "-q"]) == 2
    assert "cannot create output directory" in _one_line_error(capsys)
    assert main([str(trained_checkpoint), "--target", "onnx", "--out", str(blocker), "-q"]) == 2
    assert "not a directory" in _one_line_error(capsys)


def _class_folders(root: Path, per_class: int, classes=("MEL", "NV", "BCC", "BKL")) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / c / f"{c}_{i}.png")
    return root


def test_too_few_calibration_images(trained_checkpoint, tmp_path, capsys):
    small = _class_folders(tmp_path / "small", per_class=5)  # 20 images
    argv = [str(trained_checkpoint), "--target", "onnx", "--int8", "--calib", str(small), "--out",
            str(tmp_path / "o"), "-q"]
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert "only 20 images for calibration" in line and "at least 32" in line


def test_calibration_split_too_small_names_both_counts(trained_checkpoint, tmp_path):
    model, card = load_checkpoint(trained_checkpoint)
    root = _class_folders(tmp_path / "forty", per_class=10)  # 40 images, ~28 in the train split
    with pytest.raises(InputError, match=r"only \d+ calibration images in its train split \(40 images in all\)"):
        read_split_images(root, "train", card, Path(trained_checkpoint), card.preprocessing(), 200)


def test_calibration_and_verification_are_disjoint_and_never_test(trained_checkpoint):
    model, card = load_checkpoint(trained_checkpoint)
    ckpt = Path(trained_checkpoint)
    pre = card.preprocessing()
    calib = read_split_images(card.data["root"], "train", card, ckpt, pre, 1000)
    val = read_split_images(card.data["root"], "val", card, ckpt, pre, 1000)
    assert calib.split_source == val.split_source == str(ckpt.parent / "split.json")
    split = load_split(ckpt.parent / "split.json", load_labeled_images(card.data["root"]))
    assert len(calib) == len(split.train) and len(val) == len(split.val)
    assert calib.x.shape[1:] == (card.input_size, card.input_size, 3) and calib.x.dtype == np.float32
    with pytest.raises(ValueError, match="test split is never used"):
        read_split_images(card.data["root"], "test", card, ckpt, pre, 10)


def test_card_split_for_another_dataset_falls_back_to_seeded_split(trained_checkpoint, tmp_path):
    model, card = load_checkpoint(trained_checkpoint)
    root = _class_folders(tmp_path / "other", per_class=16)
    calib = read_split_images(root, "train", card, Path(trained_checkpoint), card.preprocessing(), 200)
    assert calib.split_source == "make_split(seed=2021)"
    assert {card.labels[i] for i in calib.labels} == {"MEL", "NV", "BCC", "BKL"}  # mapped to the model's labels


def test_dataset_with_unknown_class_is_rejected(trained_checkpoint, tmp_path):
    model, card = load_checkpoint(trained_checkpoint)
    root = _class_folders(tmp_path / "alien", per_class=10, classes=("MEL", "NV", "CAT", "DOG"))
    with pytest.raises(InputError, match="CAT, DOG are not among the model's labels"):
        read_split_images(root, "val", card, Path(trained_checkpoint), card.preprocessing(), 200)


def test_bad_flag_values(trained_checkpoint, tmp_path, capsys):
    base = [str(trained_checkpoint), "--out", str(tmp_path / "o"), "-q"]
    assert main(base + ["--target", "onnx", "--fp16"]) == 2
    assert "--fp16 does not apply" in _one_line_error(capsys)
    assert main(base + ["--target", "onnx", "--calib-size", "8"]) == 2
    assert "--calib-size must be at least 32" in _one_line_error(capsys)
    assert main(base + ["--target", "onnx", "--gate-agreement", "120"]) == 2
    assert "percentage in [0, 100]" in _one_line_error(capsys)
    assert main(base + ["--target", "coreml", "--android-demo", str(tmp_path / "app")]) == 2
    assert "needs the TFLite target" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()  # validation happens before anything is written
