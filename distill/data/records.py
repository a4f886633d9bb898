"""Labelled image records and the two on-disk layouts they are read from.

- ISIC 2019: ``ISIC_2019_Training_Input/<image>.jpg``, ``ISIC_2019_Training_GroundTruth.csv`` (one-hot,
  floats or ints) and optionally ``ISIC_2019_Training_Metadata.csv`` (``lesion_id`` groups images of one lesion).
- class-per-folder: ``ROOT/<CLASS>/<image>.{jpg,jpeg,png}`` for users' own data.

Problems are collected, not raised one at a time, so ``check-data`` can list them all; readers raise
:class:`InputError` with the first problem (and how many more) unless ``skip_bad`` drops bad rows.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from models.checkpoint import ISIC_CLASSES
from models.errors import InputError

GT_CSV = "ISIC_2019_Training_GroundTruth.csv"
META_CSV = "ISIC_2019_Training_Metadata.csv"
IMAGE_DIR = "ISIC_2019_Training_Input"
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Record:
    image_id: str
    path: Path
    label: int
    group: str  # lesion_id when known, else the image id: images of one group never cross splits


@dataclass
class LabeledImages:
    root: Path
    layout: str
    classes: tuple[str, ...]
    records: list[Record]
    problems: list[str] = field(default_factory=list)  # kept only when skip_bad dropped rows
    excluded: dict[str, int] = field(default_factory=dict)  # e.g. {"UNK": 12}

    def counts(self) -> dict[str, int]:
        c = Counter(r.label for r in self.records)
        return {name: c.get(i, 0) for i, name in enumerate(self.classes)}

    def num_groups(self) -> int:
        return len({r.group for r in self.records})

    def subset(self, ids: list[str] | set[str]) -> list[Record]:
        wanted = set(ids)
        return [r for r in self.records if r.image_id in wanted]


def load_labeled_images(root: str | Path, include_unk: bool = False, skip_bad: bool = False) -> LabeledImages:
    """Read either layout, detected from what ``root`` contains."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: dataset directory not found")
    if not root.is_dir():
        raise InputError(f"{root}: expected a dataset directory, got a file")
    if (root / GT_CSV).exists() or (root / IMAGE_DIR).exists():
        ds = read_isic2019(root, include_unk=include_unk)
    else:
        ds = read_class_folders(root)
    return _finish(ds, skip_bad)


def _finish(ds: LabeledImages, skip_bad: bool) -> LabeledImages:
    if ds.problems and not skip_bad:
        more = f" (and {len(ds.problems) - 1} more problems; run `ssdkd-distill check-data --data {ds.root}`)"
        raise InputError(ds.problems[0] + (more if len(ds.problems) > 1 else ""))
    if not ds.records:
        raise InputError(f"{ds.root}: no usable labelled images")
    return ds


def parse_ground_truth(gt: Path) -> tuple[list[tuple[int, str, str]], list[str]]:
    """Parse the official ground-truth CSV into ``(line, image_id, class)`` rows plus problem lines.

    Accepts one-hot floats ("1.0") or ints ("1"), with or without the UNK column.
    """
    if not gt.is_file():
        raise InputError(f"{gt}: ground-truth CSV not found (expected the ISIC 2019 layout)")
    rows, header = _read_csv(gt)
    if not header or header[0] != "image":
        raise InputError(f"{gt}: first column must be 'image', got {header[:1]}")
    cols = header[1:]
    unknown = [c for c in cols if c not in ISIC_CLASSES and c != "UNK"]
    if unknown:
        raise InputError(f"{gt}: unknown class column(s) {unknown}; expected {', '.join(ISIC_CLASSES)}[, UNK]")
    missing = [c for c in ISIC_CLASSES if c not in cols]
    if missing:
        raise InputError(f"{gt}: missing class column(s) {missing}")
    problems: list[str] = []
    parsed: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for lineno, row in rows:
        where = f"{gt}:{lineno}"
        if len(row) != len(header):
            problems.append(f"{where}: expected {len(header)} fields, got {len(row)}")
            continue
        image_id = row[0].strip()
        if not _SAFE_ID.match(image_id):
            problems.append(f"{where}: image id {image_id!r} is not a plain file name")
            continue
        if image_id in seen:
            problems.append(f"{where}: duplicate image id {image_id!r}")
            continue
        seen.add(image_id)
        try:
            values = [float(v) for v in row[1:]]
        except ValueError:
            problems.append(f"{where}: class values must be 0/1 numbers, got {row[1:]}")
            continue
        if any(v not in (0.0, 1.0) for v in values):
            problems.append(f"{where}: class values must be 0 or 1, got {row[1:]}")
            continue
        hot = [c for c, v in zip(cols, values) if v == 1.0]
        if len(hot) != 1:
            what = "no class" if not hot else f"{len(hot)} classes ({', '.join(hot)})"
            problems.append(f"{where}: image {image_id} has {what}; expected exactly one")
            continue
        parsed.append((lineno, image_id, hot[0]))
    return parsed, problems


