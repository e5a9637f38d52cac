"""Typed messages that pass between pipeline threads, and the JSON form of what is published."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

EventType = Literal["start", "change", "end"]


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in pixels: top-left corner, width and height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return max(self.w, 0) * max(self.h, 0)

    def iou(self, other: Box) -> float:
        ix = max(0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def expand(self, margin: float) -> Box:
        """Grow by `margin` × size on every side (0.1 adds 10% of the width left and right)."""
        dx, dy = round(self.w * margin), round(self.h * margin)
        return Box(self.x - dx, self.y - dy, self.w + 2 * dx, self.h + 2 * dy)

    def clip(self, width: int, height: int) -> Box:
        x0, y0 = min(max(self.x, 0), width), min(max(self.y, 0), height)
        x1, y1 = min(max(self.x + self.w, 0), width), min(max(self.y + self.h, 0), height)
        return Box(x0, y0, x1 - x0, y1 - y0)

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame. `timestamp` is wall-clock seconds, `captured_at` is time.perf_counter()."""

    index: int
    timestamp: float
    captured_at: float
    image: np.ndarray


@dataclass(frozen=True, slots=True)
class Face:
    """A detected face in frame pixels with the detector's score."""

    box: Box
    score: float


@dataclass(frozen=True, slots=True)
class Observation:
    """A classified face: its box, detector score and per-label probabilities."""

    box: Box
    score: float
    probabilities: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class FrameResult:
    """Everything inference found in one frame."""

    frame_index: int
    timestamp: float
    captured_at: float
    observations: tuple[Observation, ...]


@dataclass(frozen=True, slots=True)
class EmotionEvent:
    """A change-only event for one tracked face."""

    type: EventType
    track_id: int
    emotion: str
    confidence: float
    probabilities: dict[str, float]
    timestamp: float
    box: Box
    device: str
    frame: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "track_id": self.track_id,
            "emotion": self.emotion,
            "confidence": round(self.confidence, 4),
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "timestamp": round(self.timestamp, 3),
            "box": self.box.as_list(),
            "device": self.device,
            "frame": self.frame,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class TrackState:
    """The smoothed emotion of one confirmed track."""

    track_id: int
    emotion: str
    confidence: float
    box: Box


@dataclass(frozen=True, slots=True)
class State:
    """What the device sees now: confirmed faces, the dominant emotion among them, and whether frames flow."""

    device: str
    timestamp: float
    faces: tuple[TrackState, ...]
    source: Literal["up", "down"] = "up"

    @property
    def dominant(self) -> str | None:
        return max(self.faces, key=lambda f: f.confidence).emotion if self.faces else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "timestamp": round(self.timestamp, 3),
            "faces": [
                {"track_id": f.track_id, "emotion": f.emotion, "confidence": round(f.confidence, 4),
                 "box": f.box.as_list()}
                for f in self.faces
            ],
            "count": len(self.faces),
            "dominant": self.dominant,
            "source": self.source,
        }
