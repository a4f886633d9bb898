"""Rewrite a .tflite file so every weight buffer sits inside the flatbuffer (no ``offset``/``size`` buffers).

ai-edge-quantizer stores large buffers after the flatbuffer and points at them with ``Buffer.offset``/``size`` (the
layout meant for models over 2 GB). The LiteRT 1.4.x Android runtime the demo uses (the last line that supports
minSdk 23) has been reported to fail on such files ("Input tensor N lacks data"), so the bundled model is kept in the
classic inline layout, which every TFLite/LiteRT runtime reads. The numbers are unchanged: only the storage moves.

Usage: ``python android_demo/tools/inline_tflite_buffers.py MODEL.tflite [--out OUT.tflite]`` (in place by default).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

TFLITE_FILE_IDENTIFIER = b"TFL3"


def external_buffers(data: bytes) -> list[int]:
    """Indices of the buffers whose bytes live outside the flatbuffer."""
    m = schema.Model.GetRootAs(data, 0)
    return [i for i in range(m.BuffersLength()) if m.Buffers(i).Offset() > 1]


def inline_buffers(data: bytes) -> bytes:
    """The same model with every ``offset``/``size`` buffer copied into the flatbuffer."""
    if not external_buffers(data):
        return data
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    for buf in model.buffers or []:
        if buf.offset is not None and buf.offset > 1:
            buf.data = np.frombuffer(data, dtype=np.uint8, count=buf.size, offset=buf.offset)
            buf.offset, buf.size = 0, 0
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


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
