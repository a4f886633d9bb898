"""``ssdkd-distill check-data``: validate a dataset before a long run and summarise it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from distill.data.records import LabeledImages, Record, load_labeled_images
from models.errors import InputError
from models.preprocessing import verify_image


@dataclass
class DataReport:
    root: str
    layout: str
    classes: list[str]
    images: int
    per_class: dict[str, int]
    lesions: int
    excluded: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {**self.__dict__, "ok": self.ok}

    def format(self) -> str:
        lines = [f"dataset   {self.root} ({self.layout})",
                 f"images    {self.images}", f"lesions   {self.lesions}", "per class:"]
        width = max(len(c) for c in self.classes)
        for c in self.classes:
            n = self.per_class[c]
            lines.append(f"  {c:<{width}} {n:>6}  {100 * n / max(self.images, 1):5.1f}%")
        for name, n in self.excluded.items():
            lines.append(f"excluded  {n} {name} row(s) (not a training class; pass include_unk to keep)")
        lines.append(f"problems  {len(self.problems)}" + ("" if self.problems else " - OK"))
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def check_data(root: str | Path, decode: bool = True, include_unk: bool = False,
               progress: bool = True) -> DataReport:
    """Collect every problem (CSV rows, missing/corrupt/oversized images, empty classes) instead of stopping at one."""
    ds: LabeledImages = load_labeled_images(root, include_unk=include_unk, skip_bad=True)
    bad = find_bad_images(ds.records, progress=progress) if decode else {}
    problems = [*ds.problems, *bad.values()]
    records = [r for r in ds.records if r.image_id not in bad]
    counts = {c: 0 for c in ds.classes}
    for r in records:
        counts[ds.classes[r.label]] += 1
    problems += [f"{ds.root}: class {c} has no images" for c, n in counts.items() if n == 0]
    return DataReport(str(ds.root), ds.layout, list(ds.classes), len(records), counts,
                      len({r.group for r in records}), ds.excluded, problems)


def find_bad_images(records: list[Record], *, progress: bool) -> dict[str, str]:
    """``{image_id: problem}`` for every record whose image cannot be read (corrupt, truncated, over the pixel
    limit), each decoded at the smallest scale that still checks all of it."""
    bad: dict[str, str] = {}
    for r in tqdm(records, desc="checking images", unit="img", disable=not progress, leave=False):
        try:
            verify_image(r.path)
        except InputError as e:
            bad[r.image_id] = str(e)
    return bad


def require_readable_images(records: list[Record], root: str | Path, *, progress: bool) -> None:
    """Raise ``InputError`` naming the first image of ``records`` that cannot be read, and how many more."""
    bad = list(find_bad_images(records, progress=progress).values())
    if bad:
        more = f" (and {len(bad) - 1} more; `ssdkd-distill check-data --data {root}` lists them)"
        raise InputError(bad[0] + (more if len(bad) > 1 else ""))
