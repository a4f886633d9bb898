"""Android target without a phone: the parser on real benchmark_model output, command construction, and clear
errors when adb or the device is missing. A fake ``adb`` replays real output for the end-to-end path."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from benchmarks.android import (
    AndroidError,
    AndroidOptions,
    benchmark_command,
    check_device,
    parse_adb_devices,
    parse_benchmark_output,
    push_commands,
    run_command,
)
from models.errors import InputError
from tests.benchmarks.conftest import FIXTURES


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_old_format_avg_std_without_percentiles():
    p = parse_benchmark_output(_fixture("bm_ti_am62x_old_avg_std.txt"))
    lat = p["latency"]
    # The timed run is the last count= line (count=50), not the warm-up (count=1 curr=...).
    assert lat["n"] == 50 and lat["warmup_n"] == 1
    assert lat["mean_ms"] == pytest.approx(971.535) and lat["std_ms"] == pytest.approx(39.112)
    assert lat["min_ms"] == pytest.approx(911.877) and lat["max_ms"] == pytest.approx(1112.273)
    assert lat["init_ms"] == pytest.approx(6.418) and lat["first_ms"] == pytest.approx(1041.765)
    assert lat["warmup_mean_ms"] == pytest.approx(1041.76)  # "1.04176e+06" us
    assert lat["p50_ms"] is None and lat["p5_ms"] is None and lat["p90_ms"] is None  # never invented
    assert p["memory"]["load_peak_delta_mb"] == pytest.approx(6.14844)
    assert p["memory"]["overall_peak_delta_mb"] == pytest.approx(109.848)
    assert p["model_size_mb"] == pytest.approx(67.3128)


def test_oldest_format_no_prefix_peak_memory_line():
    p = parse_benchmark_output(_fixture("bm_tf42507_old_noprefix.txt"))
    assert p["latency"]["n"] == 50 and p["latency"]["warmup_n"] == 15
    assert p["latency"]["mean_ms"] == pytest.approx(33.2094)
    assert p["memory"]["load_peak_delta_mb"] == 0 and p["memory"]["overall_peak_delta_mb"] == pytest.approx(12.8672)


def test_new_format_percentiles():
    p = parse_benchmark_output(_fixture("bm_ti_am62x_new_p5_median_p95.txt"))
    lat = p["latency"]
    assert lat["n"] == 50
    assert lat["p5_ms"] == pytest.approx(898.333)
    assert lat["p50_ms"] == pytest.approx(899.281)
    assert lat["p95_ms"] == pytest.approx(904.305)
    assert lat["mean_ms"] == pytest.approx(899.641)
    assert p["memory"]["overall_peak_delta_mb"] == pytest.approx(150.141)


def test_peak_memory_footprint_line():
    p = parse_benchmark_output(_fixture("bm_chromeos_peak_memory.txt"))
    assert p["latency"]["n"] == 1061 and p["latency"]["warmup_n"] == 9
    assert p["memory"]["process_peak_mb"] == pytest.approx(93.2383)


def test_logcat_prefix_and_exponents():
    p = parse_benchmark_output(_fixture("bm_android_logcat_new.txt"))
    lat = p["latency"]
    assert lat["n"] == 10
    assert lat["mean_ms"] == pytest.approx(2719.85)  # avg=2.71985e+06 us
    assert lat["p50_ms"] == pytest.approx(2709.263)
    assert p["memory"]["overall_peak_delta_mb"] == pytest.approx(337.0)


def test_garbage_output_is_an_error():
    with pytest.raises(AndroidError, match="no 'count='"):
        parse_benchmark_output("Segmentation fault\n")


def test_command_construction(tmp_path: Path):
    binary = tmp_path / "android_aarch64_benchmark_model"
    opts = AndroidOptions(binary, serial="R58M123", use_xnnpack=False, use_gpu=True, use_nnapi=False)
    cmd = benchmark_command(opts, "model_int8.tflite", threads=2, runs=200, min_seconds=5, warmup=20)
    assert cmd[0] == "/data/local/tmp/ssdkd-bench/android_aarch64_benchmark_model"
    for flag in ("--graph=/data/local/tmp/ssdkd-bench/model_int8.tflite", "--num_threads=2", "--num_runs=200",
                 "--min_secs=5", "--warmup_runs=20", "--use_xnnpack=false", "--use_gpu=true", "--use_nnapi=false",
                 "--report_peak_memory_footprint=true"):
        assert flag in cmd
    full = run_command(opts, cmd)
    assert full[:4] == ["adb", "-s", "R58M123", "shell"] and len(full) == 5  # one quoted string for the device shell
    pushes = push_commands(opts, [tmp_path / "model_int8.tflite"])
    assert ["adb", "-s", "R58M123", "push", str(binary), f"/data/local/tmp/ssdkd-bench/{binary.name}"] in pushes
    assert pushes[-1][-1] == "/data/local/tmp/ssdkd-bench/model_int8.tflite"


def test_parse_adb_devices():
    text = "List of devices attached\nR58M123\tdevice\nemulator-5554\tunauthorized\n\n"
    assert parse_adb_devices(text) == {"R58M123": "device", "emulator-5554": "unauthorized"}


def test_missing_binary_and_missing_adb(tmp_path: Path):
    with pytest.raises(InputError, match="--benchmark-binary not found"):
        check_device(AndroidOptions(tmp_path / "nope"))
    binary = tmp_path / "benchmark_model"
    binary.write_text("")
    with pytest.raises(InputError, match="adb not found"):
        check_device(AndroidOptions(binary, adb="ssdkd-no-such-adb"))


def _fake_adb(tmp_path: Path, devices: str, bench_output: str = "") -> str:
    """A stand-in adb: `devices` lists ``devices``, getprop answers, push succeeds, the benchmark replays output."""
    out = tmp_path / "bench_output.txt"
    out.write_text(bench_output)
    script = tmp_path / "adb"
    script.write_text(f"""#!/bin/sh
