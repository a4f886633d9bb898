"""Every exported file carries its model's facts, and they agree with the project's own contract.

TFLite: the ``TFLITE_METADATA`` flatbuffer and the zipped associated files, read back and compared with
``preprocessing.json`` / ``labels.txt`` / the model card. ONNX and CoreML: the same facts as string metadata.
Shares the session fixture ``exported`` (one full export)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from export import model_facts, tflite_metadata
from models.checkpoint import ModelCard
from models.errors import InputError
from models.preprocessing import Preprocessing, normalize, quantize
from tests.conftest import REPO

pytestmark = pytest.mark.slow
BUNDLED = REPO / "android_demo" / "app" / "src" / "main" / "assets"
TFLITE = ("model_fp32.tflite", "model_fp16.tflite", "model_int8.tflite", "model_int8_fio.tflite")


def _contract(exported, file: str) -> Preprocessing:
    return Preprocessing.load(exported.out_dir / exported.artifact(file).preprocessing)


def _tflite_files(exported) -> dict[Path, Preprocessing]:
    """Every .tflite the export wrote, the Android app's copy included, with the contract it travels with."""
    files = {exported.out_dir / f: _contract(exported, f) for f in TFLITE}
    assets = Path(exported.settings["android_demo_written"])
    files[assets / "model.tflite"] = Preprocessing.load(assets / "preprocessing.json")
    return files


def test_every_tflite_carries_metadata_that_agrees_with_its_contract(exported):
    labels_txt = (exported.out_dir / "labels.txt").read_text().splitlines()
    for path, pre in _tflite_files(exported).items():
        m = tflite_metadata.read(path)
        assert m.labels == labels_txt == list(pre.labels) == exported.card["labels"], path
        assert m.contract == dataclasses.replace(pre, model_file=None), path  # the whole contract, scales included
        assert m.card == exported.card
        # NormalizationOptions work on 0..255 pixels: (x - 255 mean) / (255 std) is the contract's (v/255 - mean)/std
        np.testing.assert_allclose(np.array(m.mean) / 255, pre.mean, rtol=1e-6)
        np.testing.assert_allclose(np.array(m.std) / 255, pre.std, rtol=1e-6)
        assert m.color_space == pre.color == "RGB" and m.image_size == (pre.input_size, pre.input_size)
        lo, hi = normalize(np.array([[0.0] * 3, [255.0] * 3]), pre.mean, pre.std)
        if pre.input_dtype == "int8":  # the stats of an integer input are its quantized codes
            lo, hi = (quantize(v, pre.input_scale, pre.input_zero_point, "int8") for v in (lo, hi))
            assert -128 <= min(m.input_min) and max(m.input_max) <= 127
        np.testing.assert_allclose(m.input_min, lo, rtol=1e-6)
        np.testing.assert_allclose(m.input_max, hi, rtol=1e-6)
        assert m.min_parser_version == tflite_metadata.MIN_PARSER_VERSION
        assert m.author == model_facts.AUTHOR and m.license == model_facts.NO_LICENCE  # the tiny card has none
        assert m.description == model_facts.description(ModelCard.from_json(exported.card), pre)
        assert "not a medical device" in m.description and exported.card["arch"] in m.description
        assert f"T = {model_facts.temperature(pre):g}" in m.description
        with zipfile.ZipFile(path) as zf:  # MediaPipe reads associated files in place: they must be stored
            assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def test_metadata_keeps_the_model_intact_and_aligned(exported):
    """The verification gate ran on these very files; the weights sit on 16-byte boundaries (LiteRT maps them in
    place) and attaching again gives the same bytes."""
    from ai_edge_litert import schema_py_generated as tfl

    for f in TFLITE:
        assert exported.artifact(f).verification.status == "passed", f
        data = (exported.out_dir / f).read_bytes()
        model = tfl.Model.GetRootAs(data, 0)
        starts = [model.Buffers(i)._tab.Vector(model.Buffers(i)._tab.Offset(4)) for i in range(model.BuffersLength())
                  if model.Buffers(i).DataLength()]
        assert starts and all(s % tflite_metadata.ALIGNMENT == 0 for s in starts), f
        card = ModelCard.from_json(exported.card)
        assert tflite_metadata.attach(data, card=card, pre=_contract(exported, f)) == data, f


def test_bundled_app_model_carries_metadata():
    """The model bundled in the Android demo describes itself as its assets do."""
    m = tflite_metadata.read(BUNDLED / "model.tflite")
    pre = Preprocessing.load(BUNDLED / "preprocessing.json")
    assert m.contract == dataclasses.replace(pre, model_file=None)
    assert m.labels == (BUNDLED / "labels.txt").read_text().splitlines() == list(pre.labels)
    assert m.card["labels"] == list(pre.labels) and m.card["input_size"] == pre.input_size
    assert "not a medical device" in m.description


