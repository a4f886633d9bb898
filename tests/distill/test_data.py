"""ISIC 2019 reader, lesion-grouped splits and the bad-input corpus."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distill.cli import main as distill_main
from distill.data import ImageDataset, load_labeled_images, load_split, make_split, save_split
from distill.data.check import check_data
from distill.data.records import GT_CSV, IMAGE_DIR, META_CSV, parse_ground_truth
from models import InputError
from models.atomic import ensure_writable_dir
from models.preprocessing import Preprocessing

HAM_COUNTS = {"NV": 6705, "MEL": 1113, "BKL": 1099, "BCC": 514, "SCC": 197, "VASC": 142, "AK": 130, "DF": 115}
HEADER = ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def test_shared_ham10000_counts_and_lesions(ham_root: Path) -> None:
    ds = load_labeled_images(ham_root)
    assert len(ds.records) == 10015
    assert ds.counts() == {c: HAM_COUNTS[c] for c in ds.classes}
    assert ds.num_groups() == 7470


def test_split_is_lesion_grouped_stratified_and_reproducible(ham_root: Path, tmp_path: Path) -> None:
    ds = load_labeled_images(ham_root)
    split = make_split(ds, seed=2021)
    group = {r.image_id: r.group for r in ds.records}
    groups = {s: {group[i] for i in split.ids(s)} for s in ("train", "val", "test")}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    assert len(split.train) + len(split.val) + len(split.test) == 10015
    label = {r.image_id: r.label for r in ds.records}
    for s in ("val", "test"):
        frac = Counter(label[i] for i in split.ids(s))
        for c, n in ds.counts().items():
            share = frac[ds.classes.index(c)] / n
            assert 0.08 < share < 0.25, (s, c, share)
    assert make_split(ds, seed=2021) == split
    assert make_split(ds, seed=7).val != split.val
    save_split(tmp_path / "split.json", split, ds)
    assert load_split(tmp_path / "split.json", ds) == split


def test_full_isic2019_label_file_parses(isic_labels_root: Path) -> None:
    rows, problems = parse_ground_truth(isic_labels_root / GT_CSV)
    assert not problems and len(rows) == 25331
    assert Counter(c for _, _, c in rows) == {"NV": 12875, "MEL": 4522, "BCC": 3323, "BKL": 2624, "AK": 867,
                                              "SCC": 628, "VASC": 253, "DF": 239}


def test_embedded_sample_is_small_real_and_complete(sample_root: Path) -> None:
    ds = load_labeled_images(sample_root)
    assert set(ds.counts()) == set(HAM_COUNTS) and min(ds.counts().values()) >= 30
    size = sum(p.stat().st_size for p in sample_root.rglob("*") if p.is_file())
    assert size < 10 * 2**20
    assert "CC BY-NC 4.0" in (sample_root / "README.md").read_text()
    split = make_split(ds, seed=2021)
    assert len(split.train) >= 200 and len(split.val) >= 32


def test_eval_dataset_uses_the_shared_preprocessing(sample_root: Path) -> None:
    ds = load_labeled_images(sample_root)
    pre = Preprocessing(input_size=64, mean=(0.5,) * 3, std=(0.25,) * 3, labels=ds.classes)
    x, y = ImageDataset(ds.records[:1], 64, pre.mean, pre.std)[0]
    expected = pre.model_input(pre.pixels(ds.records[0].path))[0]
    np.testing.assert_array_equal(x.numpy(), expected)
    xt, _ = ImageDataset(ds.records[:1], 64, pre.mean, pre.std, train=True)[0]
    assert xt.shape == (3, 64, 64) and np.isfinite(xt.numpy()).all()


# ---------------------------------------------------------------- bad-input corpus


def _make_dataset(root: Path, rows: list[list[str]], images: dict[str, str] | None = None,
                  header: list[str] = HEADER, meta: list[list[str]] | None = None) -> Path:
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    with open(root / GT_CSV, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    for image_id, mode in (images or {}).items():
        _write_image(root / IMAGE_DIR / f"{image_id}.jpg", mode)
    if meta is not None:
        with open(root / META_CSV, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "age_approx", "anatom_site_general", "lesion_id", "sex"])
            w.writerows(meta)
    return root


def _write_image(path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    if mode == "corrupt":
        good = path.with_suffix(".tmp.jpg")
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(good, "JPEG")
        path.write_bytes(good.read_bytes()[:300])
        good.unlink()
    elif mode == "L":
        Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8), "L").save(path, "JPEG")
    elif mode == "RGBA":
        Image.fromarray(rng.integers(0, 255, (40, 50, 4), dtype=np.uint8), "RGBA").save(path.with_suffix(".png"))
    elif mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, (40, 50), dtype=np.uint16)).save(path.with_suffix(".png"))
    else:
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path, "JPEG")


def _onehot(image_id: str, cls: str, floats: bool = True) -> list[str]:
    one, zero = ("1.0", "0.0") if floats else ("1", "0")
    return [image_id] + [one if c == cls else zero for c in HEADER[1:]]


@pytest.mark.parametrize(
    "rows,images,header,match",
    [
        ([_onehot("a", "MEL")], {"a": "RGB"}, ["image", "MEL", "NV"], r"missing class column"),
        ([_onehot("a", "MEL")], {"a": "RGB"}, HEADER[:-1] + ["FOO"], r"unknown class column.*FOO"),
        ([["a"] + ["0.0"] * 9], {"a": "RGB"}, HEADER, r"GroundTruth.csv:2: image a has no class"),
        ([["a", "1", "1"] + ["0"] * 7], {"a": "RGB"}, HEADER, r"image a has 2 classes \(MEL, NV\)"),
        ([_onehot("a", "MEL"), _onehot("a", "NV")], {"a": "RGB"}, HEADER, r"duplicate image id 'a'"),
        ([_onehot("b", "MEL")], {}, HEADER, r"b\.jpg: image listed in .* row 2 is missing"),
        ([_onehot("../x", "MEL")], {}, HEADER, r"'\.\./x' is not a plain file name"),
        ([["a", "0.5"] + ["0"] * 8], {"a": "RGB"}, HEADER, r"must be 0 or 1"),
        ([["a", "yes"] + ["0"] * 8], {"a": "RGB"}, HEADER, r"must be 0/1 numbers"),
    ],
)
def test_bad_csv_rows_give_one_line_errors_naming_file_and_row(tmp_path, rows, images, header, match) -> None:
    root = _make_dataset(tmp_path / "ds", rows, images, header)
    with pytest.raises(InputError, match=match) as e:
        load_labeled_images(root)
    assert "\n" not in str(e.value)


def test_missing_csv_and_missing_root(tmp_path: Path) -> None:
    (tmp_path / "ds" / IMAGE_DIR).mkdir(parents=True)
    with pytest.raises(InputError, match="ground-truth CSV not found"):
        load_labeled_images(tmp_path / "ds")
    with pytest.raises(InputError, match="dataset directory not found"):
        load_labeled_images(tmp_path / "nope")


def test_int_and_float_one_hot_unk_and_odd_image_modes(tmp_path: Path) -> None:
    rows = [_onehot("a", "MEL", floats=False), _onehot("b", "NV"), _onehot("c", "UNK"), _onehot("g", "BCC"),
            _onehot("r", "AK"), _onehot("w", "BKL")]
    root = _make_dataset(tmp_path / "ds", rows,
                         {"a": "RGB", "b": "RGB", "c": "RGB", "g": "L", "r": "RGBA", "w": "I;16"},
                         meta=[["a", "50", "", "L1", "male"], ["b", "40", "", "L1", "female"]])
    ds = load_labeled_images(root)
    assert [r.image_id for r in ds.records] == ["a", "b", "g", "r", "w"] and ds.excluded == {"UNK": 1}
    assert ds.records[0].group == ds.records[1].group == "L1"
    with_unk = load_labeled_images(root, include_unk=True)
    assert with_unk.excluded == {} and with_unk.classes[-1] == "UNK" and len(with_unk.records) == 6
    for r in ds.records:  # grayscale, RGBA and 16-bit PNG are converted, not fatal
        pre = Preprocessing(input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, labels=ds.classes)
        x = pre.model_input(pre.pixels(r.path))
        assert x.shape == (1, 3, 32, 32) and np.isfinite(x).all()


def test_corrupt_jpeg_is_named_by_check_data_and_the_loader(tmp_path: Path, capsys) -> None:
    rows = [_onehot("a", "MEL"), _onehot("bad", "NV")]
    root = _make_dataset(tmp_path / "ds", rows, {"a": "RGB", "bad": "corrupt"})
    report = check_data(root, progress=False)
    assert not report.ok and any("bad.jpg" in p and "corrupt" in p for p in report.problems)
    ds = load_labeled_images(root)
    with pytest.raises(InputError, match=r"bad\.jpg: unreadable or corrupt image"):
        ImageDataset(ds.records, 32, (0.5,) * 3, (0.5,) * 3)[1]
    assert distill_main(["check-data", "--data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "bad.jpg" in out and "images    1" in out


def test_check_data_summary_of_the_sample(sample_root: Path, capsys) -> None:
    assert distill_main(["check-data", "--data", str(sample_root), "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["images"] == 370 and report["per_class"]["NV"] >= 90
    assert report["lesions"] < report["images"]


def test_empty_class_in_a_split_is_an_error(tmp_path: Path) -> None:
    rows = [_onehot(f"n{i}", "NV") for i in range(12)] + [_onehot("m0", "MEL")]
    images = {f"n{i}": "RGB" for i in range(12)} | {"m0": "RGB"}
    ds = load_labeled_images(_make_dataset(tmp_path / "ds", rows, images))
    with pytest.raises(InputError, match=r"have no images in the train split"):
        make_split(ds, seed=0)


def test_class_folder_layout(tmp_path: Path, sample_root: Path) -> None:
    ds = load_labeled_images(sample_root)
    for r in ds.records[:40]:
        d = tmp_path / "folders" / ds.classes[r.label]
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(r.path, d / r.path.name)
    folders = load_labeled_images(tmp_path / "folders")
    assert folders.layout == "folder"
    assert list(folders.classes) == [c for c in ds.classes if c in folders.classes]  # ISIC order kept
    assert len(folders.records) == 40


def test_unwritable_output_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create output directory|not a directory"):
        ensure_writable_dir(blocker / "run")
    with pytest.raises(InputError, match="not a directory"):
        ensure_writable_dir(blocker)
