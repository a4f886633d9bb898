"""Rebuild the embedded sample (``data/isic2019_sample``) from the shared HAM10000 copy.

Whole lesions only (every image of a chosen lesion comes along), seeded, all 8 classes.
Usage: python data/make_sample.py ../shared/data/ham10000-isic2019 data/isic2019_sample
"""

from __future__ import annotations

import csv
import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

from distill.data.records import GT_CSV, IMAGE_DIR, META_CSV, load_labeled_images

# Images per class: NV kept the largest so the sample stays imbalanced like the real data.
TARGET = {"NV": 90, "MEL": 50, "BKL": 45, "BCC": 40, "AK": 36, "DF": 36, "VASC": 36, "SCC": 36}


def main(src: str, dst: str, seed: int = 7) -> None:
    src_p, dst_p = Path(src), Path(dst)
    ds = load_labeled_images(src_p)
    lesions = defaultdict(list)
    for r in ds.records:
        lesions[(ds.classes[r.label], r.group)].append(r)
    rng = random.Random(seed)
    chosen = []
    for cls, target in TARGET.items():
        keys = sorted(k for k in lesions if k[0] == cls)
        rng.shuffle(keys)
        n = 0
        for k in keys:
            if n >= target:
                break
            chosen += lesions[k]
            n += len(lesions[k])
    ids = {r.image_id for r in chosen}
    (dst_p / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    for r in chosen:
        shutil.copy2(r.path, dst_p / IMAGE_DIR / r.path.name)
    for name in (GT_CSV, META_CSV):
        with open(src_p / name, newline="") as f, open(dst_p / name, "w", newline="") as g:
            rows = list(csv.reader(f))
            w = csv.writer(g, lineterminator="\n")
            w.writerow(rows[0])
            w.writerows(r for r in rows[1:] if r[0] in ids)
    print(f"{len(ids)} images, {len({r.group for r in chosen})} lesions -> {dst_p}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
