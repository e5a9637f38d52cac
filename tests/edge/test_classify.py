"""The classifier on real models built by the trainer (conftest) and real face crops from annotated photos."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.classify import (
    RUNTIMES,
    ClassifierOptions,
    EmotionClassifier,
    TensorQuant,
    interpreter_class,
    preprocess,
)
from edge.detect import crop
from edge.errors import UserError
from edge.events import Box
from edge.manifest import FER2013_LABELS, InputSpec, sha256_of
from tests.shared import faces_dir


@pytest.fixture(scope="module")
def face_crops() -> list[np.ndarray]:
    """The 18 annotated faces of the four photos, BGR, 37-91 px, with a 10% margin."""
    root = faces_dir()
    crops = []
    for image in ET.parse(root / "training.xml").getroot().iter("image"):
        frame = cv2.imread(str(root / image.get("file", "")))
        for b in image.iter("box"):
            box = Box(int(b.get("left", 0)), int(b.get("top", 0)), int(b.get("width", 0)), int(b.get("height", 0)))
            region = crop(frame, box, 0.1)
            assert region is not None
            crops.append(region)
    assert len(crops) == 18
    return crops


@pytest.fixture(scope="module")
def classifier(int8_model: Path) -> Iterator[EmotionClassifier]:
    with EmotionClassifier.create(ClassifierOptions(model=int8_model)) as model:
        yield model


def test_the_int8_model_gives_probabilities_over_the_manifest_labels(
        classifier: EmotionClassifier, face_crops: list[np.ndarray]) -> None:
    probabilities = classifier.classify(face_crops)
    assert classifier.labels == FER2013_LABELS and classifier.runtime == "ai_edge_litert"
    assert probabilities.shape == (18, 7) and probabilities.dtype == np.float32
    assert np.all(probabilities >= 0) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert classifier.classify([]).shape == (0, 7)


def test_one_batched_call_equals_one_call_per_face(
        classifier: EmotionClassifier, face_crops: list[np.ndarray]) -> None:
    batched = classifier.classify(face_crops)
    one_by_one = np.vstack([classifier.classify([face]) for face in face_crops])
    again = classifier.classify(face_crops[:5])  # a different count reallocates once more
    np.testing.assert_array_equal(batched, one_by_one)
    np.testing.assert_array_equal(again, batched[:5])
    assert classifier.batched


def test_max_batch_splits_calls_without_changing_results(
        int8_model: Path, classifier: EmotionClassifier, face_crops: list[np.ndarray]) -> None:
    with EmotionClassifier.create(ClassifierOptions(model=int8_model, max_batch=4, threads=2)) as small:
        np.testing.assert_array_equal(small.classify(face_crops), classifier.classify(face_crops))


def test_gray_and_bgra_crops_classify_like_their_bgr_source(
        classifier: EmotionClassifier, face_crops: list[np.ndarray]) -> None:
    gray = [cv2.cvtColor(c, cv2.COLOR_BGR2GRAY) for c in face_crops]
    bgra = [cv2.cvtColor(c, cv2.COLOR_BGR2BGRA) for c in face_crops]
    expected = classifier.classify(face_crops)
    np.testing.assert_array_equal(classifier.classify(gray), expected)
    np.testing.assert_array_equal(classifier.classify([g[:, :, None] for g in gray]), expected)
    np.testing.assert_array_equal(classifier.classify(bgra), expected)


def test_every_runtime_that_imports_gives_the_same_probabilities(
        int8_model: Path, classifier: EmotionClassifier, face_crops: list[np.ndarray]) -> None:
    assert list(RUNTIMES) == ["ai_edge_litert", "tflite_runtime", "tensorflow"]
    with EmotionClassifier.create(ClassifierOptions(model=int8_model, runtime="tensorflow")) as other:
        assert other.runtime == "tensorflow"
        np.testing.assert_allclose(other.classify(face_crops), classifier.classify(face_crops), atol=2 / 256)


def test_a_runtime_that_is_not_installed_is_a_user_error() -> None:
    try:
        import tflite_runtime  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="^no TFLite runtime: cannot import tflite_runtime"):
            interpreter_class("tflite_runtime")
    else:
        pytest.skip("tflite_runtime is installed here")


def test_preprocess_follows_the_manifest_and_the_input_quantization() -> None:
    bgr = np.full((96, 80, 3), 200, np.uint8)
    int8 = preprocess([bgr], InputSpec(), TensorQuant(np.int8, 1.0, -128))
    assert int8.shape == (1, 48, 48, 1) and int8.dtype == np.int8 and np.all(int8 == 72)
    floats = preprocess([bgr[:, :, 0]], InputSpec(scale=1 / 255, offset=-0.5))
    assert floats.dtype == np.float32 and np.allclose(floats, 200 / 255 - 0.5)
    clipped = preprocess([bgr], InputSpec(), TensorQuant(np.int8, 0.5, 0))
    assert np.all(clipped == 127)
    blue = np.zeros((10, 10, 3), np.uint8)
    blue[:, :, 0] = 255
    rgb = preprocess([blue], InputSpec(height=4, width=4, channels=3, color="rgb"), TensorQuant(np.uint8, 1.0, 0))
    assert rgb.shape == (1, 4, 4, 3) and np.all(rgb[..., 2] == 255) and np.all(rgb[..., :2] == 0)


@pytest.mark.parametrize("bad", [
    np.zeros((0, 0, 3), np.uint8), np.zeros((10, 10, 2), np.uint8), np.zeros((10, 10, 3), np.float32),
    np.zeros(100, np.uint8),
], ids=["empty", "two-channels", "float", "flat"])
def test_preprocess_rejects_what_is_not_an_image(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"^crops\[1\]: expected a non-empty uint8 gray, BGR or BGRA image"):
        preprocess([np.zeros((5, 5), np.uint8), bad], InputSpec())


def fixed_batch_model(folder: Path) -> Path:
    """A float model with a hard-coded batch of 1 (reshape to [1, 2304]) that refuses batch resizing."""
    import tensorflow as tf

    weights = tf.constant(np.random.default_rng(0).normal(size=(48 * 48, 7)).astype(np.float32) * 0.01)

    @tf.function(input_signature=[tf.TensorSpec([1, 48, 48, 1], tf.float32)])
    def scores(x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(tf.reshape(x, [1, 48 * 48]), weights)  # logits: the classifier adds the softmax

    path = folder / "fixed.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions(
        [scores.get_concrete_function()], scores).convert())
    path.with_suffix(".json").write_text(json.dumps({
        "name": "fixed", "labels": list(FER2013_LABELS), "sha256": sha256_of(path),
        "input": {"height": 48, "width": 48, "channels": 1, "color": "gray", "scale": 1 / 255, "offset": 0.0}}))
    return path


def test_a_model_that_refuses_batching_falls_back_to_one_call_per_face(
        tmp_path: Path, face_crops: list[np.ndarray]) -> None:
    with EmotionClassifier.create(ClassifierOptions(model=fixed_batch_model(tmp_path))) as model:
        batched = model.classify(face_crops)
        one_by_one = np.vstack([model.classify([face]) for face in face_crops])
        assert not model.batched
    assert batched.shape == (18, 7) and np.allclose(batched.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-6)


def variant(source: Path, folder: Path, data: bytes | None = None, fix_digest: bool = True,
            **manifest: object) -> Path:
    """A copy of `source` and its manifest in `folder`, with other bytes and/or manifest fields."""
    model = folder / "model.tflite"
    model.write_bytes(source.read_bytes() if data is None else data)
    fields = json.loads(source.with_suffix(".json").read_text())
    fields |= {"sha256": sha256_of(model)} if fix_digest else {}
    fields |= manifest
    model.with_suffix(".json").write_text(json.dumps({k: v for k, v in fields.items() if v is not None}))
    return model


BAD_MODELS: list[tuple[str, Callable[[Path, Path, Path], Path], str]] = [
    ("missing file", lambda m, f, d: d / "absent.tflite", "{model}: model file not found"),
    ("missing manifest", lambda m, f, d: shutil.copy(m, d / "lone.tflite") and d / "lone.tflite",
     "{manifest}: manifest not found"),
    ("random bytes", lambda m, f, d: variant(m, d, np.random.default_rng(1).bytes(20_000)),
     "{model}: not a valid TFLite model"),
    ("truncated", lambda m, f, d: variant(m, d, m.read_bytes()[: m.stat().st_size // 2]),
     "{model}: not a valid TFLite model"),
    ("sha256 mismatch", lambda m, f, d: variant(m, d, fix_digest=False, sha256="0" * 64),
     "{model}: sha256 .* does not match manifest"),
    ("wrong input shape", lambda m, f, d: variant(m, d, input={
        "height": 64, "width": 64, "channels": 1, "color": "gray", "scale": 1.0, "offset": 0.0}),
     "{model}: input shape \\[1, 48, 48, 1\\] does not match model.json"),
    ("rgb where the model is gray", lambda m, f, d: variant(m, d, input={
        "height": 48, "width": 48, "channels": 3, "color": "rgb", "scale": 1.0, "offset": 0.0}),
     "{model}: input shape \\[1, 48, 48, 1\\] does not match model.json"),
    ("missing labels", lambda m, f, d: variant(m, d, labels=None), "{manifest}: labels: expected a non-empty list"),
    ("six labels for seven outputs", lambda m, f, d: variant(m, d, labels=list(FER2013_LABELS[:6])),
     "{model}: output shape \\[1, 7\\] does not match the 6 labels in model.json"),
    ("float model where the manifest says int8", lambda m, f, d: variant(f, d),
     "{model}: model.json says int8 but the model's input/output are float32"),
]


@pytest.mark.parametrize(("make", "message"), [(make, message) for _, make, message in BAD_MODELS],
                         ids=[name for name, _, _ in BAD_MODELS])
def test_a_bad_model_is_a_one_line_user_error_naming_the_file(
        int8_model: Path, float_model: Path, tmp_path: Path,
        make: Callable[[Path, Path, Path], Path], message: str) -> None:
    model = make(int8_model, float_model, tmp_path)
    expected = message.format(model=re.escape(str(model)), manifest=re.escape(str(model.with_suffix(".json"))))
    with pytest.raises(UserError) as error:
        EmotionClassifier.create(ClassifierOptions(model=model))
    assert re.match(expected, str(error.value)), str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("threads", 0, "1-64"), ("threads", 100, "1-64"), ("max_batch", 0, "1-1024"),
    ("runtime", "onnx", re.escape("'auto' or one of ['ai_edge_litert', 'tflite_runtime', 'tensorflow']")),
])
def test_bad_options_are_rejected_naming_the_option_range_and_value(field: str, value: object, allowed: str) -> None:
    with pytest.raises(ValueError, match=rf"^classifier\.{field}: expected {allowed}, got {re.escape(repr(value))}$"):
        ClassifierOptions(model=Path("m.tflite"), **{field: value})  # type: ignore[arg-type]
