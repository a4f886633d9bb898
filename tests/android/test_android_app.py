"""The Android demo: its CI check (kotlinc + JUnit on golden vectors, app compile against android.jar), golden
vectors in lock-step with ``models.preprocessing``, and the contract of the model bundled in its assets.

Under CI (``CI`` = true/1/yes) a missing toolchain, data or bundled model fails instead of skipping.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from export.golden import write_golden_arrays, write_golden_vectors
from models.preprocessing import Preprocessing, resize_center_crop

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "android_demo"
TOOLS = DEMO / "tools"
APP = DEMO / "app"
# SSDKD_ANDROID_ASSETS checks another drop-in directory (e.g. an export's --android-demo output) before bundling it
ASSETS = Path(os.environ.get("SSDKD_ANDROID_ASSETS", APP / "src" / "main" / "assets"))
GOLDEN = APP / "src" / "test" / "resources" / "golden"
SRC = APP / "src" / "main" / "java" / "org" / "ssdkd" / "demo"
SHARED = Path(os.environ.get("SSDKD_SHARED", REPO.parent / "shared"))
ISIC_IMAGES = SHARED / "data" / "ham10000-isic2019" / "ISIC_2019_Training_Input"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_or_fail(msg: str) -> None:
    if IN_CI:
        pytest.fail(f"{msg} (CI: this must not be skipped)")
    pytest.skip(msg)


def _run(cmd: list[str], env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def _manifest(root: Path = GOLDEN) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _gz(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


# --- the CI check: kotlinc + JUnit against the golden vectors, app compile against android.jar ---------------


@pytest.mark.slow
def test_check_script(tmp_path):
    fetch = _run(["bash", str(TOOLS / "fetch_toolchain.sh")])
    if fetch.returncode != 0:
        _skip_or_fail(f"android toolchain could not be fetched: {fetch.stderr.strip()[-2000:]}")
    t0 = time.monotonic()
    again = _run(["bash", str(TOOLS / "fetch_toolchain.sh")])
    assert again.returncode == 0 and again.stdout == again.stderr == "", "re-running the fetch must be a quiet no-op"
    assert time.monotonic() - t0 < 5, "re-running the fetch with everything present must not download anything"

    check = _run(["bash", str(TOOLS / "check.sh")], env={"SSDKD_ANDROID_BUILD_DIR": str(tmp_path / "check")})
    if check.returncode == 3:
        _skip_or_fail(check.stderr.strip())
    assert check.returncode == 0, f"android_demo/tools/check.sh failed:\n{check.stdout}\n{check.stderr}"
    assert check.stdout == "" and check.stderr == "", "check.sh must be quiet on success"


@pytest.mark.parametrize("ci, code, word", [("true", 1, "error:"), ("", 3, "skipped:")])
def test_check_script_reports_a_missing_toolchain(tmp_path, ci, code, word):
    r = _run(["bash", str(TOOLS / "check.sh")], env={"CI": ci, "SSDKD_TOOLS_DIR": str(tmp_path / "none")})
    assert r.returncode == code, r.stderr
    assert word in r.stderr and "missing toolchain" in r.stderr and "fetch_toolchain.sh" in r.stderr


# --- golden vectors: Python and Kotlin stay in lock-step --------------------------------------------------------


def _rounded(value):
    """Floats to 12 significant digits: numpy's exp differs in the last bit between AVX2 and AVX-512 builds."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _assert_same_golden(expected: Path, actual: Path) -> None:
    assert _rounded(_manifest(actual)) == _rounded(_manifest(expected)), \
        "manifest.json differs: run `python -m export.golden`"
    names = sorted(p.name for p in expected.glob("*.gz"))
    assert names == sorted(p.name for p in actual.glob("*.gz"))
    for name in names:
        assert _gz(actual / name) == _gz(expected / name), f"{name} differs: run `python -m export.golden`"


def test_golden_vectors_are_current(tmp_path):
    """Regenerating from the committed source pixels with the committed contract gives the committed files."""
    manifest = _manifest()
    pre = Preprocessing.from_json(manifest["preprocessing"], "golden manifest.json")
    cases = [c for c in manifest["images"] if c["source"]["kind"] == "file"]
    assert cases, "the golden manifest has no real-image cases"
    images = []
    for c in cases:
        rgb = np.frombuffer(_gz(GOLDEN / c["files"]["rgb"]), dtype=np.uint8).reshape(c["height"], c["width"], 3)
        images.append((c["name"], rgb))
    write_golden_arrays(pre, images, tmp_path, [c["source"] for c in cases])
    _assert_same_golden(GOLDEN, tmp_path)


