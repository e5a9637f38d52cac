"""Distillation from our own checkpoints, and starting a run from one (`fit --teacher`, `--init-from`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.errors import UserError
from trainer import distill
from trainer.data import load
from trainer.evaluate import predict_keras
from trainer.fit import FitOptions, fit
from trainer.models import load_float32, with_flip_average, with_view
from trainer.quantize import export_int8


def test_softening_keeps_the_ranking_and_spreads_the_mass() -> None:
    scores = np.array([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]], dtype=np.float32)
    soft = distill.soften(scores, 2.0)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.argsort(soft, axis=1), np.argsort(scores, axis=1))
    assert (soft.max(axis=1) < scores.max(axis=1)).all()
    np.testing.assert_allclose(distill.soften(scores, 1.0), scores, rtol=1e-5)


def test_teacher_scores_are_the_flip_averaged_checkpoint(tiny_run: Path, fer_small: Path) -> None:
    faces = load(fer_small).split("Training").take(64).images
    best = tiny_run / "best.keras"
    scores = distill.teacher_scores((best, best), faces, temperature=1.0)
    expected = predict_keras(with_flip_average(load_float32(best)), faces)
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_teacher_crop_scores_the_central_pixels(tiny_run: Path, fer_small: Path) -> None:
    faces = load(fer_small).split("Training").take(64).images
    best = tiny_run / "best.keras"
    scores = distill.teacher_scores((best,), faces, temperature=1.0, crop=40)
    expected = predict_keras(with_flip_average(with_view(load_float32(best), crop=40)), faces)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    whole = distill.teacher_scores((best,), faces, temperature=1.0)
    assert np.abs(scores - whole).max() > 1e-3


def test_distilled_targets_blend_labels_and_teacher(fer_small: Path) -> None:
    split = load(fer_small).split("Training").take(16)
    uniform = np.full(split.targets.shape, 1 / 7, dtype=np.float32)
    blended = distill.distilled(split, uniform, 0.25)
    np.testing.assert_allclose(blended.targets, 0.75 * split.targets + 0.25 / 7, rtol=1e-6)
    with pytest.raises(UserError, match="--teacher-weight: expected 0-1"):
        distill.distilled(split, uniform, 1.5)


def test_online_targets_blend_the_teachers_scores_on_the_batch(tiny_run: Path, fer_small: Path) -> None:
    split = load(fer_small).split("Training").take(32)
    best = tiny_run / "best.keras"
    blend = distill.online_targets((best, best), temperature=2.0, crop=44, weight=0.3)
    online = blend(split.images[..., None].astype(np.float32), split.targets).numpy()
    offline = distill.distilled(split, distill.teacher_scores((best,), split.images, 2.0, crop=44), 0.3).targets
    np.testing.assert_allclose(online, offline, atol=1e-4)
    with pytest.raises(UserError, match="--teacher-weight: expected 0-1"):
        distill.online_targets((best,), temperature=2.0, crop=48, weight=-0.1)


def test_online_teachers_compute_in_the_students_precision(tiny_run: Path, fer_small: Path) -> None:
    """bfloat16 teachers (half the cost on CPUs with AMX) give targets within bfloat16 rounding of float32 ones."""
    from trainer.models import load_computing_in

    split = load(fer_small).split("Training").take(32)
    best = tiny_run / "best.keras"
    assert load_computing_in(best, "mixed_bfloat16").get_layer("stage0_conv0").compute_dtype == "bfloat16"
    images = split.images[..., None].astype(np.float32)
    full = distill.online_targets((best,), 2.0, 48, 1.0)(images, split.targets).numpy()
    half = distill.online_targets((best,), 2.0, 48, 1.0, "mixed_bfloat16")(images, split.targets).numpy()
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, full, atol=0.03)


def test_online_distillation_trains_and_records_the_mode(tiny_run: Path, fer_small: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "online"
    fit(FitOptions(data=fer_small, run_dir=run_dir, width=0.25, epochs=1, batch_size=32, augment="strong",
                   mix="mixup", teachers=(tiny_run / "best.keras",), distill_mode="online"))
    assert (run_dir / "best.keras").is_file()
    assert json.loads((run_dir / "run.json").read_text())["distill_mode"] == "online"


def test_missing_teacher_is_named(fer_small: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.keras: teacher not found"):
        fit(FitOptions(data=fer_small, run_dir=tmp_path / "r", width=0.25, epochs=1,
                       teachers=(tmp_path / "nope.keras",)))


def test_init_from_starts_from_the_checkpoint_weights(tiny_run: Path, fer_small: Path, tmp_path: Path) -> None:
    """A near-zero learning rate keeps the loaded kernels: the run's checkpoint still holds the starting ones."""
    run_dir = tmp_path / "warm"
    fit(FitOptions(data=fer_small, run_dir=run_dir, arch="cnn", width=0.25, epochs=1, batch_size=32,
                   learning_rate=1e-7, warmup_epochs=0, augment="none", init_from=tiny_run / "best.keras",
                   teachers=(tiny_run / "best.keras",), mix="cutmix"))
    start, after = load_float32(tiny_run / "best.keras"), load_float32(run_dir / "best.keras")
    for layer in (layer for layer in start.layers if layer.name.endswith("conv0")):
        np.testing.assert_allclose(after.get_layer(layer.name).kernel.numpy(), layer.kernel.numpy(), atol=1e-4)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["init_from"].endswith("best.keras") and run["mix"] == "cutmix" and len(run["teachers"]) == 1
    calibration = load(fer_small).split("Training").take(50).images
    manifest = export_int8(after, calibration, tmp_path / "warm.tflite", run)
    assert "started from best.keras, distilled from 1 own checkpoint(s) at weight 0.5" in manifest.trained_on


def test_init_from_another_width_is_refused(tiny_run: Path, fer_small: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="do not fit --arch cnn at this --width"):
        fit(FitOptions(data=fer_small, run_dir=tmp_path / "r", arch="cnn", width=0.5, epochs=1,
                       init_from=tiny_run / "best.keras"))
