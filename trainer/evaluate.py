"""Accuracy, macro-F1, per-class P/R/F1 and a confusion matrix for a Keras or int8 TFLite model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.errors import UserError
from edge.manifest import FER2013_LABELS

BATCH = 256


@dataclass(frozen=True, slots=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class Report:
    model: str
    split: str
    faces: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassScores]
    confusion: list[list[int]]  # rows: true label, columns: predicted label

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def summary(self) -> dict[str, float]:
        return {"faces": self.faces, "accuracy": round(self.accuracy, 4), "macro_f1": round(self.macro_f1, 4)}


def score(model: str, split: str, truth: np.ndarray, predicted: np.ndarray,
          labels: tuple[str, ...] = FER2013_LABELS) -> Report:
    count = len(labels)
    confusion = np.zeros((count, count), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {}
    for index, label in enumerate(labels):
        hits = confusion[index, index]
        predicted_as = confusion[:, index].sum()
        support = confusion[index].sum()
        precision = hits / predicted_as if predicted_as else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = ClassScores(float(precision), float(recall), float(f1), int(support))
    return Report(
        model=model, split=split, faces=int(len(truth)),
        accuracy=float(np.trace(confusion) / max(len(truth), 1)),
        macro_f1=float(np.mean([c.f1 for c in per_class.values()])),
        per_class=per_class, confusion=confusion.tolist(),
    )


def check_view(center_crop: int, blur: float, flags: tuple[str, str] = ("--center-crop", "--blur")) -> None:
    """The test-time views a checkpoint can be scored and exported at; errors name the caller's `flags`."""
    if not 24 <= center_crop <= 48:
        raise UserError(f"{flags[0]}: expected 24-48, got {center_crop}")
    if not 0 <= blur <= 2:
        raise UserError(f"{flags[1]}: expected 0-2 pixels, got {blur:g}")


def predict(model_path: Path, images: np.ndarray, threads: int = 2, flip_average: bool = False,
            center_crop: int = 48, blur: float = 0.0) -> np.ndarray:
    """Class scores (n, labels) for uint8 faces (n, 48, 48). A .tflite runs through the daemon's classifier,
    so it sees exactly the manifest's preprocessing; a .keras checkpoint can score the views `quantize` would
    build into its export (`flip_average`, `center_crop`, `blur`)."""
    if not model_path.is_file():
        raise UserError(f"{model_path}: model file not found")
    if model_path.suffix == ".tflite" and (flip_average or center_crop != 48 or blur):
        raise UserError(f"{model_path}: --flip-average, --center-crop and --blur apply to .keras checkpoints; "
                        "an exported model already holds its views")
    if model_path.suffix == ".tflite":
        from edge.classify import ClassifierOptions, EmotionClassifier

        with EmotionClassifier.create(ClassifierOptions(model=model_path, threads=threads)) as classifier:
            unknown = set(classifier.labels) ^ set(FER2013_LABELS)
            if unknown:
                raise UserError(f"{model_path}: labels {sorted(unknown)} do not match FER-2013's {FER2013_LABELS}")
            scores = np.concatenate([classifier.classify(list(images[i:i + BATCH]))
                                     for i in range(0, len(images), BATCH)])
            return scores[:, [classifier.labels.index(label) for label in FER2013_LABELS]]
    if model_path.suffix == ".keras":
        from trainer.models import load_float32, with_views

        model = with_views(load_float32(model_path), center_crop=center_crop, blur=blur, flip_average=flip_average)
        return predict_keras(model, images)
    raise UserError(f"{model_path}: expected a .keras or .tflite model")


def predict_keras(model, images: np.ndarray) -> np.ndarray:
    return model.predict(images[..., None].astype(np.float32), batch_size=BATCH, verbose=0)


def confusion_png(report: Report, path: Path, labels: tuple[str, ...] = FER2013_LABELS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.array(report.confusion, dtype=float)
    normalised = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(7, 6))
    axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for (row, column), value in np.ndenumerate(confusion):
        colour = "white" if normalised[row, column] > 0.5 else "black"
        axis.text(column, row, f"{int(value)}\n{normalised[row, column]:.0%}", ha="center", va="center",
                  fontsize=8, color=colour)
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{Path(report.model).name} on {report.split}: accuracy {report.accuracy:.2%}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
