"""Distillation targets: a teacher ensemble's softened scores on the Training faces, blended with the labels.

The teachers are this project's own checkpoints. Each scores a face and its mirror image (flip averaging), optionally
of the face's central crop as `quantize --center-crop` does, and the ensemble averages them. Offline distillation
scores the un-augmented faces once; online distillation scores each augmented batch as the student sees it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from edge.errors import UserError
from trainer.data import Split

Mode = Literal["offline", "online"]


def teacher_scores(teachers: tuple[Path, ...], images: np.ndarray, temperature: float = 1.0,
                   crop: int = 48) -> np.ndarray:
    """Averaged class probabilities (n, 7) of flip-averaged teachers scoring the central `crop`×`crop` pixels
    (48: the whole face), softened by `temperature`."""
    from trainer.evaluate import predict_keras

    total = sum(predict_keras(model, images) for model in _teacher_models(teachers, crop))
    return soften(total / len(teachers), temperature)


def online_targets(teachers: tuple[Path, ...], temperature: float, crop: int, weight: float,
                   precision: str = "float32") -> Callable:
    """A graph function (images, targets) -> (1 - weight) × targets + weight × the teachers' softened scores on
    those very images, for the tf.data pipeline after augmentation and mixing. The teachers compute in
    `precision`, the student's (mixed_bfloat16 halves their cost on CPUs with AMX)."""
    import tensorflow as tf

    if not 0.0 <= weight <= 1.0:
        raise UserError(f"--teacher-weight: expected 0-1, got {weight}")
    models = _teacher_models(teachers, crop, precision)

    def blend(images, targets):
        scores = tf.add_n([tf.cast(model(images, training=False), tf.float32) for model in models]) / len(models)
        soft = tf.nn.softmax(tf.math.log(tf.clip_by_value(scores, 1e-8, 1.0)) / temperature)
        return (1.0 - weight) * targets + weight * soft

    return blend


def _teacher_models(teachers: tuple[Path, ...], crop: int, precision: str = "float32") -> list:
    from trainer.models import load_computing_in, with_views

    for path in teachers:
        if not path.is_file() or path.suffix != ".keras":
            raise UserError(f"{path}: teacher not found (expected a .keras checkpoint)")
    return [with_views(load_computing_in(path, precision), center_crop=crop, flip_average=True) for path in teachers]


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The same distribution at a higher temperature: p ** (1/T), renormalised."""
    logits = np.log(np.clip(probabilities, 1e-8, 1.0)) / temperature
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def distilled(split: Split, scores: np.ndarray, weight: float) -> Split:
    """The split with targets (1 - weight) × labels + weight × teacher scores."""
    if not 0.0 <= weight <= 1.0:
        raise UserError(f"--teacher-weight: expected 0-1, got {weight}")
    return Split(split.images, ((1.0 - weight) * split.targets + weight * scores).astype(np.float32))
