"""Full-integer int8 conversion calibrated on real Training faces, the manifest, and the float-vs-int8 report."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge.errors import UserError
from edge.manifest import FER2013_LABELS, InputSpec, Manifest, manifest_path, sha256_of
from trainer import data as fer_data
from trainer.evaluate import Report, predict, predict_keras, score


@dataclass(frozen=True, slots=True)
class QuantizeOptions:
    run_dir: Path
    data: Path
    out: Path | None = None  # default: <run_dir>/fer_<arch>_int8.tflite
    checkpoint: Path | None = None  # default: <run_dir>/best.keras (e.g. <run_dir>/last.keras instead)
    calibration_faces: int = 300
    flip_average: bool = False  # average the face's and its mirror image's scores inside the model
    center_crop: int = 48  # score the central N×N pixels scaled back up to 48×48 (48: the whole crop)
    blur: float = 0.0  # then soften the view with a Gaussian of this many pixels (0: none)
    seed: int = 42


def convert_int8(model, calibration: np.ndarray) -> bytes:
    """Convert a Keras model taking raw 0-255 pixels into a full-integer model with int8 input and output."""
    import tensorflow as tf

    def representative_dataset():
        for image in calibration:
            yield [image[None, ..., None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises assorted types for ops it cannot quantize
        raise UserError(f"int8 conversion failed: {str(exc).splitlines()[0]}") from None


def float_tensors(tflite: bytes) -> list[str]:
    """Names of float tensors left in a converted model: empty for a full-integer model."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=tflite)
    return [t["name"] for t in interpreter.get_tensor_details() if t["dtype"] in (np.float32, np.float16)]


def agreement(float_scores: np.ndarray, int8_scores: np.ndarray) -> float:
    """Share of faces on which both models predict the same class."""
    return float(np.mean(float_scores.argmax(axis=1) == int8_scores.argmax(axis=1)))


def export_int8(model, calibration: np.ndarray, out: Path, run: dict) -> Manifest:
    """Write the full-integer model to `out` and its manifest beside it; refuse models with float tensors left."""
    tflite = convert_int8(model, calibration)
    leftovers = float_tensors(tflite)
    if leftovers:
        raise UserError(f"int8 conversion left {len(leftovers)} float tensors, e.g. {', '.join(leftovers[:3])}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(tflite)
    manifest = Manifest(
        name=out.stem, labels=FER2013_LABELS, input=InputSpec(scale=1.0, offset=0.0), sha256=sha256_of(out),
        architecture=f"{run['arch']} ({model.name}, width {run['width']}, {model.count_params():,} parameters)",
        trained_on=_trained_on(run),
        extra={"quantization": "int8", "calibration": f"{len(calibration)} Training faces",
               "size_bytes": out.stat().st_size},
    )
    manifest_path(out).write_text(manifest.to_json())
    return manifest


def _trained_on(run: dict) -> str:
    text = f"FER-2013 Training, labels {run['labels']}, {run['epochs']} epochs, seed {run['seed']}"
    if run.get("init_from"):
        text += f", started from {Path(run['init_from']).name}"
    if run.get("teachers"):
        text += f", distilled from {len(run['teachers'])} own checkpoint(s) at weight {run['teacher_weight']}"
    return text


def quantize(options: QuantizeOptions) -> tuple[Path, dict]:
    """Export the run's best (or chosen) checkpoint as int8 and record int8 metrics and float-vs-int8 agreement."""
    from trainer.models import load_float32, with_views

    checkpoint = options.checkpoint or options.run_dir / "best.keras"
    run_json = options.run_dir / "run.json"
    for path in (checkpoint, run_json):
        if not path.is_file():
            raise UserError(f"{path}: not found; expected a checkpoint and run.json from `fer-trainer fit`")
    run = json.loads(run_json.read_text())
    model = with_views(load_float32(checkpoint), center_crop=options.center_crop, blur=options.blur,
                       flip_average=options.flip_average)
    dataset = fer_data.load(options.data)
    calibration = dataset.split("Training").take(options.calibration_faces, options.seed).images
    out = options.out or options.run_dir / f"fer_{run['arch']}_int8.tflite"
    manifest = export_int8(model, calibration, out, run)

    metrics, comparison = {}, {}
    for split_name in ("PublicTest", "PrivateTest"):
        split = dataset.split(split_name)
        float_scores, int8_scores = predict_keras(model, split.images), predict(out, split.images)
        float_report = score(str(checkpoint), split_name, split.labels, float_scores.argmax(axis=1))
        int8_report = score(str(out), split_name, split.labels, int8_scores.argmax(axis=1))
        metrics[split_name] = int8_report.summary()
        comparison[split_name] = _comparison(float_report, int8_report, agreement(float_scores, int8_scores))
    final = replace(manifest, metrics=metrics, extra=manifest.extra | {"float_vs_int8": comparison})
    manifest_path(out).write_text(final.to_json())
    return out, comparison


def _comparison(float_report: Report, int8_report: Report, same: float) -> dict[str, float]:
    return {"float_accuracy": round(float_report.accuracy, 4), "int8_accuracy": round(int8_report.accuracy, 4),
            "float_macro_f1": round(float_report.macro_f1, 4), "int8_macro_f1": round(int8_report.macro_f1, 4),
            "identical_predictions": round(same, 4)}
