from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Mosquitto
from tests.fer_subset import write_subset


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A fresh broker per test, so that tests can stop and restart it."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def fer_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain CSV of real FER-2013 rows: 512 Training, 200 PublicTest, 200 PrivateTest."""
    path = tmp_path_factory.mktemp("fer") / "fer2013_small.csv"
    return write_subset(path, {"Training": 512, "PublicTest": 200, "PrivateTest": 200})


@pytest.fixture(scope="session")
def tiny_run(fer_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory from `fer-trainer fit` (narrow cnn, no augmentation) fitted closely to the small real
    subset, so that its outputs are spread over the classes rather than near-uniform ties, which int8 rounding
    would flip at random (seeds 1, 7, 42: 97-98% identical float/int8 predictions on PublicTest)."""
    from trainer.fit import FitOptions, fit

    run_dir = tmp_path_factory.mktemp("run") / "cnn"
    fit(FitOptions(data=fer_small, run_dir=run_dir, arch="cnn", width=0.25, epochs=25, batch_size=32,
                   learning_rate=3e-3, warmup_epochs=0, label_smoothing=0.0, augment="none", seed=1))
    return run_dir


@pytest.fixture(scope="session")
def int8_model(tiny_run: Path, fer_small: Path) -> Path:
    """A small int8 .tflite (int8 in [1, 48, 48, 1], int8 out [1, 7]) with its manifest beside it."""
    import keras

    from trainer.data import load
    from trainer.quantize import export_int8

    calibration = load(fer_small).split("Training").take(100).images
    out = tiny_run / "fer_cnn_int8.tflite"
    export_int8(keras.models.load_model(tiny_run / "best.keras"), calibration, out,
                json.loads((tiny_run / "run.json").read_text()))
    return out


@pytest.fixture(scope="session")
def float_model(tiny_run: Path, int8_model: Path) -> Path:
    """The same network as a float .tflite whose manifest (sha256 correct) wrongly claims int8."""
    import keras
    import tensorflow as tf

    from edge.manifest import sha256_of

    out = tiny_run / "fer_cnn_float.tflite"
    model = keras.models.load_model(tiny_run / "best.keras")
    out.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    manifest = json.loads(int8_model.with_suffix(".json").read_text())
    out.with_suffix(".json").write_text(json.dumps(manifest | {"name": out.stem, "sha256": sha256_of(out)}))
    return out
