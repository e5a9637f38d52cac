"""Face detection behind one small interface: BlazeFace (on LiteRT, or through MediaPipe Tasks) or a Haar cascade.

Every detector runs on a copy of the frame downscaled to at most `max_width` pixels wide (Haar: at most
`haar_width`) and maps its boxes back to full-frame pixels, so speed is set by these widths, not by the
camera's resolution.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from edge import blazeface
from edge.classify import interpreter_class
from edge.errors import UserError
from edge.events import Box, Face
from edge.paths import MODELS

BLAZEFACE_MODEL = MODELS / "detectors" / "face_detection_short_range.tflite"
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
    `haar_width` (Haar only, BlazeFace ignores it): the cascade runs at most this wide, after `max_width`;
    0 runs it at `max_width`. Its cost grows with the pixels it scans: at 320 px it takes about a third of
    the time it takes at 640 px, and its smallest face (its 24 px window) becomes 48 px of a 640 px frame.
    """

    model: Path
    score_threshold: float = 0.5
    min_face_size: int = 24
    max_width: int = 640
    tiles: int = 1
    haar_width: int = 320

    def __post_init__(self) -> None:
        checks = [
            ("score_threshold", 0.0 <= self.score_threshold <= 1.0, "0.0-1.0"),
            ("min_face_size", 1 <= self.min_face_size <= 4096, "1-4096 pixels"),
            ("max_width", self.max_width == 0 or 64 <= self.max_width <= 8192, "0 (off) or 64-8192 pixels"),
            ("tiles", 1 <= self.tiles <= 4, "1-4"),
            ("haar_width", self.haar_width == 0 or 64 <= self.haar_width <= 8192, "0 (max_width) or 64-8192 pixels"),
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


_TO_GRAY = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}


