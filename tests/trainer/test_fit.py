"""`fer-trainer fit` on a small real subset: artifacts, resume, and refusal to overwrite a run."""

from __future__ import annotations

import csv
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.errors import UserError
from trainer import data as fer_data
from trainer.fit import FitOptions, fit, last_from_backup, stream_seed


def test_one_epoch_writes_artifacts(fer_small: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "cnn"
    fit(FitOptions(data=fer_small, run_dir=run_dir, arch="cnn", width=0.25, epochs=1, batch_size=64))
    for name in ("best.keras", "last.keras", "history.csv", "curves.png", "run.json"):
        assert (run_dir / name).stat().st_size > 0, name
    with open(run_dir / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and 0.0 <= float(rows[-1]["val_accuracy"]) <= 1.0


def test_resume_continues_from_backup(tiny_run: Path, fer_small: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "cnn"
    shutil.copytree(tiny_run, run_dir)
    done = len((tiny_run / "history.csv").read_text().splitlines()) - 1
    options = FitOptions(data=fer_small, run_dir=run_dir, arch="cnn", width=0.25, epochs=done + 1, batch_size=64)
    with pytest.raises(UserError, match="pass --resume"):
        fit(options)
    fit(replace(options, resume=True))
    with open(run_dir / "history.csv") as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == list(range(done + 1)), "the resumed run should add exactly one epoch"


def test_averaged_weights_are_the_mean_of_the_epochs_across_a_resume(fer_small: Path, tmp_path: Path) -> None:
    import keras

    run_dir = tmp_path / "swa"
    options = FitOptions(data=fer_small, run_dir=run_dir, arch="cnn", width=0.25, epochs=1, batch_size=64,
                         average_from=1)
    fit(options)
    first = keras.models.load_model(run_dir / "last.keras").get_weights()
    fit(replace(options, epochs=2, resume=True))
    second = keras.models.load_model(run_dir / "last.keras").get_weights()
    averaged = keras.models.load_model(run_dir / "averaged.keras").get_weights()
    assert not np.allclose(first[0], second[0]), "the second epoch should move the weights"
    for mean, a, b in zip(averaged, first, second, strict=True):
        np.testing.assert_allclose(mean, (a + b) / 2, rtol=1e-5, atol=1e-6)
    with open(run_dir / "history.csv") as handle:
        scores = [float(row["averaged_val_accuracy"]) for row in csv.DictReader(handle)]
    assert len(scores) == 2 and all(0.0 <= score <= 1.0 for score in scores)


def test_resumed_run_draws_new_batches(tiny_run: Path, fer_small: Path) -> None:
    options = FitOptions(data=fer_small, run_dir=tiny_run, seed=1)
    train = fer_data.load(fer_small).split("Training")

    def first_batch(seed: int) -> np.ndarray:
        images, _ = next(iter(fer_data.as_tf_dataset(train, 64, train=True, seed=seed, augment="none")))
        return images.numpy()

    fresh, resumed = stream_seed(options), stream_seed(replace(options, resume=True))
    assert np.array_equal(first_batch(fresh), first_batch(fresh))
    assert not np.array_equal(first_batch(fresh), first_batch(resumed)), \
        "a resumed run replays the batches of the run's first epochs"


def test_last_checkpoint_rebuilt_from_backup(tiny_run: Path, fer_small: Path, tmp_path: Path) -> None:
    import keras

    run_dir = tmp_path / "kept"
    run_dir.mkdir()
    for name in ("run.json", "history.csv"):
        shutil.copy(tiny_run / name, run_dir / name)
    shutil.copytree(tiny_run / "backup", run_dir / "backup")
    faces = fer_data.load(fer_small).split("PublicTest").images[:64, ..., None].astype(np.float32)
    rebuilt = keras.models.load_model(last_from_backup(run_dir)).predict(faces, verbose=0)
    original = keras.models.load_model(tiny_run / "last.keras").predict(faces, verbose=0)
    np.testing.assert_array_equal(rebuilt, original)


def test_rebuild_without_backup_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="latest.weights.h5: not found"):
        last_from_backup(tmp_path)


def test_resume_without_backup_is_refused(fer_small: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nothing to resume"):
        fit(FitOptions(data=fer_small, run_dir=tmp_path / "new", resume=True))


def test_sgd_trains_with_nesterov_momentum(fer_small: Path, tmp_path: Path) -> None:
    import keras

    run_dir = tmp_path / "sgd"
    fit(FitOptions(data=fer_small, run_dir=run_dir, arch="cnn", width=0.25, epochs=1, batch_size=64,
                   optimizer="sgd", learning_rate=0.01))
    optimizer = keras.models.load_model(run_dir / "last.keras").optimizer.get_config()
    assert optimizer["name"] == "sgd" and optimizer["nesterov"] and optimizer["momentum"] == 0.9
    assert '"optimizer": "sgd"' in (run_dir / "run.json").read_text()
