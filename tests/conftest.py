"""Shared fixtures. Under CI=true a test that needs ../shared or a tool fails instead of skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# OpenMP threads that spin while waiting cost 10-100x when the 2 cores are shared (subprocesses, converters):
# sleep instead. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from export._util import preload_torch  # noqa: E402

# Before any test imports TensorFlow: a test file run on its own must not depend on an earlier one having done it.
preload_torch()

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "isic2019_sample"
SHARED = Path(os.environ.get("SSDKD_SHARED", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

torch.set_num_threads(min(2, os.cpu_count() or 1))


def require(path: Path, what: str) -> Path:
    """Return ``path`` if present; otherwise fail under CI (missing data is a broken CI) or skip."""
    if path.exists():
        return path
    msg = f"{what} not found at {path}"
    if IN_CI:
        pytest.fail(f"{msg} (CI=true: shared data and tools must be present)")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def sample_root() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def ham_root() -> Path:
    return require(SHARED / "data" / "ham10000-isic2019", "shared HAM10000 (ISIC 2019 layout)")


@pytest.fixture(scope="session")
def isic_labels_root() -> Path:
    return require(SHARED / "data" / "isic2019-labels", "shared ISIC 2019 label files")


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    return require(SHARED / "weights" / "mobilenet_v2_imagenet_torchvision.pth", "shared MobileNetV2 weights")


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """A MobileNetV2-0.5 briefly trained on the embedded sample at 64 px (seconds), with a split file.

    Quantization must be judged on a trained network: a random-init one has vanishing activations.
    """
    from tests.helpers import train_tiny_checkpoint

    return train_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"), SAMPLE)
