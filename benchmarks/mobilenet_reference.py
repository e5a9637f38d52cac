"""A yardstick for guessing Raspberry Pi figures: MobileNet v1 (1.0, 224 px, float32) on TFLite here.

    python benchmarks/mobilenet_reference.py [--out FILE.json]     (needs the `train` extra: TensorFlow)

Published figures for this model on a Pi 4 CPU exist (benchmarks/README.md cites one); dividing them by
this machine's time for the same model gives a rough factor by which our per-stage TFLite costs grow on a
Pi. The weights are random: inference time does not depend on them. One interpreter thread and four.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench import emit, machine  # noqa: E402
from edge.classify import interpreter_class  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    model = tf.keras.applications.MobileNet(weights=None, input_shape=(224, 224, 3), alpha=1.0)
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    _, interpreter = interpreter_class("auto")
    times = {}
    with tempfile.NamedTemporaryFile(suffix=".tflite") as file:
        file.write(flatbuffer)
        file.flush()
        for threads in (1, 4):
            it = interpreter(model_path=file.name, num_threads=threads)
            it.allocate_tensors()
            index = it.get_input_details()[0]["index"]
            it.set_tensor(index, np.random.rand(1, 224, 224, 3).astype(np.float32))
            for _ in range(5):
                it.invoke()
            best = float("inf")
            for _ in range(args.runs):
                started = time.perf_counter()
                it.invoke()
                best = min(best, time.perf_counter() - started)
            times[f"{threads}_threads_ms"] = round(best * 1000, 2)
    report = {"machine": machine(), "model": "MobileNet v1 1.0 224 float32, random weights", "best_of": args.runs,
              **times}
    emit(report, args.out)


if __name__ == "__main__":
    main()
