"""PublicTest accuracy of the default model through the daemon's own detect → crop path, against the face itself.

    python benchmarks/framing.py [--faces N] [--margins 0,0.05,0.1,0.15,0.2] [--out FILE.json]

Real photos reach the model through a detector box grown by `detector.margin`, not through FER-2013's own
framing. Each PublicTest face is set in a frame three times its size (its edge pixels repeated outward),
scaled up 3×, and run through `Inference.process` of each backend at each margin: the figure is the share of
faces found and the accuracy on them, beside the accuracy of the same faces given to the model directly. The
median detector box, in the face's 48-pixel frame, says how each backend frames a FER-2013 face.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench import emit, machine  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.daemon import build_inference  # noqa: E402
from edge.events import Frame  # noqa: E402
from trainer.data import load  # noqa: E402

DATA = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared")) / "data" / "fer2013.csv.gz"
SIDE, SCALE = 48, 3


def in_context(face: np.ndarray) -> np.ndarray:
    """The 48×48 face in the middle of a frame three times as wide, scaled up: a BGR image a detector can take."""
    frame = cv2.copyMakeBorder(face, SIDE, SIDE, SIDE, SIDE, cv2.BORDER_REPLICATE)
    frame = cv2.resize(frame, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)


def through_detector(backend: str, margin: float, faces: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    inference = build_inference(load_config(None, {"detector.backend": backend, "detector.margin": margin}))
    predicted, boxes = np.full(len(faces), -1), []
    try:
        for i, face in enumerate(faces):
            result = inference.process(Frame(i, 0.0, 0.0, in_context(face)), stream=False).result
            if result and result.observations:
                biggest = max(result.observations, key=lambda o: o.box.area)
                predicted[i] = int(np.argmax(biggest.probabilities))
                x, y, w, h = (value / SCALE for value in biggest.box.as_list())
                boxes.append([x - SIDE, y - SIDE, w, h])  # in the face's own 48-pixel frame
    finally:
        inference.close()
    found = predicted >= 0
    return {"backend": backend, "margin": margin, "found": int(found.sum()),
            "accuracy_on_found": round(float((predicted[found] == labels[found]).mean()), 4),
            "found_mask": found, "box_median_xywh": np.median(boxes, axis=0).round(2).tolist() if boxes else None}


def direct(faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per face, whether the model is right given the 48×48 face itself (no detector)."""
    inference = build_inference(load_config(None, {}))
    try:
        classifier = inference.classifier
        return classifier.infer(classifier.prepare(list(faces))).argmax(axis=1) == labels
    finally:
        inference.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=0, help="a random subset of PublicTest (0: all)")
    parser.add_argument("--margins", default="0,0.05,0.1,0.15,0.2")
    parser.add_argument("--backends", default="blazeface,haar")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    split = load(DATA).split("PublicTest")
    split = split.take(args.faces) if args.faces else split
    right = direct(split.images, split.labels)
    runs = []
    for backend in args.backends.split(","):
        for margin in (float(m) for m in args.margins.split(",")):
            run = through_detector(backend, margin, split.images, split.labels)
            run["direct_accuracy_on_found"] = round(float(right[run.pop("found_mask")].mean()), 4)
            runs.append(run)
    emit({"machine": machine(), "faces": len(split), "direct_accuracy": round(float(right.mean()), 4),
          "scale": SCALE, "runs": runs}, args.out)


if __name__ == "__main__":
    main()
