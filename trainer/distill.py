"""Distillation targets: a teacher ensemble's softened scores on the Training faces, blended with the labels.

The teachers are this project's own checkpoints. Each scores a face and its mirror image (flip averaging), optionally
of the face's central crop as `quantize --center-crop` does, the ensemble averages them, and the result is computed
once on the un-augmented faces (offline distillation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.errors import UserError
from trainer.data import Split


def teacher_scores(teachers: tuple[Path, ...], images: np.ndarray, temperature: float = 1.0,
                   crop: int = 48) -> np.ndarray:
    """Averaged class probabilities (n, 7) of flip-averaged teachers scoring the central `crop`×`crop` pixels
    (48: the whole face), softened by `temperature`."""
    from trainer.evaluate import predict_keras
    from trainer.models import load_float32, with_center_crop, with_flip_average

    total = None
    for path in teachers:
        if not path.is_file() or path.suffix != ".keras":
            raise UserError(f"{path}: teacher not found (expected a .keras checkpoint)")
        scores = predict_keras(with_flip_average(with_center_crop(load_float32(path), crop)), images)
        total = scores if total is None else total + scores
    return soften(total / len(teachers), temperature)


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
