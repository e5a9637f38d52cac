"""Face detection behind one small interface: BlazeFace (MediaPipe Tasks) or an OpenCV Haar cascade.

Every detector runs on a copy of the frame downscaled to at most `max_width` pixels wide and maps its
boxes back to full-frame pixels, so speed is set by `max_width`, not by the camera's resolution.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from edge.errors import UserError
from edge.events import Box, Face

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
BLAZEFACE_MODEL = PACKAGE_ROOT / "models" / "detectors" / "face_detection_short_range.tflite"
HAAR_CASCADE = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"


Rect = tuple[float, float, float, float, float]  # x, y, w, h, score in the detector's pixels


class FaceDetector(Protocol):
    def detect(self, image_bgr: np.ndarray) -> tuple[Face, ...]: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DetectorOptions:
    """Shared by every backend. `model` is the backend's file (a .tflite or a cascade XML).

    `min_face_size` and the boxes are in full-frame pixels; `max_width` 0 never downscales.
    `tiles` (BlazeFace only, Haar ignores it): 1 runs once on the whole frame; n > 1 also runs on an
    n×n grid of overlapping tiles, which finds faces too small for BlazeFace's 128×128 input at n² + 1
    times the cost (measured on the test photos: recall 6/18 → 15/18 with tiles = 2).
    """

    model: Path
    score_threshold: float = 0.5
    min_face_size: int = 24
    max_width: int = 640
    tiles: int = 1

    def __post_init__(self) -> None:
        checks = [
            ("score_threshold", 0.0 <= self.score_threshold <= 1.0, "0.0-1.0"),
            ("min_face_size", 1 <= self.min_face_size <= 4096, "1-4096 pixels"),
            ("max_width", self.max_width == 0 or 64 <= self.max_width <= 8192, "0 (off) or 64-8192 pixels"),
            ("tiles", 1 <= self.tiles <= 4, "1-4"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"detector.{name}: expected {allowed}, got {getattr(self, name)!r}")


def as_bgr(image: np.ndarray) -> np.ndarray | None:
    """A 3-channel uint8 BGR view of a gray, BGR or BGRA frame; None for anything undetectable."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
        return None
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return image[:, :, :3]
    return None


