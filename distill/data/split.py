"""Seeded, stratified, lesion-grouped train/val/test splits, saved to a JSON split file.

HAM10000 has several images per lesion: splitting images at random would put near-duplicates of one
lesion in train and test. Groups (``lesion_id``) are assigned whole, class by class, so each split keeps
the class proportions.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from distill.data.records import LabeledImages, Record
from models.atomic import atomic_write_json
from models.errors import InputError

SPLIT_VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    train: list[str]
    val: list[str]
    test: list[str]
    seed: int
    val_frac: float
    test_frac: float

    def ids(self, name: str) -> list[str]:
        if name not in SPLITS:
            raise InputError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)


def make_split(ds: LabeledImages, seed: int = 2021, val_frac: float = 0.15, test_frac: float = 0.15) -> Split:
    """Assign whole groups to splits, stratified by each group's (majority) class.

    Within each class, groups are shuffled with ``seed`` and dealt greedily to whichever split is
    furthest below its target image count, so small classes still reach every split.
    """
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise InputError(f"split fractions must be in [0, 1) and sum below 1 (val={val_frac}, test={test_frac})")
    by_group: dict[str, list[Record]] = defaultdict(list)
    for r in ds.records:
        by_group[r.group].append(r)
    groups_of_class: dict[int, list[str]] = defaultdict(list)
    for g, recs in sorted(by_group.items()):
        label = Counter(r.label for r in recs).most_common(1)[0][0]
        groups_of_class[label].append(g)
    rng = random.Random(seed)
    fracs = {"train": 1 - val_frac - test_frac, "val": val_frac, "test": test_frac}
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for label in sorted(groups_of_class):
        groups = groups_of_class[label]
        rng.shuffle(groups)
        total = sum(len(by_group[g]) for g in groups)
        have = dict.fromkeys(SPLITS, 0)
        wanted = [s for s in SPLITS if fracs[s] > 0]
        for i, g in enumerate(groups):
            # First make sure every wanted split has one group of this class, then fill by deficit.
            target = wanted[i] if i < len(wanted) else max(wanted, key=lambda s: fracs[s] * total - have[s])
            out[target].extend(r.image_id for r in by_group[g])
            have[target] += len(by_group[g])
    split = Split(sorted(out["train"]), sorted(out["val"]), sorted(out["test"]), seed, val_frac, test_frac)
    check_split_classes(ds, split)
    return split


def check_split_classes(ds: LabeledImages, split: Split) -> None:
    """Every class must appear in every non-empty split (an empty class breaks weights and metrics)."""
    label = {r.image_id: r.label for r in ds.records}
    for name in SPLITS:
        ids = split.ids(name)
        if not ids:
            continue
        present = Counter(label[i] for i in ids)
        empty = [c for i, c in enumerate(ds.classes) if present.get(i, 0) == 0]
        if empty:
            raise InputError(
                f"{ds.root}: class(es) {', '.join(empty)} have no images in the {name} split "
                f"(too few lesions; add data or lower the split fractions)"
            )


def save_split(path: str | Path, split: Split, ds: LabeledImages) -> Path:
    label = {r.image_id: ds.classes[r.label] for r in ds.records}
    payload = {
        "version": SPLIT_VERSION,
        "dataset": str(ds.root),
        "layout": ds.layout,
        "classes": list(ds.classes),
        "seed": split.seed,
        "val_frac": split.val_frac,
        "test_frac": split.test_frac,
        "grouped_by": "lesion_id" if any(r.group != r.image_id for r in ds.records) else "image",
        "counts": {s: dict(Counter(label[i] for i in split.ids(s))) for s in SPLITS},
        **{s: split.ids(s) for s in SPLITS},
    }
    return atomic_write_json(path, payload)


def load_split(path: str | Path, ds: LabeledImages | None = None) -> Split:
    """Read a split file; with ``ds``, check every id is in the dataset."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
        split = Split(list(d["train"]), list(d["val"]), list(d["test"]), int(d["seed"]),
                      float(d["val_frac"]), float(d["test_frac"]))
    except FileNotFoundError:
        raise InputError(f"{path}: split file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path}: not a valid split file ({e})") from None
    if ds is not None:
        known = {r.image_id for r in ds.records}
        for s in SPLITS:
            unknown = [i for i in split.ids(s) if i not in known]
            if unknown:
                raise InputError(f"{path}: {len(unknown)} {s} image(s) not in {ds.root}, e.g. {unknown[0]!r}")
    return split


def resolve_split(ds: LabeledImages, split_file: str | Path | None, seed: int, val_frac: float,
                  test_frac: float) -> Split:
    """Use ``split_file`` if it exists (so every stage sees the same images), else make a new split."""
    if split_file is not None and Path(split_file).is_file():
        return load_split(split_file, ds)
    return make_split(ds, seed, val_frac, test_frac)
