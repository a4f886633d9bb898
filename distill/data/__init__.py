"""Dataset reading (ISIC 2019 CSVs, class folders), lesion-grouped splits and transforms."""

from distill.data.dataset import ImageDataset
from distill.data.records import LabeledImages, Record, load_labeled_images
from distill.data.split import Split, load_split, make_split, resolve_split, save_split

__all__ = ["ImageDataset", "LabeledImages", "Record", "Split", "load_labeled_images", "load_split",
           "make_split", "resolve_split", "save_split"]