def downscale(image: np.ndarray, max_width: int) -> tuple[np.ndarray, float]:
    """The image at most `max_width` wide and the factor applied (1.0 when it is already narrower)."""
    width = image.shape[1]
    if not max_width or width <= max_width:
        return image, 1.0
    factor = max_width / width
    size = (max_width, max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


def to_faces(rects: list[Rect], factor: float,
             options: DetectorOptions, width: int, height: int) -> tuple[Face, ...]:
    """The one place where backend rectangles (x, y, w, h, score) in detector pixels become `Face`s."""
    faces = []
    for x, y, w, h, score in rects:
        box = Box(round(x / factor), round(y / factor), round(w / factor), round(h / factor))
        box = box.clip(width, height)
        if score >= options.score_threshold and min(box.w, box.h) >= options.min_face_size:
            faces.append(Face(box=box, score=float(score)))
    return tuple(sorted(faces, key=lambda f: -f.score))


def suppress(rects: list[Rect], iou: float = 0.3) -> list[Rect]:
    """Greedy non-maximum suppression: keep the best-scoring of every group overlapping by `iou` or more."""
    kept: list[tuple[Rect, Box]] = []
    for rect in sorted(rects, key=lambda r: -r[4]):
        box = Box(*(round(v) for v in rect[:4]))
        if all(box.iou(other) < iou for _, other in kept):
            kept.append((rect, box))
    return [rect for rect, _ in kept]


def tile_grid(width: int, height: int, n: int, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """n×n tiles (x, y, w, h), n ≥ 2, covering the frame, grown by `overlap` so faces on a seam fit."""
    tw, th = min(width, round(width / n * (1 + overlap))), min(height, round(height / n * (1 + overlap)))
    xs = [round(i * (width - tw) / (n - 1)) for i in range(n)]
    ys = [round(i * (height - th) / (n - 1)) for i in range(n)]
    return [(x, y, tw, th) for y in ys for x in xs]


def crop(image: np.ndarray, box: Box, margin: float = 0.0) -> np.ndarray | None:
    """A copy of `box` grown by `margin` and clipped to the frame; None when nothing of it is inside."""
    region = box.expand(margin).clip(image.shape[1], image.shape[0])
    if region.area == 0:
        return None
    return image[region.y:region.y + region.h, region.x:region.x + region.w].copy()


def _mediapipe_tasks() -> tuple[Any, Any, Any, Any]:
    """MediaPipe Tasks without TensorFlow: mediapipe imports it only for its API docs when installed (a dev
    venv), which costs seconds of start-up and hundreds of MB of RSS; a None entry makes that import fail."""
    blocked = "tensorflow" not in sys.modules
    if blocked:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import face_detector
        from mediapipe.tasks.python.vision.core.image import Image, ImageFormat
    finally:
        if blocked:
            del sys.modules["tensorflow"]
    return BaseOptions, face_detector, Image, ImageFormat


class BlazeFaceDetector:
    """MediaPipe's BlazeFace short-range model through the Tasks API, IMAGE running mode.

    Not thread-safe: use one instance from one thread.
    """

    Options = DetectorOptions

    def __init__(self, options: DetectorOptions) -> None:
        BaseOptions, face_detector, Image, ImageFormat = _mediapipe_tasks()
        if not options.model.is_file() or options.model.stat().st_size == 0:
            raise UserError(f"{options.model}: BlazeFace model not found (expected a .tflite face detector)")
        task_options = face_detector.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(options.model)),
            min_detection_confidence=options.score_threshold)
        try:
            self._task = face_detector.FaceDetector.create_from_options(task_options)
        except (ValueError, RuntimeError) as exc:
            reason = (str(exc).strip().splitlines() or ["unreadable"])[0]
            raise UserError(f"{options.model}: not a usable BlazeFace model ({reason})") from None
        self._image, self._srgb = Image, ImageFormat.SRGB
        self.options = options

    @classmethod
    def create(cls, options: DetectorOptions | None = None) -> BlazeFaceDetector:
        return cls(options or DetectorOptions(model=BLAZEFACE_MODEL))

    def detect(self, image_bgr: np.ndarray) -> tuple[Face, ...]:
        bgr = as_bgr(image_bgr)
        if bgr is None:
            return ()
        small, factor = downscale(bgr, self.options.max_width)
        rgb = np.ascontiguousarray(small[:, :, ::-1])
        rects = self._run(rgb)
        if self.options.tiles > 1:
            for x, y, w, h in tile_grid(rgb.shape[1], rgb.shape[0], self.options.tiles):
                tile = np.ascontiguousarray(rgb[y:y + h, x:x + w])
                rects += [(rx + x, ry + y, rw, rh, score) for rx, ry, rw, rh, score in self._run(tile)]
            rects = suppress(rects)
        return to_faces(rects, factor, self.options, bgr.shape[1], bgr.shape[0])

    def _run(self, rgb: np.ndarray) -> list[Rect]:
        result = self._task.detect(self._image(self._srgb, rgb))
        return [(d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width,
                 d.bounding_box.height, d.categories[0].score if d.categories else 0.0)
                for d in result.detections]

    def close(self) -> None:
        self._task.close()

    def __enter__(self) -> BlazeFaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HaarDetector:
    """OpenCV's frontal-face Haar cascade on the histogram-equalised gray frame.

    A cascade has no calibrated score. We take `detectMultiScale3`'s level weight (the boosted sum of
    the last stage; larger is more face-like) and report sigmoid(weight - 2) as the score, so that the
    shared default `score_threshold` 0.5 means weight ≥ 2. Measured on the hamilton clip, that keeps
    110 of the 120 Haar boxes that BlazeFace confirms and drops 141 of the 226 it does not; on the
    test photos every true face has weight ≥ 3. It ranks detections; it is not a probability.
    """

    Options = DetectorOptions

    def __init__(self, options: DetectorOptions, scale_factor: float = 1.1, min_neighbors: int = 5) -> None:
        if not options.model.is_file() or options.model.stat().st_size == 0:
            raise UserError(f"{options.model}: Haar cascade missing or empty (expected OpenCV cascade XML)")
        try:
            self._cascade = cv2.CascadeClassifier(str(options.model))
        except (cv2.error, SystemError):
            self._cascade = cv2.CascadeClassifier()
        if self._cascade.empty():
            raise UserError(f"{options.model}: not a valid Haar cascade XML")
        self.options, self._scale_factor, self._min_neighbors = options, scale_factor, min_neighbors

    @classmethod
    def create(cls, options: DetectorOptions | None = None) -> HaarDetector:
        return cls(options or DetectorOptions(model=HAAR_CASCADE))

    def detect(self, image_bgr: np.ndarray) -> tuple[Face, ...]:
        bgr = as_bgr(image_bgr)
        if bgr is None:
            return ()
        small, factor = downscale(bgr, self.options.max_width)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
        min_size = max(1, math.floor(self.options.min_face_size * factor))
        rects, _, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=self._scale_factor, minNeighbors=self._min_neighbors,
            minSize=(min_size, min_size), outputRejectLevels=True)
        found = [(*map(float, rect), 1.0 / (1.0 + math.exp(min(50.0, 2.0 - float(weight)))))
                 for rect, weight in zip(rects, np.ravel(weights), strict=True)]
        return to_faces(found, factor, self.options, bgr.shape[1], bgr.shape[0])

    def close(self) -> None:
        pass

    def __enter__(self) -> HaarDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


DETECTORS: dict[str, type[BlazeFaceDetector] | type[HaarDetector]] = {
    "blazeface": BlazeFaceDetector,
    "haar": HaarDetector,
}
DEFAULT_MODELS: dict[str, Path] = {"blazeface": BLAZEFACE_MODEL, "haar": HAAR_CASCADE}


def create_detector(backend: str, options: DetectorOptions | None = None) -> BlazeFaceDetector | HaarDetector:
    """The detector registered under `backend`; its default model unless `options` names one."""
    if backend not in DETECTORS:
        raise ValueError(f"detector.backend: expected one of {sorted(DETECTORS)}, got {backend!r}")
    return DETECTORS[backend].create(options or DetectorOptions(model=DEFAULT_MODELS[backend]))
