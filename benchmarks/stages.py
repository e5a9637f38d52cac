"""Per-stage costs on the hamilton clip, in one process: where a frame's time goes, before and after each change.

    python benchmarks/stages.py [--out FILE.json]

Each figure is milliseconds per frame (wall clock, best of --repeats passes over the clip's frames, decoded
once beforehand), so they compare with each other within one run; `fer-edge bench` gives the end-to-end
figures. `before` rows reproduce what the code did before issue 6 (commit 63187f7):
- BGR→RGB for BlazeFace by a reversed-channel copy, against cv2.cvtColor;
- BlazeFace through MediaPipe Tasks, against the same model on LiteRT (edge/blazeface.py);
- Haar: histogram-equalised gray, detectMultiScale3(outputRejectLevels) at 640 px with 5 neighbours, against
  plain detectMultiScale2 at 320 px with 2 neighbours; and the `fer` library's own call, for reference;
- the emotion model with 2 interpreter threads against 1, one face per call.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench import best_ms, emit, machine  # noqa: E402
from edge.classify import ClassifierOptions, EmotionClassifier  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.detect import HAAR_CASCADE, create_detector, crop  # noqa: E402

SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args()
    capture, frames = cv2.VideoCapture(str(SHARED / "media" / "short_hamilton_clip.mp4")), []
    started = time.perf_counter()
    while (read := capture.read())[0]:
        frames.append(read[1])
    decode_ms = round((time.perf_counter() - started) / len(frames) * 1000, 3)
    rows: dict[str, Any] = {"decode (cv2.VideoCapture.read, 640x360 H.264)": decode_ms}

    rows["bgr->rgb before: reversed-channel copy"] = best_ms(
        frames, lambda f: np.ascontiguousarray(f[:, :, ::-1]), args.repeats)
    rows["bgr->rgb after: cv2.cvtColor"] = best_ms(
        frames, lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2RGB), args.repeats)

    for backend in ("blazeface-tasks", "blazeface"):
        with create_detector(backend) as detector:
            rows[f"detect {backend}"] = best_ms(frames, detector.detect, args.repeats)
    with create_detector("haar") as detector:
        rows["detect haar after: 320 px, detectMultiScale2, 2 neighbours, score >= 0.5"] = best_ms(
            frames, detector.detect, args.repeats)
    cascade = cv2.CascadeClassifier(str(HAAR_CASCADE))

    def haar_before(frame: np.ndarray) -> object:
        gray = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        return cascade.detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24),
                                         outputRejectLevels=True)

    def haar_fer(frame: np.ndarray) -> object:
        return cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), scaleFactor=1.1, minNeighbors=5,
                                        flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50))

    rows["detect haar before: 640 px, equalised, detectMultiScale3, 5 neighbours"] = best_ms(
        frames, haar_before, 1)
    rows["detect haar as the fer library calls it: 640 px, 5 neighbours, min 50 px"] = best_ms(
        frames, haar_fer, args.repeats)

    model = load_config(None).classifier.model
    with create_detector("blazeface") as detector:
        crops = [[c for face in detector.detect(f)[:1] if (c := crop(f, face.box, 0.1)) is not None] for f in frames]
    crops = [c for c in crops if c]
    for threads in (2, 1):
        with EmotionClassifier.create(ClassifierOptions(model=model, threads=threads)) as classifier:
            batches = [classifier.prepare(c) for c in crops]
            rows[f"classify one face, {threads} interpreter threads"] = best_ms(
                batches, classifier.infer, args.repeats)
    with EmotionClassifier.create(ClassifierOptions(model=model)) as classifier:
        rows["preprocess one face (crop to int8 input)"] = best_ms(crops, classifier.prepare, args.repeats)
    report = {"machine": machine(), "frames": len(frames), "ms_per_frame": rows}
    emit(report, args.out)


if __name__ == "__main__":
    main()
