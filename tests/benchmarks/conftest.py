"""Fixtures for the benchmark tests: small real artifacts and one shared benchmark run per artifact set.

Runs are short (``--runs 20 --min-seconds 0.2 --warmup 3``) and shared at session scope: the machine is
small and shared, and each test checks a different property of the same run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import IN_CI, SAMPLE, SHARED, require

FAST = {"runs": 20, "min_seconds": 0.2, "warmup": 3}
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def google_int8_tflite() -> Path:
    """Google's int8 MobileNetV2 (uint8 I/O, 224 px): a real third-party file for --reference."""
    return require(SHARED / "weights" / "tf2_mobilenet_v2_1.0_224_ptq.tflite", "Google's int8 MobileNetV2 .tflite")


@pytest.fixture(scope="session")
def onnx_export(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ONNX fp32 + int8 of the trained checkpoint with sidecars and an export report (no export package)."""
    from tests.benchmarks.helpers import make_onnx_export

    return make_onnx_export(trained_checkpoint, tmp_path_factory.mktemp("onnx_export"), SAMPLE)


@pytest.fixture(scope="session")
def real_export(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export stage's own output (ONNX + TFLite, int8 calibrated on the embedded sample), made once."""
    try:
        from export import export
    except ImportError as e:  # the export stage is a sibling package; without it these tests cannot run
        if IN_CI:
            pytest.fail(f"export package not importable: {e}")
        pytest.skip(f"export package not importable: {e}")
    out = tmp_path_factory.mktemp("real_export")
    export(trained_checkpoint, targets=("onnx", "tflite"), out_dir=out, int8=True, calib=SAMPLE, val=SAMPLE,
           imgsz=64, calib_size=32, val_size=32, verbose=False)
    if not list(out.glob("*.tflite")):
        pytest.fail(f"export wrote no .tflite artifact in {out}")
    return out


@pytest.fixture(scope="session")
def host_results(onnx_export: Path, tmp_path_factory: pytest.TempPathFactory):
    """torch + ORT fp32/int8 at 1 and 2 threads, with accuracy and memory, written to disk."""
    from benchmarks.harness import run_benchmark

    out = tmp_path_factory.mktemp("bench_host")
    return run_benchmark([onnx_export], threads="1,2", data=SAMPLE, max_images=40, out=out, progress=False, **FAST)


@pytest.fixture(scope="session")
def exported_results(real_export: Path, tmp_path_factory: pytest.TempPathFactory):
    """Every artifact the export stage wrote (TFLite fp32/int8/int8_fio, ONNX) beside torch, 1 thread."""
    from benchmarks.harness import run_benchmark

    out = tmp_path_factory.mktemp("bench_export")
    return run_benchmark([real_export], threads="1", data=SAMPLE, max_images=40, out=out, progress=False, **FAST)

