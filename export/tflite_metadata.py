"""TFLite model metadata: the ``TFLITE_METADATA`` flatbuffer and its associated files, on every exported .tflite.

MediaPipe Tasks (``ImageClassifier``), Android Studio's ML Model Binding and the LiteRT support library read the
input normalisation, the image size and colour space and the class labels from it, so the file works in those tools
with no ``labels.txt`` or ``preprocessing.json`` beside it. What is written:

- model: name, description (the model card's key facts, the temperature, "research use, not a medical device"),
  version, author, licence; ``preprocessing.json`` (this file's contract) and ``model_card.json`` attached as
  descriptions;
- input: ``ImageProperties`` (RGB, size), ``NormalizationOptions`` in pixel units (mean*255, std*255: the
  schema's ``(x - mean) / std`` on 0-255 pixels is then the contract's ``(v/255 - mean)/std``), and ``Stats``: the
  range of the tensor's values over all pixel values, which for an int8/uint8 input are the quantized codes (the
  schema has no field for scale and zero point; they are in the tensor itself and in the description);
- output: ``labels.txt`` as ``TENSOR_AXIS_LABELS`` and, for probability outputs, ``Stats`` 0..1.

The associated files are a zip appended to the flatbuffer (stored, not deflated: MediaPipe's reader maps them
in place); TFLite runtimes ignore bytes after the model. Schema: ``metadata_schema.fbs`` (tflite-support /
MediaPipe, identifier ``M001``); the generated Python for it comes from the pinned ``mediapipe`` wheel.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import flatbuffers
import numpy as np

from export import model_facts
from models.checkpoint import ModelCard
from models.errors import InputError
from models.preprocessing import Preprocessing, normalize, quantize

METADATA_NAME = "TFLITE_METADATA"  # the Model.metadata entry every reader looks for
METADATA_IDENTIFIER, MODEL_IDENTIFIER = b"M001", b"TFL3"
# Every table and field written here predates schema 1.0.1 (the schema's history lists what came later), so the
# oldest parsers read all of it.
MIN_PARSER_VERSION = "1.0.0"
LABELS_FILE, CONTRACT_FILE, CARD_FILE = "labels.txt", "preprocessing.json", "model_card.json"
INPUT_NAME, OUTPUT_NAME = "image", "probability"
SCHEMA_MODULE = ("tasks", "metadata", "metadata_schema_py_generated.py")
ALIGNMENT = 16  # what the TFLite schema asks of Buffer.data (force_align: 16)


@functools.cache
def schema() -> ModuleType:
    """The generated flatbuffer classes for ``metadata_schema.fbs``, from the installed mediapipe wheel.

    Loaded by file path: ``import mediapipe`` runs every task's import, TensorFlow included (seconds); this module
    needs only ``flatbuffers``.
    """
    spec = importlib.util.find_spec("mediapipe")
    path = Path(spec.submodule_search_locations[0]).joinpath(*SCHEMA_MODULE) if spec else None
    if path is None or not path.is_file():
        raise InputError("TFLite metadata needs the Python package 'mediapipe' (its generated metadata schema); "
                         "install it with: pip install 'ssdkd[tflite]'")
    module_spec = importlib.util.spec_from_file_location("ssdkd_tflite_metadata_schema", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def attach(model: bytes, *, card: ModelCard, pre: Preprocessing) -> bytes:
    """``model`` with metadata and associated files describing ``pre`` (the file's own contract: dtypes, scales)
    and ``card``. Metadata and files already there are replaced, so attaching twice gives the same bytes."""
    from ai_edge_litert import schema_py_generated as tfl

    tree = tfl.ModelT.InitFromPackedBuf(model, 0)
    if any(b.offset is not None and b.offset > 1 for b in tree.buffers or []):
        raise ValueError("attach() needs inline buffers (export.tflite_export.inline_buffers)")
    _check_shapes(tree, pre)
    meta = _metadata(card, pre)
    builder = _builder(len(model))
    builder.Finish(meta.Pack(builder), file_identifier=METADATA_IDENTIFIER)
    buffer = tfl.BufferT()
    buffer.data = np.frombuffer(bytes(builder.Output()), dtype=np.uint8)
    entry = next((m for m in tree.metadata or [] if _text(m.name) == METADATA_NAME), None)
    if entry is None:
        tree.buffers = [*(tree.buffers or []), buffer]
        entry = tfl.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(tree.buffers) - 1
        tree.metadata = [*(tree.metadata or []), entry]
    else:
        tree.buffers[entry.buffer] = buffer
    builder = _builder(len(model))
    builder.Finish(tree.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    out = io.BytesIO(bytes(builder.Output()))  # Pack writes the flatbuffer only: an old zip tail is dropped here
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
        for name, data in _files(card, pre).items():
            zf.writestr(_entry(name), data)
    return out.getvalue()


class _AlignedBuilder(flatbuffers.Builder):
    """Starts every numpy vector, the weight buffers among them, on a 16-byte boundary.

    The generated ``Pack`` ignores the schema's ``force_align``: LiteRT then copies each unaligned weight buffer to
    the heap when it loads the model ("unaligned buffer ... copying to an aligned heap buffer") instead of using it
    in place from the memory-mapped file.
    """

    def CreateNumpyVector(self, x: np.ndarray) -> int:  # noqa: N802 - the flatbuffers API's name
        self.Prep(ALIGNMENT, x.nbytes)
        return super().CreateNumpyVector(x)


def _builder(size: int) -> flatbuffers.Builder:
    return _AlignedBuilder(size + 4096)


def _entry(name: str) -> zipfile.ZipInfo:
    """A fixed timestamp, so the same model and card always give the same bytes."""
    return zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _check_shapes(tree, pre: Preprocessing) -> None:
    graph = tree.subgraphs[0]
    inp, out = (graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]])
    want_in = [1, pre.input_size, pre.input_size, 3]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1 or list(inp.shape) != want_in \
            or list(out.shape) != [1, len(pre.labels)]:
        raise ValueError(f"metadata describes one {want_in} image in and {len(pre.labels)} scores out; the model "
                         f"has inputs {[list(graph.tensors[i].shape) for i in graph.inputs]}, outputs "
                         f"{[list(graph.tensors[i].shape) for i in graph.outputs]}")


def _files(card: ModelCard, pre: Preprocessing) -> dict[str, bytes]:
    contract = dataclasses.replace(pre, model_file=None).to_json()  # the file it travels in is the model itself
    return {LABELS_FILE: ("\n".join(pre.labels) + "\n").encode(),
            CONTRACT_FILE: json.dumps(contract, indent=2).encode(),
            CARD_FILE: json.dumps(card.to_json(), indent=2).encode()}


def _quantization(side: str, pre: Preprocessing) -> str:
    dtype = getattr(pre, f"{side}_dtype")
    if dtype not in ("int8", "uint8"):
        return dtype
    return (f"{dtype}, real = (q - zero_point) * scale with scale {getattr(pre, f'{side}_scale'):.9g}, "
            f"zero_point {getattr(pre, f'{side}_zero_point')}")


def input_range(pre: Preprocessing) -> tuple[list[float], list[float]]:
    """Per-channel min and max of the input tensor's values over pixel values 0..255: normalised floats, or the
    quantized codes for an integer input."""
    ends = normalize(np.array([[0.0] * 3, [255.0] * 3]), pre.mean, pre.std)
    if pre.input_dtype in ("int8", "uint8"):
        ends = quantize(ends, pre.input_scale, pre.input_zero_point, pre.input_dtype)
    lo, hi = ends.astype(np.float64)
    return lo.tolist(), hi.tolist()


def _metadata(card: ModelCard, pre: Preprocessing):
    fb = schema()
    image = fb.ImagePropertiesT()
    image.colorSpace = fb.ColorSpaceType.RGB
    image.defaultSize = fb.ImageSizeT()
    image.defaultSize.width = image.defaultSize.height = pre.input_size
    norm = fb.NormalizationOptionsT()
    norm.mean = [255.0 * m for m in pre.mean]
    norm.std = [255.0 * s for s in pre.std]
    unit = fb.ProcessUnitT()
    unit.optionsType, unit.options = fb.ProcessUnitOptions.NormalizationOptions, norm
    inp = fb.TensorMetadataT()
    inp.name = INPUT_NAME
    inp.description = (f"RGB image {pre.input_size}x{pre.input_size} (NHWC): centre square crop, box-average "
                       f"then bilinear resize, (v/255 - mean)/std; tensor {_quantization('input', pre)}.")
    inp.content = _content(fb, fb.ContentProperties.ImageProperties, image)
    inp.processUnits = [unit]
    inp.stats = fb.StatsT()
    inp.stats.min, inp.stats.max = input_range(pre)

    labels = fb.AssociatedFileT()
    labels.name, labels.type = LABELS_FILE, fb.AssociatedFileType.TENSOR_AXIS_LABELS
    labels.description = "Class labels, one a line, in output order."
    out = fb.TensorMetadataT()
    out.name = OUTPUT_NAME
    out.description = (f"{pre.output_kind} of the {len(pre.labels)} classes; tensor {_quantization('output', pre)}. "
                       f"Calibrated probabilities: softmax(logits / T), T = {model_facts.temperature(pre):g}.")
    out.content = _content(fb, fb.ContentProperties.FeatureProperties, fb.FeaturePropertiesT())
    out.associatedFiles = [labels]
    if pre.output_kind == "probabilities":
        out.stats = fb.StatsT()
        out.stats.min, out.stats.max = [0.0], [1.0]

    graph = fb.SubGraphMetadataT()
    graph.name = "image_classifier"
    graph.description = "Classifies one dermoscopic image; the model description has the facts."
    graph.inputTensorMetadata, graph.outputTensorMetadata = [inp], [out]

    meta = fb.ModelMetadataT()
    meta.name = model_facts.name(card)
    meta.description = model_facts.description(card, pre)
    meta.version = model_facts.version(card)
    meta.author = model_facts.AUTHOR
    meta.license = model_facts.licence(card)
    meta.subgraphMetadata = [graph]
    meta.associatedFiles = [_description_file(fb, CONTRACT_FILE, "This file's preprocessing contract "
                                                                 "(preprocessing.json, ssdkd)."),
                            _description_file(fb, CARD_FILE, "The model card: training, data, metrics.")]
    meta.minParserVersion = MIN_PARSER_VERSION
    return meta


def _content(fb, kind: int, properties):
    content = fb.ContentT()
    content.contentPropertiesType, content.contentProperties = kind, properties
    return content


def _description_file(fb, name: str, text: str):
    f = fb.AssociatedFileT()
    f.name, f.type, f.description = name, fb.AssociatedFileType.DESCRIPTIONS, text
    return f


@dataclass(frozen=True)
class TfliteMetadata:
    """What a reader finds in a .tflite: the metadata flatbuffer's fields and the associated files."""

    name: str
    description: str
    version: str
    author: str
    license: str
    min_parser_version: str
    color_space: str
    image_size: tuple[int, int]  # width, height
    mean: tuple[float, ...]  # pixel units, as NormalizationOptions stores them
    std: tuple[float, ...]
    input_min: tuple[float, ...]
    input_max: tuple[float, ...]
    labels_file: str  # the output's TENSOR_AXIS_LABELS file
    files: dict[str, bytes]

    @property
    def labels(self) -> list[str]:
        return self.files[self.labels_file].decode().splitlines()

    @property
    def contract(self) -> Preprocessing:
        return Preprocessing.from_json(json.loads(self.files[CONTRACT_FILE]), f"{CONTRACT_FILE} in the model")

    @property
    def card(self) -> dict:
        return json.loads(self.files[CARD_FILE])


def read(path: str | Path) -> TfliteMetadata:
    """Read the metadata and associated files back from a .tflite; a file without them is an InputError."""
    from ai_edge_litert import schema_py_generated as tfl

    data = Path(path).read_bytes()
    model = tfl.Model.GetRootAs(data, 0)
    index = next((model.Metadata(i).Buffer() for i in range(model.MetadataLength())
                  if _text(model.Metadata(i).Name()) == METADATA_NAME), None)
    if index is None:
        raise InputError(f"{path}: no {METADATA_NAME} metadata (export it with ssdkd-export)")
    fb = schema()
    buf = model.Buffers(index).DataAsNumpy().tobytes()
    meta = fb.ModelMetadataT.InitFromPackedBuf(buf, 0)
    inp, out = meta.subgraphMetadata[0].inputTensorMetadata[0], meta.subgraphMetadata[0].outputTensorMetadata[0]
    norm = next(u.options for u in inp.processUnits if u.optionsType == fb.ProcessUnitOptions.NormalizationOptions)
    colors = {v: k for k, v in vars(fb.ColorSpaceType).items() if not k.startswith("_")}
    size = inp.content.contentProperties.defaultSize
    labels = next(f for f in out.associatedFiles if f.type == fb.AssociatedFileType.TENSOR_AXIS_LABELS)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    return TfliteMetadata(
        name=_text(meta.name), description=_text(meta.description), version=_text(meta.version),
        author=_text(meta.author), license=_text(meta.license), min_parser_version=_text(meta.minParserVersion),
        color_space=colors[inp.content.contentProperties.colorSpace], image_size=(size.width, size.height),
        mean=tuple(map(float, norm.mean)), std=tuple(map(float, norm.std)),
        input_min=tuple(map(float, inp.stats.min)), input_max=tuple(map(float, inp.stats.max)),
        labels_file=_text(labels.name), files=files,
    )
