"""The format table and up-front request validation (fast: no conversion)."""

from __future__ import annotations

import sys

import pytest

from export import Gate
from export.formats import FORMATS, check_dependencies, plan, resolve_targets, validate_flags
from models.errors import InputError


def test_targets_resolve_in_table_order():
    assert resolve_targets("all") == list(FORMATS)
    assert resolve_targets("tflite,onnx") == ["onnx", "tflite"]
    assert resolve_targets(["coreml", "coreml"]) == ["coreml"]


def test_unknown_target_suggests_closest():
    with pytest.raises(InputError, match=r"'tflte'.*did you mean 'tflite'"):
        resolve_targets("tflte")


def test_flag_no_target_accepts_is_an_error():
    with pytest.raises(InputError, match="--fp16 does not apply to target.*onnx.*it applies to tflite, coreml"):
        validate_flags(["onnx"], int8=False, fp16=True)
    validate_flags(["onnx", "tflite"], int8=True, fp16=True)  # accepted where it applies
    with pytest.raises(InputError, match="--a16w8 does not apply to target.*coreml.*it applies to tflite$"):
        validate_flags(["coreml"], int8=False, fp16=False, a16w8=True)


def test_plan_is_the_harness_layout():
    files = [s.file for s in plan(list(FORMATS), int8=True, fp16=True)]
    assert files == ["model_fp32.onnx", "model_int8.onnx", "model_fp32.tflite", "model_fp16.tflite",
                     "model_int8.tflite", "model_int8_fio.tflite", "model_fp16.mlpackage", "model_int8.mlpackage"]
    sidecars = {s.file: s.sidecar for s in plan(["tflite"], int8=True, fp16=False)}
    assert sidecars["model_int8.tflite"] == "model_int8.preprocessing.json"
    # where two targets share a stem, the full file name keeps their (different) contracts apart
    sidecars = {s.file: s.sidecar for s in plan(["onnx", "tflite"], int8=True, fp16=False)}
    assert sidecars["model_fp32.onnx"] == "model_fp32.onnx.preprocessing.json"
    assert sidecars["model_int8.tflite"] == "model_int8.tflite.preprocessing.json"
    assert sidecars["model_int8_fio.tflite"] == "model_int8_fio.preprocessing.json"
    assert len(set(sidecars.values())) == len(sidecars)
    assert [s.file for s in plan(["tflite"], int8=False, fp16=False)] == ["model_fp32.tflite"]


def test_missing_dependency_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)  # makes `import coremltools` raise ImportError
    with pytest.raises(InputError, match=r"coremltools.*pip install 'ssdkd\[coreml\]'"):
        check_dependencies(["coreml"])


def test_missing_dependency_from_main(monkeypatch, capsys, tmp_path):
    from export.cli import main

    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", None)
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(b"")  # never read: dependencies are checked before the checkpoint is loaded
    assert main([str(ckpt), "--target", "tflite", "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    # (library log lines that bypass the fd-level capture under pytest's capsys may precede it)
    ours = [line for line in err.splitlines() if line.startswith("ssdkd-export: error:")]
    assert len(ours) == 1 and "pip install 'ssdkd[tflite]'" in ours[0] and "Traceback" not in err


def test_gate_rejects_nonsense():
    with pytest.raises(ValueError):
        Gate(min_agreement=97.0)  # a fraction, not a percentage
    with pytest.raises(ValueError):
        Gate(max_bacc_drop=-1)


def test_export_options_are_frozen_keyword_only_and_checked():
    import dataclasses

    from export.options import ExportOptions

    opts = ExportOptions(targets="tflite,onnx", int8=True)
    assert opts.targets == ("onnx", "tflite")  # resolved once, in table order
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.int8 = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        ExportOptions("tflite")  # type: ignore[misc]
    with pytest.raises(InputError, match=r"^--calib-size must be at least 32, got 4$"):
        ExportOptions(calib_size=4)
    with pytest.raises(InputError, match=r"^--fp16 does not apply to target\(s\) onnx; it applies to tflite, coreml$"):
        ExportOptions(targets="onnx", fp16=True)
    with pytest.raises(InputError, match="--android-demo needs the TFLite target"):
        ExportOptions(targets="onnx", android_demo="app")
    with pytest.raises(InputError, match="unknown TFLite route 'tf'"):
        ExportOptions(tflite_route="tf")
    with pytest.raises(InputError, match="^--a16w8 needs --tflite-route litert, got 'onnx2tf'$"):
        ExportOptions(a16w8=True, tflite_route="onnx2tf")
    with pytest.raises(InputError, match="--onnx-int8 must be one of portable, vnni, got 'avx'"):
        dataclasses.replace(opts, onnx_int8="avx")  # a changed copy is checked again


def test_export_keywords_replace_options_and_unknown_ones_are_named():
    from export.options import ExportOptions, with_settings

    base = ExportOptions(targets="onnx", val_size=8)
    assert with_settings(base, {"int8": True}) == ExportOptions(targets="onnx", val_size=8, int8=True)
    assert with_settings(None, {}) == ExportOptions()
    with pytest.raises(InputError, match=r"unknown export option 'int_8'; did you mean 'int8'\?"):
        with_settings(None, {"int_8": True})
    with pytest.raises(TypeError, match="ExportOptions"):
        with_settings("tflite", {})  # type: ignore[arg-type]


def test_cli_defaults_are_the_library_defaults():
    import os

    from export.cli import get_args_parser, options_from_args
    from export.options import ExportOptions

    args = get_args_parser().parse_args(["x.pt"])
    assert options_from_args(args) == ExportOptions(threads=min(2, os.cpu_count() or 1))
    args = get_args_parser().parse_args(["x.pt", "--target", "all", "--int8", "--no-rounding-fixes", "--no-gate"])
    opts = options_from_args(args)
    assert opts.targets == tuple(FORMATS) and opts.int8 and not opts.rounding_fixes and not opts.gate.enabled


def test_format_table_covers_every_target_and_precision_the_cli_accepts():
    import importlib

    from export.cli import get_args_parser
    from export.runtimes import RUNTIMES

    parser = get_args_parser()
    precision_flags = {a.dest for a in parser._actions if a.dest in ("int8", "fp16", "a16w8")}
    assert precision_flags == {"int8", "fp16", "a16w8"} == set().union(*(f.flags for f in FORMATS.values()))
    files = [a.file for f in FORMATS.values() for a in f.artifacts]
    assert len(files) == len(set(files)), "every file name belongs to one target and precision"
    for target in resolve_targets("all"):
        fmt = FORMATS[target]
        module = importlib.import_module(fmt.module)
        assert callable(module.build) and callable(module.verify), fmt.module
        assert fmt.runtime in RUNTIMES
        # with a flag the target accepts, it writes a file of that precision; any file the flag adds is of it
        base = {s.file for s in plan([target], int8=False, fp16=False)}
        assert base
        for flag in fmt.flags:
            specs = plan([target], **{f: f == flag for f in ("int8", "fp16", "a16w8")})
            assert flag in {s.precision for s in specs}, (target, flag)
            assert {s.precision for s in specs if s.file not in base} <= {flag}, (target, flag)
        assert {s.runtime for s in plan([target], int8=True, fp16=True)} == {fmt.runtime}