if [ "$1" = "-s" ]; then shift 2; fi
case "$1" in
  devices) printf '{devices}' ;;
  push) exit 0 ;;
  shell) case "$2" in
           getprop*) echo fake-value ;;
           *benchmark_model*) cat {out} ;;
           *) exit 0 ;;
         esac ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_no_device_and_unauthorized_device(tmp_path: Path):
    binary = tmp_path / "benchmark_model"
    binary.write_text("")
    adb = _fake_adb(tmp_path, "List of devices attached\\n\\n")
    with pytest.raises(InputError, match="no Android device connected"):
        check_device(AndroidOptions(binary, adb=adb))
    adb = _fake_adb(tmp_path, "List of devices attached\\nR58M123\\tunauthorized\\n")
    with pytest.raises(InputError, match="unauthorized"):
        check_device(AndroidOptions(binary, serial="R58M123", adb=adb))


def _tflite_with_sidecar(tmp_path: Path) -> Path:
    d = tmp_path / "assets"
    d.mkdir()
    (d / "model_int8.tflite").write_bytes(b"TFL3 placeholder: the fake adb never reads it")
    side = {"schema_version": 1, "input_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "labels": ["a", "b"],
            "layout": "NHWC"}
    (d / "preprocessing.json").write_text(json.dumps(side))  # the Android assets layout
    return d / "model_int8.tflite"


def test_android_end_to_end_with_replayed_output(tmp_path: Path):
    from benchmarks.harness import run_benchmark

    binary = tmp_path / "benchmark_model"
    binary.write_text("")
    adb = _fake_adb(tmp_path, "List of devices attached\\nR58M123\\tdevice\\n",
                    _fixture("bm_ti_am62x_new_p5_median_p95.txt"))
    model = _tflite_with_sidecar(tmp_path)
    res = run_benchmark([model], target="android", threads="1,4", runs=50, min_seconds=1, warmup=1,
                        android=AndroidOptions(binary, adb=adb), out=tmp_path / "out", progress=False)
    assert [r["threads"] for r in res.rows] == [1, 4] and all(r["status"] == "ok" for r in res.rows)
    assert res.rows[0]["latency"]["p50_ms"] == pytest.approx(899.281)
    assert res.doc["machine"]["android_device"]["serial"] == "R58M123"
    assert (tmp_path / "out" / "android_logs" / "model_int8_t1.log").is_file()
    # Asking for more runs than the phone did must not report figures from fewer runs.
    res = run_benchmark([model], target="android", threads="1", runs=100, min_seconds=1, warmup=1,
                        android=AndroidOptions(binary, adb=adb), progress=False)
    assert res.rows[0]["status"].startswith("failed: benchmark_model ran only 50 of 100 runs")
    assert res.rows[0]["latency"] is None and res.failed_runtimes == ["litert"]


def test_cli_android_without_binary_or_adb(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from benchmarks.cli import main

    model = _tflite_with_sidecar(tmp_path)
    assert main([str(model), "--target", "android", "--out", str(tmp_path / "o")]) == 2
    assert "--benchmark-binary" in capsys.readouterr().err
    binary = tmp_path / "benchmark_model"
    binary.write_text("")
    assert main([str(model), "--target", "android", "--benchmark-binary", str(binary), "--adb",
                 "ssdkd-no-such-adb", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "adb not found" in err and len(err.strip().splitlines()) == 1