def as_gray(image: np.ndarray) -> np.ndarray | None:
    """A 2-D uint8 gray view or copy of a gray, BGR or BGRA frame; None for anything undetectable."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
        return None
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] in _TO_GRAY:
        return cv2.cvtColor(image, _TO_GRAY[image.shape[2]])
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


def run_tiled(run: Callable[[np.ndarray], list[Rect]], image: np.ndarray, tiles: int) -> list[Rect]:
    """`run` on the whole image and, with tiles > 1, on each overlapping tile; boxes in image pixels."""
    rects = run(image)
    if tiles > 1:
        for x, y, w, h in tile_grid(image.shape[1], image.shape[0], tiles):
            rects += [(rx + x, ry + y, rw, rh, score) for rx, ry, rw, rh, score in run(image[y:y + h, x:x + w])]
        rects = suppress(rects)
    return rects


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
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)  # 0.05 ms; a reversed-channel copy took 0.9 ms
        return to_faces(run_tiled(self._run, rgb, self.options.tiles), factor, self.options,
                        bgr.shape[1], bgr.shape[0])

    def _run(self, rgb: np.ndarray) -> list[Rect]:
        result = self._task.detect(self._image(self._srgb, np.ascontiguousarray(rgb)))  # tiles are views
        return [(d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width,
                 d.bounding_box.height, d.categories[0].score if d.categories else 0.0)
                for d in result.detections]

    def close(self) -> None:
        self._task.close()

    def __enter__(self) -> BlazeFaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlazeFaceLiteRT:
    """The same BlazeFace model on the classifier's runtime (LiteRT → tflite-runtime → tf.lite), with
    MediaPipe's pre- and post-processing redone in `edge.blazeface`. The default backend: measured on the
    hamilton clip it took 1.30 ms per frame where the Tasks API took 1.74 ms (that API hands every call to
    a worker thread and back, and imports matplotlib at start-up). Its boxes overlap the Tasks API's by
    IoU 0.87 (median); both find 6 of the test photos' 18 faces, the Tasks API with one false box more.

    Not thread-safe: use one instance from one thread.
    """

    Options = DetectorOptions

    def __init__(self, options: DetectorOptions, threads: int = 1) -> None:
        model = options.model
        if not model.is_file() or model.stat().st_size == 0:
            raise UserError(f"{model}: BlazeFace model not found (expected a .tflite face detector)")
        _, interpreter = interpreter_class("auto")
        try:
            self._interpreter = interpreter(model_path=str(model), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = (str(exc).strip().splitlines() or ["unreadable"])[0]
            raise UserError(f"{model}: not a usable BlazeFace model ({reason})") from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        shapes = sorted(tuple(int(v) for v in d["shape"]) for d in (*inputs, *outputs))
        if shapes != sorted([(1, blazeface.INPUT_SIZE, blazeface.INPUT_SIZE, 3), (1, 896, 16), (1, 896, 1)]):
            raise UserError(f"{model}: not a usable BlazeFace model (tensor shapes {shapes}, expected the "
                            "short-range model's 1x128x128x3 input and 896 anchors)")
        by_width = {int(d["shape"][-1]): d["index"] for d in outputs}
        self._in, self._boxes, self._logits = inputs[0]["index"], by_width[16], by_width[1]
        size = blazeface.INPUT_SIZE
        self._tensor = np.zeros((1, size, size, 3), np.float32)  # reused for every frame
        self._anchors = blazeface.anchor_centres()
        self.options = options

    @classmethod
    def create(cls, options: DetectorOptions | None = None) -> BlazeFaceLiteRT:
        return cls(options or DetectorOptions(model=BLAZEFACE_MODEL))

    def detect(self, image_bgr: np.ndarray) -> tuple[Face, ...]:
        bgr = as_bgr(image_bgr)
        if bgr is None:
            return ()
        small, factor = downscale(bgr, self.options.max_width)
        return to_faces(run_tiled(self._run, small, self.options.tiles), factor, self.options,
                        bgr.shape[1], bgr.shape[0])

    def _run(self, bgr: np.ndarray) -> list[Rect]:
        """Rectangles in `bgr`'s pixels: letterboxed into the input, decoded, suppressed, mapped back."""
        scale, pad_x, pad_y = blazeface.letterbox(bgr, self._tensor)
        self._interpreter.set_tensor(self._in, self._tensor)
        self._interpreter.invoke()
        boxes, scores = blazeface.decode(
            self._interpreter.get_tensor(self._boxes)[0], self._interpreter.get_tensor(self._logits)[0, :, 0],
            self._anchors, self.options.score_threshold)
        return [(float((x0 - pad_x) / scale), float((y0 - pad_y) / scale), float((x1 - x0) / scale),
                 float((y1 - y0) / scale), score)
                for (x0, y0, x1, y1), score in blazeface.weighted_nms(boxes, scores)]

    def close(self) -> None:
        self._interpreter = None

    def __enter__(self) -> BlazeFaceLiteRT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HaarDetector:
    """OpenCV's frontal-face Haar cascade on the gray frame, plain `detectMultiScale2`.

    Speed is set by the detection width (`haar_width`) and `scale_factor`. We do not equalise the
    histogram: that let many more windows through the early stages (3-4x the time) and added false boxes.

    A cascade has no calibrated score. It merges overlapping raw windows into a box; we keep boxes of
    n >= `min_neighbors` + 1 windows and report n / (n + 6) as the score (it never reaches 1.0). The
    shared default threshold 0.5 thus asks for n >= 6, what OpenCV's and the `fer` library's
    minNeighbors=5 keep; a lower threshold trades precision for recall, down to n = 3 at 0.33.
    Measured at 320 px: the test photos 10/18 faces found, no false box; a face on 30 of 55 sampled
    hamilton frames (the `fer` library's full-resolution cascade: 33) at under half its CPU time.
    """

    Options = DetectorOptions

    def __init__(self, options: DetectorOptions, scale_factor: float = 1.1, min_neighbors: int = 2) -> None:
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
        gray = as_gray(image_bgr)
        if gray is None:
            return ()
        widths = [w for w in (self.options.max_width, self.options.haar_width) if w]
        small, factor = downscale(gray, min(widths, default=0))  # gray first: a third of the pixels to resize
        min_size = max(1, math.floor(self.options.min_face_size * factor))
        rects, neighbours = self._cascade.detectMultiScale2(
            small, scaleFactor=self._scale_factor, minNeighbors=self._min_neighbors, minSize=(min_size, min_size))
        found = [(*map(float, rect), float(n) / (float(n) + 6.0))
                 for rect, n in zip(rects, np.ravel(neighbours), strict=True)]
        return to_faces(found, factor, self.options, gray.shape[1], gray.shape[0])

    def close(self) -> None:
        pass

    def __enter__(self) -> HaarDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


AnyDetector = BlazeFaceLiteRT | BlazeFaceDetector | HaarDetector
DETECTORS: dict[str, type[BlazeFaceLiteRT] | type[BlazeFaceDetector] | type[HaarDetector]] = {
    "blazeface": BlazeFaceLiteRT,
    "blazeface-tasks": BlazeFaceDetector,
    "haar": HaarDetector,
}
DEFAULT_MODELS: dict[str, Path] = {
    "blazeface": BLAZEFACE_MODEL, "blazeface-tasks": BLAZEFACE_MODEL, "haar": HAAR_CASCADE}


def create_detector(backend: str, options: DetectorOptions | None = None) -> AnyDetector:
    """The detector registered under `backend`; its default model unless `options` names one."""
    if backend not in DETECTORS:
        raise ValueError(f"detector.backend: expected one of {sorted(DETECTORS)}, got {backend!r}")
    return DETECTORS[backend].create(options or DetectorOptions(model=DEFAULT_MODELS[backend]))
