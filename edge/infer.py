"""The inference stage: one frame in, its classified faces out (detect → crop with margin → classify all at once).

`detect_every` n > 1 runs the detector on every n-th frame only and classifies the faces of the frames in
between at the boxes last detected (a track that stands still for n - 1 frames; the crop margin absorbs
the motion of a face between frames at camera rates). A frame of a different size is always detected.

`classify_every` n > 1 (adaptive classification, off by default): a face whose box overlaps one of the
previous frame's by IoU >= `STABLE_IOU` keeps that face's probabilities for up to n - 1 frames before it is
classified again; moving and new faces are classified at once.

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
STABLE_IOU = 0.7


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
    faces_reused: int = 0  # faces that kept earlier probabilities (`classify_every`)


class Inference:
    """Owns a detector and a classifier; use from one thread (neither is thread-safe), then `close()`."""

    def __init__(self, detector: FaceDetector, classifier: EmotionClassifier, margin: float = 0.1,
                 detect_width: int = 640, detect_every: int = 1, classify_every: int = 1) -> None:
        if not 0.0 <= margin <= 1.0:
            raise ValueError(f"margin must be 0-1, got {margin!r}")
        if not 1 <= detect_every <= 30:
            raise ValueError(f"detect_every must be 1-30, got {detect_every!r}")
        if not 1 <= classify_every <= 30:
            raise ValueError(f"classify_every must be 1-30, got {classify_every!r}")
        self.detector, self.classifier, self.margin, self.detect_width = detector, classifier, margin, detect_width
        self.detect_every, self.classify_every = detect_every, classify_every
        self._previous: tuple[tuple[Observation, int], ...] = ()  # last frame's faces and their ages
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
        kept, crops, reused = [], [], {}
        for face in faces:
            pixels = crop(image, face.box, self.margin)
            if pixels is None:
                continue
            stable = self._stable(face) if stream else None
            if stable is not None:
                reused[len(kept)] = stable
            else:
                crops.append(pixels)
            kept.append(face)
        batch = self.classifier.prepare(crops)
        prepared = clock()
        fresh_rows = iter(self.classifier.infer(batch))
        classified = clock()
        rows = [reused[i] if i in reused else (tuple(float(p) for p in next(fresh_rows)), 0)
                for i in range(len(kept))]
        observations = tuple(Observation(box=face.box, score=face.score, probabilities=probabilities)
                             for face, (probabilities, _) in zip(kept, rows, strict=True))
        self._previous = tuple((o, age) for o, (_, age) in zip(observations, rows, strict=True))
        result = FrameResult(frame.index, frame.timestamp, frame.captured_at, observations)
        return Inferred(result, kind, 0 < self.detect_width < image.shape[1], len(faces) - len(kept),
                        detected - start, prepared - detected, classified - prepared, fresh, len(reused))

    def _stable(self, face: Face) -> tuple[tuple[float, ...], int] | None:
        """The probabilities and new age to keep for `face`, if a young enough previous face sits where it is."""
        if self.classify_every == 1 or not self._previous:
            return None
        previous, age = max(self._previous, key=lambda item: item[0].box.iou(face.box))
        if previous.box.iou(face.box) < STABLE_IOU or age + 1 >= self.classify_every:
            return None
        return previous.probabilities, age + 1

    def close(self) -> None:
        self.detector.close()
        self.classifier.close()
