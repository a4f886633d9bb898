"""Rewrite a .tflite file so every weight buffer sits inside the flatbuffer (no ``offset``/``size`` buffers).

ai-edge-quantizer stores large buffers after the flatbuffer, a layout the LiteRT 1.4.x Android runtime the demo uses
has been reported to fail on. ``ssdkd-export`` already writes the inline layout; this fixes a .tflite from elsewhere
before it is dropped into the app (see ``export.tflite_export.inline_buffers``). Only the storage moves.

Usage: ``python android_demo/tools/inline_tflite_buffers.py MODEL.tflite [--out OUT.tflite]`` (in place by default).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, when run as a script

from export.tflite_export import external_buffers, inline_buffers  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, help="output file (default: rewrite MODEL in place)")
    args = ap.parse_args(argv)
    try:
        data = args.model.read_bytes()
    except OSError as e:
        print(f"error: {args.model}: {e.strerror}", file=sys.stderr)
        return 2
    n = len(external_buffers(data))
    out = args.out or args.model
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(inline_buffers(data))
    os.chmod(tmp, (out if out.exists() else args.model).stat().st_mode & 0o777)
    os.replace(tmp, out)
    print(f"{out}: {n} external buffers moved inline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
