"""Atomic file writes: a reader never sees a half-written checkpoint, export or report."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from models.errors import InputError


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Check that ``path`` is a writable directory or could be created as one, without creating anything (so that a
    command that fails on its inputs leaves no empty directory behind)."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise InputError(f"{p}: output path exists and is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise InputError(f"{p}: output directory is not writable")
        return p
    base = next(a for a in p.absolute().parents if a.exists())  # the filesystem root always exists
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        what = "a file" if not base.is_dir() else "not writable"
        raise InputError(f"{p}: cannot create output directory ({base} is {what})")
    return p


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check it is a writable directory."""
    p = check_writable_dir(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{p}: cannot create output directory ({e.strerror})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"{p}: output directory is not writable")
    return p


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only on success.

    The temp file lives in the same directory so the rename is atomic on POSIX.
    Directories (e.g. a CoreML ``.mlpackage``) are supported too.
    """
    final = Path(final)
    ensure_writable_dir(final.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix + ".tmp", dir=final.parent)
    os.close(fd)
    os.unlink(tmp)  # callers create it themselves (file or directory)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise RuntimeError(f"nothing was written for {final}")
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            if tmp_path.is_dir():
                shutil.rmtree(tmp_path, ignore_errors=True)
            else:
                tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(final: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(final)


def atomic_write_text(final: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(final, text.encode("utf-8"))


def atomic_write_json(final: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(final, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save(final: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Run ``writer(tmp_path)`` and atomically move the result to ``final``."""
    with atomic_path(final, suffix=Path(final).suffix) as tmp:
        writer(tmp)
    return Path(final)


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse a JSON file; a missing or malformed one is an :class:`InputError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
