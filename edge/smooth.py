"""Per-track smoothing and hysteresis: tracked faces in, change-only emotion events and state out.

Each track keeps an exponential moving average of its probability vector; its emotion is the label of
the largest smoothed probability. A different emotion becomes current only after it has led the current
one by more than `margin` without a break for `min_dwell_s` seconds, so a one-frame blip never emits `change`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edge.events import Box, EmotionEvent, EventType, State, TrackState
from edge.track import Track, TrackUpdate


@dataclass(frozen=True, slots=True)
class SmootherOptions:
    """`alpha`: weight of the newest frame in the average. `labels`: the model's labels, in output order."""

    labels: tuple[str, ...]
    device: str
    alpha: float = 0.3
    margin: float = 0.1
    min_dwell_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct and non-empty, got {self.labels!r}")
        if not self.device:
            raise ValueError("device must be a non-empty name")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha!r}")
        if not 0 <= self.margin <= 1:
            raise ValueError(f"margin must be 0-1, got {self.margin!r}")
        if not 0 <= self.min_dwell_s <= 60:
            raise ValueError(f"min_dwell_s must be 0-60, got {self.min_dwell_s!r}")


@dataclass(frozen=True, slots=True)
class SmoothResult:
    """Events of one update, the state after it, and whether the faces or their emotions changed."""

    events: tuple[EmotionEvent, ...]
    state: State
    state_changed: bool


@dataclass(frozen=True, slots=True)
class _Mood:
    probabilities: tuple[float, ...]
    current: int
    box: Box
    candidate: int | None = None
    since: float = 0.0


def _argmax(values: tuple[float, ...]) -> int:
    return max(range(len(values)), key=values.__getitem__)


class Smoother:
    def __init__(self, options: SmootherOptions) -> None:
        self.options = options
        self._moods: dict[int, _Mood] = {}
        self._last_key: tuple[tuple[int, int], ...] | None = None

    def update(self, tracks: TrackUpdate, frame: int) -> SmoothResult:
        """Fold one tracker update into the per-track averages; `frame` is the source frame index."""
        events: list[EmotionEvent] = []
        now = tracks.timestamp
        lost = {track.id: track for track in tracks.lost}
        current = {track.id for track in tracks.tracks}
        for track_id in sorted(set(self._moods) - current):
            mood = self._moods.pop(track_id)
            box = lost[track_id].observation.box if track_id in lost else mood.box
            events.append(self._event("end", track_id, mood, now, frame, box))
        for track in tracks.tracks:
            probabilities = self._checked(track)
            mood = self._moods.get(track.id)
            if mood is None:
                mood = _Mood(probabilities, _argmax(probabilities), track.observation.box)
                events.append(self._event("start", track.id, mood, now, frame, mood.box))
            elif track.age == 0:  # matched in this frame; a coasting track keeps its average
                previous = mood.current
                mood = self._step(mood, probabilities, now, track.observation.box)
                if mood.current != previous:
                    events.append(self._event("change", track.id, mood, now, frame, mood.box))
            self._moods[track.id] = mood
        faces = tuple(
            TrackState(track_id, self.options.labels[mood.current], mood.probabilities[mood.current], mood.box)
            for track_id, mood in sorted(self._moods.items())
        )
        key = tuple((track_id, mood.current) for track_id, mood in sorted(self._moods.items()))
        changed, self._last_key = key != self._last_key, key
        return SmoothResult(tuple(events), State(self.options.device, now, faces), changed)

    def _step(self, mood: _Mood, probabilities: tuple[float, ...], now: float, box: Box) -> _Mood:
        alpha = self.options.alpha
        average = tuple(alpha * p + (1 - alpha) * q for p, q in zip(probabilities, mood.probabilities, strict=True))
        leader = _argmax(average)
        mood = replace(mood, probabilities=average, box=box)
        if average[leader] - average[mood.current] <= self.options.margin:  # a tie is no lead
            return replace(mood, candidate=None)
        if mood.candidate != leader:
            mood = replace(mood, candidate=leader, since=now)
        if now - mood.since >= self.options.min_dwell_s:
            mood = replace(mood, current=leader, candidate=None)
        return mood

    def _checked(self, track: Track) -> tuple[float, ...]:
        probabilities = tuple(float(p) for p in track.observation.probabilities)
        if len(probabilities) != len(self.options.labels):
            raise ValueError(f"track {track.id}: {len(probabilities)} probabilities for "
                             f"{len(self.options.labels)} labels {self.options.labels!r}")
        return probabilities

    def _event(self, kind: EventType, track_id: int, mood: _Mood, now: float, frame: int, box: Box) -> EmotionEvent:
        return EmotionEvent(
            type=kind, track_id=track_id, emotion=self.options.labels[mood.current],
            confidence=mood.probabilities[mood.current],
            probabilities=dict(zip(self.options.labels, mood.probabilities, strict=True)),
            timestamp=now, box=box, device=self.options.device, frame=frame,
        )
