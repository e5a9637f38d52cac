"""`fer-trainer evaluate` on an int8 model matches an independent computation from the manifest alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from trainer.data import load
from trainer.evaluate import score


def manifest_contract_predictions(model: Path, images: np.ndarray) -> np.ndarray:
    """pixel × scale + offset, the model's input quantization, argmax over labels; one face per call."""
    manifest = json.loads(model.with_suffix(".json").read_text())
    interpreter = tf.lite.Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = source["quantization"]
    predictions = []
    for image in images:
        value = image.astype(np.float32) * manifest["input"]["scale"] + manifest["input"]["offset"]
        quantized = np.clip(np.round(value / scale + zero_point), -128, 127).astype(np.int8)
        interpreter.set_tensor(source["index"], quantized[None, :, :, None])
        interpreter.invoke()
        predictions.append(int(interpreter.get_tensor(sink["index"])[0].argmax()))
    return np.array(predictions)


def test_evaluate_tflite_matches_independent_computation(int8_model: Path, fer_small: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "evaluate", str(int8_model), "--data", str(fer_small),
         "--split", "PrivateTest", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / f"{int8_model.stem}_PrivateTest.json").read_text())
    assert (tmp_path / f"{int8_model.stem}_PrivateTest_confusion.png").stat().st_size > 0

    faces = load(fer_small).split("PrivateTest")
    predictions = manifest_contract_predictions(int8_model, faces.images)
    expected = score("independent", "PrivateTest", faces.labels, predictions)
    assert report["faces"] == 200
    assert report["accuracy"] == expected.accuracy
    assert report["confusion"] == expected.confusion
    assert set(report["per_class"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}


def test_evaluate_scores_a_checkpoint_with_the_export_views(tiny_run: Path, fer_small: Path, tmp_path: Path) -> None:
    """`--flip-average --center-crop 44` on a .keras checkpoint: the float figure of what `quantize` would export,
    for choosing views on PublicTest without scoring PrivateTest."""
    from trainer.evaluate import predict_keras
    from trainer.models import load_float32, with_flip_average, with_view

    best = tiny_run / "best.keras"
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "evaluate", str(best), "--data", str(fer_small), "--flip-average",
         "--center-crop", "44", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "best_crop44_flip_PublicTest.json").read_text())
    faces = load(fer_small).split("PublicTest")
    views = with_flip_average(with_view(load_float32(best), crop=44))
    expected = score("views", "PublicTest", faces.labels, predict_keras(views, faces.images).argmax(axis=1))
    assert report["confusion"] == expected.confusion
    plain = score("plain", "PublicTest", faces.labels, predict_keras(load_float32(best), faces.images).argmax(axis=1))
    assert plain.confusion != expected.confusion


def test_views_of_an_exported_model_are_refused(int8_model: Path, fer_small: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "evaluate", str(int8_model), "--data", str(fer_small), "--flip-average"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert f"fer-trainer: {int8_model}: --flip-average, --center-crop and --blur apply to .keras" in result.stderr
    assert "Traceback" not in result.stderr


def test_score_per_class_figures() -> None:
    truth = np.array([0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0])
    report = score("m", "s", truth, predicted, labels=("a", "b", "c"))
    assert report.accuracy == 3 / 5
    assert report.per_class["a"].precision == 0.5 and report.per_class["a"].recall == 0.5
    assert report.per_class["b"].precision == 2 / 3 and report.per_class["b"].recall == 1.0
    assert report.per_class["c"].f1 == 0.0
    assert report.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
