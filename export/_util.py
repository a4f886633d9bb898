"""Small helpers shared by every target and by the benchmark harness: converter-noise suppression, stage lines,
sizes on disk, installed package versions."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

from models.errors import InputError

# Converters (TensorFlow, litert-torch, onnx2tf, coremltools) print pages of C++ and Python logs. These keep the
# C++ loggers quiet before their libraries are imported; `quiet()` catches whatever still reaches fd 1/2.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GLOG_minloglevel", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def preload_torch() -> None:
    """Import torch's compiler stack (and triton) before TensorFlow/coremltools.

    Importing TensorFlow (coremltools imports it when installed) *before* triton makes the later
    triton import (pulled in by torchvision / torch.onnx / torch.export) die with a segmentation fault.
    """
    import torch._dynamo  # noqa: F401


class Stages:
    """Concise progress lines: ``[export] stage ... 1.2 s``; silent when ``verbose`` is False."""

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"[export] {msg}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict]:
        """Time a stage; the yielded dict receives ``seconds`` when it ends (also on error)."""
        info: dict = {}
        t0 = time.perf_counter()
        try:
            yield info
        finally:
            info["seconds"] = time.perf_counter() - t0
            self.log(f"{name:<34} {info['seconds']:6.1f} s")


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """Send everything written to fd 1/2 (Python *and* C++ logs) to a temp file while converting.

    On an exception the captured tail is replayed on stderr so errors are never hidden, only noise.
    """
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        failed = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except InputError:
            raise  # our own one-line message: the captured converter noise would only bury it
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if failed:
                log.seek(0)
                tail = log.read().decode("utf-8", "replace").splitlines()[-40:]
                if tail:
                    print("[export] converter output before the error:\n  " + "\n  ".join(tail), file=sys.stderr)


@contextlib.contextmanager
def working_dir(path: str | os.PathLike) -> Iterator[Path]:
    """chdir for tools that read/write their working directory (onnx2tf); restored afterwards."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield Path(path)
    finally:
        os.chdir(old)


def file_size(path: Path) -> int:
    """Bytes of a file or of a directory tree (a CoreML ``.mlpackage`` is a directory)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution, read from package metadata (no import, so no import cost or side
    effects); None for one that is not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
