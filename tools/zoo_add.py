"""Tool (not library code): copy a finished run's ``best.pt`` into the model zoo with fp16 weights.

    .venv/bin/python tools/zoo_add.py runs/zoo2/teacher/best.pt models/zoo/teacher.pt

fp16 storage halves the zoo (the loader casts back to fp32 on ``load_state_dict``). Integer buffers (BatchNorm's
``num_batches_tracked``) are kept as they are, and so are the model card and nothing else: optimizer state stays
in the run's ``last.pt``. Evaluate the zoo file itself afterwards (``ssdkd-distill evaluate``): its figures are
the ones the zoo reports, rounding included.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from models.atomic import atomic_save
from models.checkpoint import read_checkpoint


def compact(src: Path, dst: Path) -> Path:
    payload, _ = read_checkpoint(src)
    sd = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    return atomic_save(dst, lambda tmp: torch.save({"state_dict": sd, "card": payload["card"]}, tmp))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="a run's best.pt")
    ap.add_argument("dst", type=Path, help="the zoo file to write")
    args = ap.parse_args()
    print(compact(args.src, args.dst))


if __name__ == "__main__":
    main()
