"""Detection quality at the settings `fer-edge bench` uses: recall and precision on the annotated photos.

    python benchmarks/detection_quality.py [--config config.toml] [--out FILE.json]

For each detector backend at the config's detector settings (`bench_settings`), and at the variants in
`VARIANTS` (BlazeFace with 2x2 tiles, Haar at the full `detect_width`):
- photos: ../shared/media/faces, training.xml boxes; a detection counts as found when it overlaps an
  unmatched annotation by IoU >= 0.3 (greedy, best score first; the annotations are tight brow-to-chin
  squares, the detectors' boxes are wider, see tests/edge/test_detect.py), and also at IoU >= 0.5;
- clip: the share of hamilton frames with at least one face, and the faces per frame (it has no
  annotations; most frames show one face, some in profile).
Prints the JSON and writes it to `--out` when given. Detection time is not measured here: see `bench`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench import emit  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.detect import DEFAULT_MODELS, DetectorOptions, FaceDetector, create_detector  # noqa: E402
from edge.events import Box  # noqa: E402

SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared"))
# (backend, changes to the bench settings); {} is what `bench` runs.
VARIANTS: list[tuple[str, dict[str, int]]] = [
    ("blazeface", {}), ("blazeface", {"tiles": 2}), ("blazeface-tasks", {}), ("blazeface-tasks", {"tiles": 2}),
    ("haar", {}), ("haar", {"haar_width": 0})]


def ground_truth(folder: Path) -> dict[Path, list[Box]]:
    images = ET.parse(folder / "training.xml").getroot().iter("image")
    return {folder / image.get("file", ""): [
        Box(int(b.get("left", 0)), int(b.get("top", 0)), int(b.get("width", 0)), int(b.get("height", 0)))
        for b in image.iter("box")] for image in images}


def photo_scores(detector: FaceDetector, truth: dict[Path, list[Box]], iou: float) -> dict[str, Any]:
    found = detections = annotated = 0
    for path, boxes in truth.items():
        faces = detector.detect(cv2.imread(str(path)))
        unmatched = list(boxes)
        for face in faces:  # best score first
            best = max(unmatched, key=face.box.iou, default=None)
            if best is not None and face.box.iou(best) >= iou:
                unmatched.remove(best)
                found += 1
        detections += len(faces)
        annotated += len(boxes)
    return {"iou": iou, "found": found, "annotated": annotated, "detections": detections,
            "recall": round(found / annotated, 3), "precision": round(found / max(detections, 1), 3)}


def clip_coverage(detector: FaceDetector, video: Path) -> dict[str, Any]:
    capture, frames, with_face, faces = cv2.VideoCapture(str(video)), 0, 0, 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        found = detector.detect(image)
        frames, with_face, faces = frames + 1, with_face + bool(found), faces + len(found)
    capture.release()
    return {"frames": frames, "frames_with_face": with_face, "share": round(with_face / max(frames, 1), 3),
            "faces": faces}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="config file (default: built-in defaults)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args()
    config = load_config(args.config).detector
    truth = ground_truth(SHARED / "media" / "faces")
    rows = []
    for backend, changes in VARIANTS:
        options = replace(DetectorOptions(
            model=DEFAULT_MODELS[backend], score_threshold=config.score_threshold,
            min_face_size=config.min_face_size, max_width=config.detect_width, tiles=config.tiles,
            haar_width=config.haar_width), **changes)
        settings = {"max_width": options.max_width, "min_face_size": options.min_face_size,
                    "score_threshold": options.score_threshold}
        settings |= {"haar_width": options.haar_width} if backend == "haar" else {"tiles": options.tiles}
        with create_detector(backend, options) as detector:
            rows.append({"backend": backend, "bench_settings": not changes, "settings": settings,
                         "photos": [photo_scores(detector, truth, iou) for iou in (0.3, 0.5)],
                         "clip": clip_coverage(detector, SHARED / "media" / "short_hamilton_clip.mp4")})
    report = {"machine": platform.machine(), "cpu_count": os.cpu_count(), "config": str(args.config or "defaults"),
              "detectors": rows}
    emit(report, args.out)


if __name__ == "__main__":
    main()