def test_bare_or_mismatched_models_are_refused(exported, tmp_path):
    from ai_edge_litert import schema_py_generated as tfl

    data = (exported.out_dir / "model_int8_fio.tflite").read_bytes()
    tree = tfl.ModelT.InitFromPackedBuf(data, 0)
    tree.metadata = [m for m in tree.metadata if m.name != tflite_metadata.METADATA_NAME.encode()]
    builder = tflite_metadata._builder(len(data))
    builder.Finish(tree.Pack(builder), file_identifier=tflite_metadata.MODEL_IDENTIFIER)
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(bytes(builder.Output()))
    with pytest.raises(InputError, match="bare.tflite: no TFLITE_METADATA"):
        tflite_metadata.read(bare)
    pre = _contract(exported, "model_int8_fio.tflite")
    with pytest.raises(ValueError, match="7 scores out"):
        tflite_metadata.attach(data, card=ModelCard.from_json(exported.card),
                               pre=dataclasses.replace(pre, labels=pre.labels[:7]))


def test_android_export_refuses_a_model_whose_metadata_disagrees(exported, tmp_path):
    from export.android import SOURCE, write_android_assets

    out = tmp_path / "out"
    out.mkdir()
    sidecar = exported.artifact(SOURCE).preprocessing
    shutil.copy(exported.out_dir / sidecar, out / sidecar)
    pre = _contract(exported, SOURCE)
    wrong = dataclasses.replace(pre, mean=(0.1, 0.2, 0.3))
    (out / SOURCE).write_bytes(tflite_metadata.attach((exported.out_dir / SOURCE).read_bytes(),
                                                      card=ModelCard.from_json(exported.card), pre=wrong))
    with pytest.raises(InputError, match="TFLite metadata does not match"):
        write_android_assets(out, tmp_path / "app", sidecar)


def _check_string_metadata(meta: dict[str, str], exported, pre: Preprocessing) -> None:
    card = exported.card
    assert json.loads(meta["labels"]) == card["labels"] == list(pre.labels)
    assert json.loads(meta["mean"]) == list(pre.mean) and json.loads(meta["std"]) == list(pre.std)
    assert int(meta["input_size"]) == pre.input_size and meta["layout"] == pre.layout
    assert float(meta["temperature"]) == model_facts.temperature(pre)
    assert json.loads(meta["model_card"]) == card
    embedded = Preprocessing.from_json(json.loads(meta["preprocessing"]))
    assert embedded == dataclasses.replace(pre, model_file=None)
    assert meta["description"] == model_facts.description(ModelCard.from_json(card), pre)
    assert meta["intended_use"] == model_facts.INTENDED_USE and meta["license"] == model_facts.NO_LICENCE


def test_onnx_carries_the_same_facts(exported):
    import onnx

    from export.onnx_export import read_metadata

    for f in ("model_fp32.onnx", "model_int8.onnx"):
        pre = _contract(exported, f)
        _check_string_metadata(read_metadata(exported.out_dir / f), exported, pre)
        assert onnx.load(str(exported.out_dir / f), load_external_data=False).doc_string == \
            model_facts.description(ModelCard.from_json(exported.card), pre)


def test_coreml_carries_the_same_facts(exported):
    import coremltools as ct

    for f in ("model_fp16.mlpackage", "model_int8.mlpackage"):
        pre = _contract(exported, f)
        meta = ct.utils.load_spec(str(exported.out_dir / f)).description.metadata
        _check_string_metadata(dict(meta.userDefined), exported, pre)
        assert meta.author == model_facts.AUTHOR and meta.license == model_facts.NO_LICENCE
        assert meta.shortDescription == model_facts.description(ModelCard.from_json(exported.card), pre)
        assert meta.versionString == model_facts.version(ModelCard.from_json(exported.card))


def test_description_states_the_card_facts():
    card = ModelCard(arch="mobilenet_v2", width=0.5, num_classes=2, labels=["MEL", "NV"], input_size=112,
                     mean=[0.5] * 3, std=[0.5] * 3, training={"stage": "student", "method": "ssd-kd"},
                     metrics={"accuracy": 0.6, "balanced_accuracy": 0.5, "macro_auc": 0.889, "split": "val"},
                     data={"layout": "isic2019", "train_images": 7013, "val_images": 1503, "split_seed": 2021,
                           "licence": "CC BY-NC 4.0"})
    pre = dataclasses.replace(card.preprocessing(), output_kind="probabilities")
    text = model_facts.description(card, pre)
    for fact in ("mobilenet_v2 (width 0.5)", "MEL, NV", "RGB 112x112", "7013 train / 1503 val", "ssd-kd",
                 "accuracy 60.0%", "balanced accuracy 50.0%", "AUC 0.889", "T = 1:", "Licence: CC BY-NC 4.0",
                 "not a medical device"):
        assert fact in text, fact
    assert model_facts.version(card) == "student ssd-kd, model card v1"
