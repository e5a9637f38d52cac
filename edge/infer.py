"""The inference stage: one frame in, its classified faces out (detect → crop with margin → classify all at once).

`detect_every` n > 1 runs the detector on every n-th frame only and classifies the faces of the frames in
between at the boxes last detected (a track that stands still for n - 1 frames; the crop margin absorbs
the motion of a face between frames at camera rates). A frame of a different size is always detected.

Odd frames are handled here and reported, never raised: empty or unsupported frames are skipped; gray and
4-channel frames are converted; frames wider than the detector's width are downscaled by the detector.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge.classify import EmotionClassifier
from edge.detect import FaceDetector, as_bgr, crop
from edge.events import Face, Frame, FrameResult, Observation

FrameKind = Literal["bgr", "gray", "bgra", "empty", "unsupported"]


def frame_kind(image: object) -> FrameKind:
    """What arrived: a 3-channel frame, gray (2-D or 1 channel), BGRA, empty, or something undetectable."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        return "empty"
    if image.dtype != np.uint8:
        return "unsupported"
    channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
    return {1: "gray", 3: "bgr", 4: "bgra"}.get(channels, "unsupported")


@dataclass(frozen=True, slots=True)
class Inferred:
    """One frame's result (None: skipped), what kind of frame it was, and the stage timings in seconds."""

    result: FrameResult | None
    kind: FrameKind
    downscaled: bool
    faces_skipped: int  # boxes with no area left after margin and clipping
    detect_s: float = 0.0
    preprocess_s: float = 0.0
    classify_s: float = 0.0
    detected: bool = True  # False: the boxes came from an earlier frame (`detect_every`)


class Inference:
    """Owns a detector and a classifier; use from one thread (neither is thread-safe), then `close()`."""

    def __init__(self, detector: FaceDetector, classifier: EmotionClassifier, margin: float = 0.1,
                 detect_width: int = 640, detect_every: int = 1) -> None:
        if not 0.0 <= margin <= 1.0:
            raise ValueError(f"margin must be 0-1, got {margin!r}")
        if not 1 <= detect_every <= 30:
            raise ValueError(f"detect_every must be 1-30, got {detect_every!r}")
        self.detector, self.classifier, self.margin, self.detect_width = detector, classifier, margin, detect_width
        self.detect_every = detect_every
        self._carried: tuple[Face, ...] = ()
        self._carried_shape: tuple[int, ...] = ()
        self._due = 0  # frames until the detector runs again

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def process(self, frame: Frame, stream: bool = True) -> Inferred:
        """`stream` False: `frame` is unrelated to the one before (a photo), so it is always detected."""
        kind = frame_kind(frame.image)
        image = as_bgr(frame.image) if kind not in ("empty", "unsupported") else None
        if image is None:
            return Inferred(None, kind, False, 0)
        clock = time.perf_counter
        start = clock()
        fresh = not stream or self._due <= 0 or image.shape != self._carried_shape
        if fresh:
            self._carried, self._carried_shape = self.detector.detect(image), image.shape
            self._due = self.detect_every
        self._due -= 1
        faces = self._carried
        detected = clock()
        kept, crops = [], []
        for face in faces:
            pixels = crop(image, face.box, self.margin)
            if pixels is not None:
                kept.append(face)
                crops.append(pixels)
        batch = self.classifier.prepare(crops)
        prepared = clock()
        probabilities = self.classifier.infer(batch)
        classified = clock()
        observations = tuple(
            Observation(box=face.box, score=face.score, probabilities=tuple(float(p) for p in row))
            for face, row in zip(kept, probabilities, strict=True))
        result = FrameResult(frame.index, frame.timestamp, frame.captured_at, observations)
        return Inferred(result, kind, 0 < self.detect_width < image.shape[1], len(faces) - len(kept),
                        detected - start, prepared - detected, classified - prepared, fresh)

    def close(self) -> None:
        self.detector.close()
        self.classifier.close()
