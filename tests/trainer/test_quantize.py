"""Full-integer export: int8 tensors only, a manifest that loads, and agreement with the float model."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from edge.manifest import load_manifest
from trainer.data import load
from trainer.evaluate import predict, predict_keras
from trainer.quantize import QuantizeOptions, agreement, quantize


def test_every_tensor_is_integer(int8_model: Path) -> None:
    interpreter = tf.lite.Interpreter(model_path=str(int8_model))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    dtypes = {t["name"]: t["dtype"] for t in interpreter.get_tensor_details()}
    floats = [name for name, dtype in dtypes.items() if not np.issubdtype(dtype, np.integer)]
    assert not floats, f"float tensors left: {floats[:5]}"


def test_manifest_matches_model(int8_model: Path) -> None:
    manifest = load_manifest(int8_model)
    assert manifest.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert (manifest.input.height, manifest.input.width, manifest.input.channels) == (48, 48, 1)
    assert manifest.extra["quantization"] == "int8"


def test_int8_agrees_with_float_on_real_faces(tiny_run: Path, int8_model: Path, fer_small: Path) -> None:
    faces = load(fer_small).split("PublicTest")
    float_scores = predict_keras(keras.models.load_model(tiny_run / "best.keras"), faces.images)
    int8_scores = predict(int8_model, faces.images)
    assert agreement(float_scores, int8_scores) >= 0.9


def test_quantize_command_records_metrics(tiny_run: Path, fer_small: Path, tmp_path: Path) -> None:
    out, comparison = quantize(QuantizeOptions(run_dir=tiny_run, data=fer_small, out=tmp_path / "m.tflite",
                                               calibration_faces=300))
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert set(manifest["metrics"]) == {"PublicTest", "PrivateTest"}
    assert manifest["metrics"]["PrivateTest"]["faces"] == 200
    assert comparison["PublicTest"]["float_macro_f1"] > 0.1  # not one class for every face: agreement means something
    assert comparison["PublicTest"]["identical_predictions"] >= 0.9
    assert manifest["float_vs_int8"] == comparison


def test_flip_average_scores_a_face_and_its_mirror_alike(tiny_run: Path, int8_model: Path, fer_small: Path,
                                                         tmp_path: Path) -> None:
    out, comparison = quantize(QuantizeOptions(run_dir=tiny_run, data=fer_small, out=tmp_path / "flip.tflite",
                                               calibration_faces=100, flip_average=True))
    assert "flip_average" in load_manifest(out).architecture
    assert comparison["PublicTest"]["identical_predictions"] >= 0.9
    faces = load(fer_small).split("PrivateTest").images
    mirrored = np.ascontiguousarray(faces[:, :, ::-1])
    plain_gap = np.abs(predict(int8_model, faces) - predict(int8_model, mirrored)).mean()
    flip_gap = np.abs(predict(out, faces) - predict(out, mirrored)).mean()
    assert flip_gap < plain_gap / 3, (flip_gap, plain_gap)  # only int8 rounding differs between the two branches


def test_center_crop_scores_the_closer_framing(tiny_run: Path, fer_small: Path, tmp_path: Path) -> None:
    """--center-crop 44: the model scores the central 44×44 pixels scaled up to 48×48, as cv2 would make them."""
    import cv2

    from trainer.models import load_float32, with_view

    faces = load(fer_small).split("PrivateTest").images[:64]
    model = load_float32(tiny_run / "best.keras")
    closer = np.stack([cv2.resize(face[2:46, 2:46], (48, 48), interpolation=cv2.INTER_LINEAR) for face in faces])
    np.testing.assert_allclose(predict_keras(with_view(model, crop=44), faces), predict_keras(model, closer),
                               atol=0.02)
    assert not np.allclose(predict_keras(model, faces), predict_keras(model, closer), atol=0.02)
    out, comparison = quantize(QuantizeOptions(run_dir=tiny_run, data=fer_small, out=tmp_path / "crop.tflite",
                                               calibration_faces=100, flip_average=True, center_crop=44))
    assert "crop44_flip_average" in load_manifest(out).architecture
    assert comparison["PublicTest"]["identical_predictions"] >= 0.9
    with pytest.raises(ValueError, match="expected 24-48 pixels, got 50"):
        with_view(model, crop=50)


def test_blur_scores_the_softened_face(tiny_run: Path, fer_small: Path, tmp_path: Path) -> None:
    """--blur 0.7: the model scores the face blurred as cv2.GaussianBlur would blur it, and the view exports to int8."""
    import cv2

    from trainer.models import load_float32, with_view

    faces = load(fer_small).split("PrivateTest").images[:64]
    model = load_float32(tiny_run / "best.keras")
    softened = np.stack([cv2.GaussianBlur(face.astype(np.float32), (0, 0), 0.7, borderType=cv2.BORDER_REFLECT)
                         for face in faces])
    np.testing.assert_allclose(predict_keras(with_view(model, blur=0.7), faces), predict_keras(model, softened),
                               atol=5e-3)
    assert not np.allclose(predict_keras(model, faces), predict_keras(model, softened), atol=5e-3)
    assert with_view(model, blur=0.0) is model
    out, comparison = quantize(QuantizeOptions(run_dir=tiny_run, data=fer_small, out=tmp_path / "blur.tflite",
                                               calibration_faces=100, flip_average=True, center_crop=46, blur=0.7))
    assert "blurred_crop46_flip_average" in load_manifest(out).architecture
    assert comparison["PublicTest"]["identical_predictions"] >= 0.9
    with pytest.raises(ValueError, match="expected 0-2 pixels, got 3"):
        with_view(model, blur=3.0)


def test_checkpoint_option_exports_that_checkpoint(tiny_run: Path, fer_small: Path, tmp_path: Path) -> None:
    """--checkpoint exports the given .keras instead of best.keras: here an untrained net of the same arch."""
    from trainer.models import ModelOptions, build, load_float32

    other = tmp_path / "untrained.keras"
    build("cnn", ModelOptions(width=0.25)).save(other)
    public = load(fer_small).split("PublicTest")

    def accuracy(path: Path) -> float:
        return round(float(np.mean(predict_keras(load_float32(path), public.images).argmax(1) == public.labels)), 4)

    assert accuracy(other) != accuracy(tiny_run / "best.keras")
    _, comparison = quantize(QuantizeOptions(run_dir=tiny_run, data=fer_small, out=tmp_path / "other.tflite",
                                             calibration_faces=50, checkpoint=other))
    assert comparison["PublicTest"]["float_accuracy"] == accuracy(other)