def test_golden_vectors_from_the_source_images(tmp_path):
    """The committed source pixels are what ``load_rgb`` reads from the shared ISIC images."""
    manifest = _manifest()
    files = [c["source"]["file"] for c in manifest["images"] if c["source"]["kind"] == "file"]
    paths = [ISIC_IMAGES / f for f in files]
    if not all(p.exists() for p in paths):
        _skip_or_fail(f"shared ISIC images {files} not found under {ISIC_IMAGES}")
    write_golden_vectors(Preprocessing.from_json(manifest["preprocessing"]), paths, tmp_path)
    _assert_same_golden(GOLDEN, tmp_path)


def test_golden_vectors_stay_small():
    total = sum(p.stat().st_size for p in GOLDEN.iterdir())
    assert total < 1_000_000, f"golden vectors take {total} bytes: keep them commit-size (input_size, cases)"


# --- the Gradle project and the sources CI cannot build with Gradle --------------------------------------------


def test_project_files():
    app_gradle = (APP / "build.gradle.kts").read_text()
    assert "minSdk = 23" in app_gradle
    assert 'noCompress += "tflite"' in app_gradle
    assert "com.google.ai.edge.litert:litert:" in app_gradle
    for dep in ("junit:junit:", "org.json:json:"):
        assert f'testImplementation("{dep}' in app_gradle
    assert "distributionUrl=" in (DEMO / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    # The Gradle wrapper's bootstrap jar is the one binary a Gradle project ships (checked in test_gradle_wrapper.py)
    jars = [p.relative_to(DEMO).as_posix() for p in DEMO.rglob("*.jar")]
    assert jars == ["gradle/wrapper/gradle-wrapper.jar"], f"unexpected binary jars in the demo project: {jars}"
    assert 'include(":app")' in (DEMO / "settings.gradle.kts").read_text()


def test_manifest_names_existing_classes():
    ns = "{http://schemas.android.com/apk/res/android}"
    root = ET.parse(APP / "src" / "main" / "AndroidManifest.xml").getroot()
    app = root.find("application")
    components = [e for e in app if e.tag in ("activity", "provider")]
    assert {e.tag for e in components} == {"activity", "provider"}
    for e in components:
        name = e.get(f"{ns}name")
        assert name.startswith(".") and (SRC / f"{name[1:]}.kt").exists(), f"{e.tag} {name} has no source file"
    assert root.find("uses-permission") is None, "the app needs no permissions (platform intents only)"


def test_core_has_no_android_imports():
    for f in (SRC / "core").glob("*.kt"):
        for line in f.read_text().splitlines():
            assert not line.startswith(("import android", "import androidx", "import org.tensorflow")), f"{f}: {line}"


# --- the bundled model (written by `ssdkd-export CKPT --target tflite --int8 --android-demo android_demo`) ------


@pytest.fixture(scope="module")
def bundled():
    model = ASSETS / "model.tflite"
    if not model.exists():
        _skip_or_fail(
            f"no bundled model at {model} yet: run "
            "`ssdkd-export CKPT --target tflite --int8 --android-demo android_demo`"
        )
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        _skip_or_fail("ai-edge-litert is not installed (pip install -e .[tflite])")
    pre = Preprocessing.load(ASSETS / "preprocessing.json")
    labels = (ASSETS / "labels.txt").read_text().splitlines()
    while labels and not labels[-1].strip():
        labels.pop()
    interpreter = Interpreter(model_path=str(model), num_threads=2)
    interpreter.allocate_tensors()
    return pre, [label.strip() for label in labels], interpreter, model


def _check_quant(side: str, detail: dict, dtype: str, scale: float | None, zero_point: int | None) -> None:
    assert detail["dtype"] == np.dtype(dtype), f"{side} dtype {detail['dtype']} != {side}_dtype {dtype}"
    if dtype in ("int8", "uint8"):
        m_scale, m_zp = detail["quantization"]
        assert m_scale == pytest.approx(scale, rel=1e-6), f"{side}_scale {scale} != model's {m_scale}"
        assert m_zp == zero_point, f"{side}_zero_point {zero_point} != model's {m_zp}"


def test_bundled_model_matches_its_preprocessing_json(bundled):
    pre, labels, interpreter, _ = bundled
    assert labels == list(pre.labels), "labels.txt and preprocessing.json list different labels"
    assert pre.layout == "NHWC", "the app feeds NHWC (TFLite) input"
    assert pre.model_file in (None, "model.tflite")
    (inp,) = interpreter.get_input_details()
    assert list(inp["shape"]) == [1, pre.input_size, pre.input_size, 3]
    _check_quant("input", inp, pre.input_dtype, pre.input_scale, pre.input_zero_point)
    (out,) = interpreter.get_output_details()
    assert int(np.prod(out["shape"])) == len(labels) and out["shape"][0] == 1, f"output shape {out['shape']}"
    _check_quant("output", out, pre.output_dtype, pre.output_scale, pre.output_zero_point)


def test_bundled_model_keeps_weights_inside_the_flatbuffer(bundled):
    """LiteRT 1.4.x (the Android runtime usable at minSdk 23) fails on buffers stored after the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    *_, model = bundled
    m = schema.Model.GetRootAs(model.read_bytes(), 0)
    external = [i for i in range(m.BuffersLength()) if m.Buffers(i).Offset() > 1]
    assert not external, (
        f"{len(external)} buffers are stored outside the flatbuffer (offset/size, as ai-edge-quantizer writes them): "
        f"run `python android_demo/tools/inline_tflite_buffers.py {model}`"
    )


def test_bundled_model_top3_on_golden_inputs(bundled):
    """The app's input for each golden image gives the same top-3 as the Python reference path."""
    pre, labels, interpreter, _ = bundled
    manifest = _manifest()
    golden_pre = Preprocessing.from_json(manifest["preprocessing"])
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

    def top3(x: np.ndarray) -> tuple[list[int], np.ndarray]:
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        probs = pre.probabilities(interpreter.get_tensor(out["index"]))[0]
        # an int8 probability output sums to 1 up to its 1/256 grid
        assert np.isfinite(probs).all() and abs(float(probs.sum()) - 1.0) < len(probs) / 256
        return [int(i) for i in np.argsort(-probs, kind="stable")[:3]], probs

    for case in manifest["images"]:
        rgb = np.frombuffer(_gz(GOLDEN / case["files"]["rgb"]), np.uint8).reshape(case["height"], case["width"], 3)
        app_input = pre.model_input(resize_center_crop(rgb, pre.input_size))
        if golden_pre.input_size == pre.input_size and pre.input_dtype == "int8":
            q = case["int8"]
            if (q["scale"], q["zero_point"]) == (pre.input_scale, pre.input_zero_point):
                # the bytes the Kotlin tests prove the app produces
                golden = np.frombuffer(_gz(GOLDEN / case["files"]["input_int8"]), np.int8).reshape(app_input.shape)
                assert np.array_equal(golden, app_input)
        app_top, app_probs = top3(app_input)
        source = case["source"]
        path = ISIC_IMAGES / source["file"] if source["kind"] == "file" else None
        ref_pixels = pre.pixels(path) if path is not None and path.exists() else resize_center_crop(rgb, pre.input_size)
        ref_top, ref_probs = top3(pre.model_input(ref_pixels))
        assert app_top == ref_top, (
            f"{case['name']}: app top-3 {[labels[i] for i in app_top]} != Python {[labels[i] for i in ref_top]}"
        )
        assert np.abs(app_probs - ref_probs).max() < 1e-6


def _externalize(data: bytes) -> bytes:
    """The inverse of ``inline_buffers``: move every non-empty buffer after the flatbuffer (ai-edge-quantizer style)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    moved = [
        (b, bytes(np.asarray(b.data, dtype=np.uint8))) for b in model.buffers if b.data is not None and len(b.data)
    ]
    for b, blob in moved:
        b.data, b.offset, b.size = None, 2, len(blob)

    def pack() -> bytes:
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    pos = (len(pack()) + 15) // 16 * 16
    tail = b""
    for b, blob in moved:
        b.offset = pos + len(tail)
        tail += blob + b"\0" * (-len(blob) % 16)
    head = pack()
    return head + b"\0" * (pos - len(head)) + tail


def test_inline_tflite_buffers_tool(tmp_path):
    tf = pytest.importorskip("tensorflow")
    import importlib.util

    spec = importlib.util.spec_from_file_location("inline_tflite_buffers", TOOLS / "inline_tflite_buffers.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from ai_edge_litert.interpreter import Interpreter

    inp = tf.keras.Input((8, 8, 3), batch_size=1)
    out = tf.keras.layers.Dense(5)(tf.keras.layers.Flatten()(tf.keras.layers.Conv2D(4, 3)(inp)))
    inline = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out)).convert()
    external = _externalize(inline)
    assert tool.external_buffers(external) and not tool.external_buffers(inline)
    (tmp_path / "m.tflite").write_bytes(external)
    assert tool.main([str(tmp_path / "m.tflite")]) == 0
    fixed = (tmp_path / "m.tflite").read_bytes()
    assert not tool.external_buffers(fixed)
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype(np.float32)
    results = []
    for blob in (inline, external, fixed):
        it = Interpreter(model_content=blob)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        results.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])
