"""The one reader of calibration and verification images, shared by every target.

Calibration images come from the *train* split and verification images from the *val* split of the same
lesion-grouped split the model was trained with, so they are disjoint and the test split is never touched:

- the split file named by ``--split``, else the card's ``data.split_file`` beside the checkpoint when it lists
  this dataset's images, else a fresh split made with the card's seed (``data.split_seed``, default 2021);
- both sets are preprocessed exactly as :class:`models.preprocessing.Preprocessing` defines (the contract the
  benchmark harness and the app share) and kept as normalised float32 NHWC arrays;
- verification may see every image in several orientations (:meth:`ImageSet.with_orientations`). A dermoscopic
  image has no canonical orientation (the app's user holds the dermatoscope at any angle, and training augments
  with flips and rotations), so the eight flips and right-angle rotations of a val image are all inputs the model
  must handle; each is a fresh draw of int8 rounding noise on the same image.
"""

from __future__ import annotations

import dataclasses
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
ORIENTATIONS = 8  # the dihedral group of the square: 4 flips x (as is, transposed)
ORIENTATION_COUNTS = (1, 2, 4, ORIENTATIONS)  # the counts whose first orientations form a group (see orient)


def orient(x: np.ndarray, k: int) -> np.ndarray:
    """Orientation ``k`` (0-7) of a batch of square NHWC images: 0 as is, 1 flipped left-right, 2 flipped
    upside down, 3 both (a 180 degree turn); 4-7 the same after transposing, i.e. transposed, turned 90 degrees
    one way and the other, anti-transposed. The first 2 and the first 4 are themselves closed under composition."""
    if not 0 <= k < ORIENTATIONS:
        raise ValueError(f"orientation must be in [0, {ORIENTATIONS}), got {k}")
    if k >= 4:
        x = x.transpose(0, 2, 1, 3)
    if k & 1:
        x = x[:, :, ::-1]
    if k & 2:
        x = x[:, ::-1]
    return x


@dataclass
class ImageSet:
    """Preprocessed images of one split, seen in ``orientations`` orientations (see :func:`orient`).

    ``x`` holds the ``N`` distinct images as normalised float32 ``N x S x S x 3`` (NHWC); the set has
    ``N * orientations`` rows, row ``r`` being image ``r % N`` in orientation ``r // N`` (so the first ``N`` rows
    are the images as they are). ``labels`` and ``groups`` are per row; other orientations are made on the fly,
    so they cost no memory.
    """

    x: np.ndarray
    labels: np.ndarray  # indices into the model card's labels
    root: Path
    split: str
    split_source: str
    # one id per row: its lesion (ISIC metadata's lesion_id) where known, else the image itself. Images of one
    # lesion (and the orientations of one image) are near-duplicates, so statistics resample lesions, not rows.
    groups: np.ndarray | None = None
    orientations: int = 1

    def __len__(self) -> int:
        return len(self.labels)

    def with_orientations(self, n: int) -> ImageSet:
        """The same images, each also seen in orientations ``1 .. n-1`` (``n`` one of ``ORIENTATION_COUNTS``)."""
        if n not in ORIENTATION_COUNTS:
            raise ValueError(f"orientations must be one of {ORIENTATION_COUNTS}, got {n}")
        m = len(self.x)
        labels, groups = self.labels[:m], None if self.groups is None else self.groups[:m]
        return dataclasses.replace(self, labels=np.tile(labels, n),
                                   groups=None if groups is None else np.tile(groups, n), orientations=n)

    def rows(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` as normalised float32 NHWC (views into ``x`` where possible)."""
        stop = len(self) if stop is None else min(stop, len(self))
        m, parts = len(self.x), []
        while start < stop:
            k, i = divmod(start, m)
            n = min(stop - start, m - i)
            parts.append(orient(self.x[i : i + n], k))
            start += n
        if not parts:
            return self.x[:0]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def model_input(self, pre: Preprocessing, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` in ``pre``'s layout and dtype: the tail of ``Preprocessing.model_input``
        (normalisation is already done), using the shared ``quantize`` so integer inputs match bit for bit."""
        x = self.rows(start, stop)
        if pre.layout == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if pre.input_dtype in ("int8", "uint8"):
            return quantize(x, pre.input_scale, pre.input_zero_point, pre.input_dtype)
        return np.ascontiguousarray(x, dtype=pre.input_dtype)

    def describe(self) -> dict:
        return {"root": str(self.root), "split": self.split, "split_source": self.split_source,
                "n_images": len(self.x), "orientations": self.orientations}


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
