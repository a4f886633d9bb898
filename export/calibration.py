"""The one reader of calibration and verification images, shared by every target.

Calibration images come from the *train* split and verification images from the *val* split of the same
lesion-grouped split the model was trained with, so they are disjoint and the test split is never touched:

- the split file named by ``--split``, else the card's ``data.split_file`` beside the checkpoint when it lists
  this dataset's images, else a fresh split made with the card's seed (``data.split_seed``, default 2021);
- both sets are preprocessed exactly as :class:`models.preprocessing.Preprocessing` defines (the contract the
  benchmark harness and the app share) and kept as normalised float32 NHWC arrays.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.data import LabeledImages, Split, load_labeled_images, load_split, make_split
from models.checkpoint import ModelCard
from models.errors import InputError
from models.preprocessing import Preprocessing, normalize, quantize

MIN_CALIBRATION_IMAGES = 32
DEFAULT_SPLIT_SEED = 2021
PixelTransform = Callable[[np.ndarray], np.ndarray]


@dataclass
class ImageSet:
    """Preprocessed images of one split: ``x`` is normalised float32 ``N x S x S x 3`` (NHWC)."""

    x: np.ndarray
    labels: np.ndarray  # indices into the model card's labels
    root: Path
    split: str
    split_source: str
    # one id per image: its lesion (ISIC metadata's lesion_id) where known, else the image itself. Images of one
    # lesion are near-duplicates, so statistics over images resample lesions, not images.
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def model_input(self, pre: Preprocessing, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Images ``start:stop`` in ``pre``'s layout and dtype: the tail of ``Preprocessing.model_input``
        (normalisation is already done), using the shared ``quantize`` so integer inputs match bit for bit."""
        x = self.x[start:stop]
        if pre.layout == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if pre.input_dtype in ("int8", "uint8"):
            return quantize(x, pre.input_scale, pre.input_zero_point, pre.input_dtype)
        return x.astype(pre.input_dtype)

    def describe(self) -> dict:
        return {"root": str(self.root), "split": self.split, "split_source": self.split_source,
                "n_images": len(self)}


def card_data_root(card: ModelCard) -> Path | None:
    root = card.data.get("root")
    return Path(root) if root and Path(root).is_dir() else None


def card_split_file(card: ModelCard, checkpoint: Path) -> Path | None:
    """The card's split file, resolved beside the checkpoint when relative; None when it does not exist."""
    name = card.data.get("split_file")
    if not name:
        return None
    p = Path(name)
    p = p if p.is_absolute() else checkpoint.parent / p
    return p if p.is_file() else None


def resolve_split(ds: LabeledImages, card: ModelCard, checkpoint: Path, split_file: str | Path | None) -> tuple[
        Split, str]:
    """(split, where it came from). An explicit ``split_file`` must match the dataset; the card's one is used
    only if it does (the user may calibrate on another dataset), otherwise a seeded split is made."""
    if split_file is not None:
        return load_split(split_file, ds), str(split_file)
    own = card_split_file(card, checkpoint)
    if own is not None:
        try:
            return load_split(own, ds), str(own)
        except InputError:
            pass  # the card's split describes another dataset: fall through to a fresh split of this one
    seed = int(card.data.get("split_seed", DEFAULT_SPLIT_SEED))
    return make_split(ds, seed=seed), f"make_split(seed={seed})"


def _label_map(ds: LabeledImages, card: ModelCard) -> list[int]:
    """Dataset class index -> model label index, by name; a class the model does not know is an error."""
    unknown = [c for c in ds.classes if c not in card.labels]
    if unknown:
        raise InputError(f"{ds.root}: class(es) {', '.join(unknown)} are not among the model's labels "
                         f"({', '.join(card.labels)})")
    return [card.labels.index(c) for c in ds.classes]


def read_split_images(root: str | Path, which: str, card: ModelCard, checkpoint: Path, pre: Preprocessing,
                      limit: int | None, split_file: str | Path | None = None, seed: int = 0,
                      transform: PixelTransform | None = None) -> ImageSet:
    """Read, sample (seeded, at most ``limit``) and preprocess the ``which`` split ("train" or "val") of ``root``."""
    if which not in ("train", "val"):
        raise ValueError(f"which must be 'train' or 'val' (the test split is never used here), got {which!r}")
    ds = load_labeled_images(root)
    if which == "train" and len(ds.records) < MIN_CALIBRATION_IMAGES:
        raise InputError(f"{ds.root}: only {len(ds.records)} images for calibration; "
                         f"need at least {MIN_CALIBRATION_IMAGES}")
    split, source = resolve_split(ds, card, checkpoint, split_file)
    records = ds.subset(split.ids(which))
    if which == "train" and len(records) < MIN_CALIBRATION_IMAGES:
        raise InputError(f"{ds.root}: only {len(records)} calibration images in its train split "
                         f"({len(ds.records)} images in all); need at least {MIN_CALIBRATION_IMAGES}")
    if not records:
        raise InputError(f"{ds.root}: the {which} split is empty ({source})")
    if limit is not None and len(records) > limit:
        records = random.Random(seed).sample(records, limit)
        records.sort(key=lambda r: r.image_id)
    to_model = _label_map(ds, card)
    x = np.empty((len(records), pre.input_size, pre.input_size, 3), dtype=np.float32)
    for i, r in enumerate(records):
        px = pre.pixels(r.path)
        if transform is not None:
            px = np.asarray(transform(px), dtype=np.float64)
        x[i] = normalize(px, pre.mean, pre.std)
    labels = np.array([to_model[r.label] for r in records], dtype=np.int64)
    groups = np.array([r.group for r in records])
    return ImageSet(x, labels, Path(ds.root), which, source, groups)
