"""A real client that is not ours: MediaPipe Tasks' ``ImageClassifier`` opens the float-I/O int8 TFLite of the
default export unchanged and classifies real sample images, taking the normalisation from the file's metadata and the
label strings from the file's associated labels.

Two views. Given the image at the model's input size (its resize is then the identity), MediaPipe must reproduce this
project's own pipeline (:mod:`models.preprocessing` + LiteRT on the same file) to the int8 output grid: that pins the
metadata's normalisation and labels. Given the JPEG itself, MediaPipe decodes it and resamples the centre square (a
region of interest) with its own bilinear resize where ours box-averages first; the fixture model is barely trained
at 64 px and flips its top-1 on sub-pixel changes, so there only a floor well above chance is asserted.
Shares the session fixture ``exported``."""

from __future__ import annotations

import numpy as np
import pytest

from models.preprocessing import Preprocessing
from tests.conftest import IN_CI

pytestmark = pytest.mark.slow
FILE = "model_int8_fio.tflite"
N_IMAGES = 150
MAX_DP = 4 / 256  # four steps of the int8 probability grid: MediaPipe's LiteRT build may round an op differently
MIN_FULL_IMAGE_AGREEMENT = 0.5  # chance is 1/8


def _mediapipe():
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
        from mediapipe.tasks.python.components.containers.rect import RectF
    except ImportError as e:
        msg = f"mediapipe is not importable ({e}); install it with: pip install 'ssdkd[tflite]'"
        if IN_CI:
            pytest.fail(f"{msg} (CI=true: tools must be present)")
        pytest.skip(msg)
    return mp, BaseOptions, vision, RectF


def _classifier(mp_modules, path):
    _, BaseOptions, vision, _ = mp_modules
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=-1)
    return vision.ImageClassifier.create_from_options(options)


def _scores(result, labels: tuple[str, ...]) -> np.ndarray:
    """MediaPipe's categories as a score vector, checking that its label strings are the model's classes."""
    categories = result.classifications[0].categories
    assert sorted(c.index for c in categories) == list(range(len(labels)))
    assert all(c.category_name == labels[c.index] for c in categories)
    p = np.zeros(len(labels))
    for c in categories:
        p[c.index] = c.score
    return p


@pytest.fixture(scope="module")
def clients(exported):
    """MediaPipe's classifier and this project's pipeline on the same file, and the sample images."""
    from ai_edge_litert.interpreter import Interpreter

    mp_modules = _mediapipe()
    path = exported.out_dir / FILE
    pre = Preprocessing.load(exported.out_dir / exported.artifact(FILE).preprocessing)
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()

    def ours(pixels: np.ndarray) -> np.ndarray:
        it.set_tensor(it.get_input_details()[0]["index"], pre.model_input(pixels))
        it.invoke()
        return pre.probabilities(it.get_tensor(it.get_output_details()[0]["index"]))[0]

    with _classifier(mp_modules, path) as classifier:
        yield mp_modules, classifier, ours, pre


def _images(sample_root) -> list:
    return sorted((sample_root / "ISIC_2019_Training_Input").glob("*.jpg"))[:N_IMAGES]


def test_mediapipe_normalises_and_labels_from_the_metadata(clients, sample_root):
    (mp, _, _, _), classifier, ours, pre = clients
    dp = []
    for image_path in _images(sample_root):
        # already the model's size; C order, as mp.Image ignores strides (it would read a transposed view's rows)
        pixels = np.ascontiguousarray(np.clip(np.rint(pre.pixels(image_path)), 0, 255).astype(np.uint8))
        theirs = _scores(classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels)), pre.labels)
        dp.append(np.abs(theirs - ours(pixels.astype(np.float64))).max())
    # so MediaPipe's top-1 is the project's wherever the project's lead exceeds 2 * MAX_DP
    assert max(dp) <= MAX_DP, f"MediaPipe's probabilities differ from the project's by up to {max(dp):.4f}"


def test_mediapipe_classifies_whole_jpegs_like_the_project_pipeline(clients, sample_root):
    (mp, _, vision, RectF), classifier, ours, pre = clients
    mine, theirs = [], []
    for image_path in _images(sample_root):
        image = mp.Image.create_from_file(str(image_path))  # MediaPipe decodes, crops and resizes
        w, h = image.width, image.height
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2  # the contract's centre square
        roi = RectF(left=left / w, top=top / h, right=(left + s) / w, bottom=(top + s) / h)
        result = classifier.classify(image, vision.ImageProcessingOptions(region_of_interest=roi))
        theirs.append(int(_scores(result, pre.labels).argmax()))
        mine.append(int(ours(pre.pixels(image_path)).argmax()))
    agreement = float(np.mean(np.array(mine) == np.array(theirs)))
    assert len(set(theirs)) > 1 and len(set(mine)) > 1, "one class for every image: nothing is compared"
    assert agreement >= MIN_FULL_IMAGE_AGREEMENT, f"MediaPipe agrees with the project's pipeline on {agreement:.1%}"


def test_mediapipe_refuses_the_int8_io_file_as_the_report_says(exported):
    """The Android app's int8-I/O file is not for MediaPipe (it takes uint8 or float32 input only)."""
    from export.report import OPENS_IN

    mp_modules = _mediapipe()
    assert "MediaPipe" in OPENS_IN[FILE] and "MediaPipe refuses" in OPENS_IN["model_int8.tflite"]
    with pytest.raises(Exception, match="uint8/float32"):  # noqa: B017 - MediaPipe raises a bare RuntimeError
        _classifier(mp_modules, exported.out_dir / "model_int8.tflite")
    assert f"{FILE} opens in MediaPipe" in exported.table()