def read_isic2019(root: Path, include_unk: bool = False) -> LabeledImages:
    """Parse the official CSVs and resolve image files; every bad row becomes a problem line."""
    gt = root / GT_CSV
    parsed, problems = parse_ground_truth(gt)
    classes = ISIC_CLASSES + (("UNK",) if include_unk else ())
    groups = _read_groups(root / META_CSV)
    records: list[Record] = []
    excluded: Counter[str] = Counter()
    img_dir = root / IMAGE_DIR
    for lineno, image_id, name in parsed:
        if name not in classes:
            excluded[name] += 1
            continue
        path = _find_image(img_dir, image_id)
        if path is None:
            problems.append(f"{img_dir / image_id}.jpg: image listed in {gt.name} row {lineno} is missing")
            continue
        records.append(Record(image_id, path, classes.index(name), groups.get(image_id) or image_id))
    return LabeledImages(root, "isic2019", classes, records, problems, dict(excluded))


def read_class_folders(root: Path) -> LabeledImages:
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise InputError(
            f"{root}: neither the ISIC 2019 layout ({GT_CSV}) nor class sub-folders (ROOT/<CLASS>/*.jpg) found"
        )
    names = [d.name for d in dirs]
    # Keep the ISIC order when the folders are ISIC classes so labels match the paper's models.
    classes = tuple(c for c in ISIC_CLASSES if c in names) if set(names) <= set(ISIC_CLASSES) else tuple(names)
    records, problems = [], []
    seen: dict[str, Path] = {}
    for d in dirs:
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        if not files:
            problems.append(f"{d}: class folder has no images ({', '.join(IMAGE_EXTS)})")
        for p in files:
            if p.stem in seen:
                problems.append(f"{p}: duplicate image id {p.stem!r} (also {seen[p.stem]})")
                continue
            seen[p.stem] = p
            records.append(Record(p.stem, p, classes.index(d.name), p.stem))
    return LabeledImages(root, "folder", classes, records, problems)


def _read_csv(path: Path) -> tuple[list[tuple[int, list[str]]], list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, r) for r in reader if r and any(x.strip() for x in r)]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 CSV file") from None
    except csv.Error as e:
        raise InputError(f"{path}: malformed CSV ({e})") from None
    return rows, header


def _read_groups(meta: Path) -> dict[str, str]:
    """image -> lesion_id from the metadata CSV, or {} when it (or the column) is absent."""
    if not meta.is_file():
        return {}
    rows, header = _read_csv(meta)
    if "image" not in header:
        raise InputError(f"{meta}: metadata CSV has no 'image' column")
    if "lesion_id" not in header:
        return {}
    i, j = header.index("image"), header.index("lesion_id")
    return {r[i].strip(): r[j].strip() for _, r in rows if len(r) > max(i, j) and r[j].strip()}


def _find_image(img_dir: Path, image_id: str) -> Path | None:
    for ext in IMAGE_EXTS:
        p = img_dir / f"{image_id}{ext}"
        if p.is_file():
            return p
    return None
