"""The ONNX int8 file computes the same on an x86 CPU without VNNI as on this one.

onnxruntime picks its 8-bit kernels by CPUID at run time. On CPUs without VNNI its u8s8 convolutions use AVX2's
VPMADDUBSW, whose 16-bit pairwise sums saturate with full 8-bit weights; the default (portable) scheme has 7-bit
weights, so no pair can overflow (see :mod:`export.onnx_export`). qemu-user with ``-cpu Haswell`` reports AVX2
without AVX-512 or VNNI, so onnxruntime takes that path even on a VNNI host: this test runs the exported files
there and natively and compares the outputs. On a host without VNNI the native run is already that path, and the
test still checks the portable file against PyTorch through the export gate.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export import Gate, export
from export.calibration import read_split_images
from export.onnx_export import ONNX_INT8_SCHEMES, read_metadata
from export.report import ExportReport
from models import load_checkpoint
from models.host import host_cpu
from tests.conftest import IN_CI, REPO

ZOO_STUDENT = REPO / "models" / "zoo" / "student_ssd-kd.pt"
N_IMAGES = 40
# Runs under emulation: numpy and onnxruntime only (importing torch under qemu would take minutes).
RUN_ONNX = """
import sys, numpy as np, onnxruntime as ort
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1; opts.log_severity_level = 3
x = np.load(sys.argv[1])
for model, out in zip(sys.argv[2::2], sys.argv[3::2]):
    s = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    np.save(out, np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))]))
"""


def _qemu() -> str:
    if platform.machine() != "x86_64":
        pytest.skip("emulating an x86 CPU without VNNI needs an x86-64 host")
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        msg = "qemu-x86_64 not found (apt-get install qemu-user; `make test` installs it)"
        if IN_CI:
            pytest.fail(f"{msg} (CI=true: tools must be present)")
        pytest.skip(msg)
    return qemu


def _run(prefix: list[str], x: Path, models: list[Path], tmp: Path, tag: str) -> list[np.ndarray]:
    outs = [tmp / f"{tag}_{i}.npy" for i in range(len(models))]
    script = tmp / "run_onnx.py"
    script.write_text(RUN_ONNX)
    args = [a for m, o in zip(models, outs) for a in (str(m), str(o))]
    done = subprocess.run([*prefix, sys.executable, str(script), str(x), *args], timeout=900, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert done.returncode == 0, done.stderr[-2000:]
    return [np.load(o) for o in outs]


@pytest.fixture(scope="module")
def reports(tmp_path_factory, sample_root) -> dict[str, ExportReport]:
    out = tmp_path_factory.mktemp("portability")
    return {name: export(ZOO_STUDENT, targets="onnx", int8=True, calib=sample_root, val=sample_root,
                         out_dir=out / name, onnx_int8=name, val_orientations=1, gate=Gate(enabled=False),
                         verbose=False)
            for name in ONNX_INT8_SCHEMES}


@pytest.mark.slow
def test_portable_int8_onnx_is_bit_identical_without_vnni(reports, sample_root, tmp_path) -> None:
    qemu = _qemu()
    model, card = load_checkpoint(ZOO_STUDENT)
    pre = card.preprocessing()
    val = read_split_images(sample_root, "val", card, ZOO_STUDENT, pre, N_IMAGES)
    x = tmp_path / "x.npy"
    np.save(x, val.model_input(pre))
    models = [reports[name].out_dir / "model_int8.onnx" for name in ("portable", "vnni")]
    native = _run([], x, models, tmp_path, "native")
    emulated = _run([qemu, "-cpu", "Haswell"], x, models, tmp_path, "avx2")
    # The same integers on both paths: nothing saturates, so the outputs agree to the last bit.
    np.testing.assert_array_equal(native[0], emulated[0])
    if "AVX512-VNNI" in host_cpu()["isa"] or "AVX-VNNI" in host_cpu()["isa"]:
        # The control: the VNNI-only file's outputs do move on the emulated CPU, so this test sees the saturating
        # path and would catch a portable file that saturated too.
        assert np.abs(native[1] - emulated[1]).max() > 0.1


@pytest.mark.slow
def test_the_int8_onnx_scheme_and_the_host_are_recorded(reports) -> None:
    for name, report in reports.items():
        q = json.loads(read_metadata(report.out_dir / "model_int8.onnx")["quantization"])
        assert q["scheme"] == name and q["runs_right_on"] == ONNX_INT8_SCHEMES[name].runs_right_on
        written = json.loads(report.path.read_text())
        assert written["settings"]["onnx_int8"]["scheme"] == name
        assert written["host"] == host_cpu() and "machine" in written["host"]
        table = report.table()
        assert f"verified on {host_cpu()['cpu_model']}" in table and ONNX_INT8_SCHEMES[name].runs_right_on in table
