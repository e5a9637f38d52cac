"""IoU tracker: stable ids for faces across frames, confirmed after min hits, lost after max age.

Call `update` once per frame, with no observations when none were found: that still ages tracks.
Matching is greedy on IoU, highest overlap first; ties go to the older track, then the earlier observation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from edge.events import Observation


@dataclass(frozen=True, slots=True)
class TrackerOptions:
    """`min_hits`: consecutive matches before a track is confirmed (an unconfirmed track that misses once
    is forgotten). `max_age`: updates a confirmed track may go unmatched before it is lost."""

    iou_threshold: float = 0.3
    min_hits: int = 3
    max_age: int = 15

    def __post_init__(self) -> None:
        if not 0 < self.iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold!r}")
        if not 1 <= self.min_hits <= 100:
            raise ValueError(f"min_hits must be 1-100, got {self.min_hits!r}")
        if not 0 <= self.max_age <= 1000:
            raise ValueError(f"max_age must be 0-1000, got {self.max_age!r}")


@dataclass(frozen=True, slots=True)
class Track:
    """A confirmed face. `age` is the number of updates since it was last matched (0: matched now)."""

    id: int
    observation: Observation
    hits: int
    age: int
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class TrackUpdate:
    """Confirmed tracks after one update, by id, and the confirmed tracks lost in it (their last state)."""

    timestamp: float
    tracks: tuple[Track, ...]
    lost: tuple[Track, ...]


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A track before confirmation; `id` is 0 until it is confirmed."""

    key: int
    track: Track


class Tracker:
    def __init__(self, options: TrackerOptions = TrackerOptions()) -> None:
        self.options = options
        self._active: list[_Candidate] = []
        self._next_key = 1
        self._next_id = 1

    def update(self, observations: Sequence[Observation], timestamp: float) -> TrackUpdate:
        pairs = sorted(
            (-track.track.observation.box.iou(obs.box), track.key, index)
            for track in self._active
            for index, obs in enumerate(observations)
        )
        matched: dict[int, int] = {}
        used: set[int] = set()
        for negative_iou, key, index in pairs:
            if -negative_iou < self.options.iou_threshold:
                break
            if key not in matched and index not in used:
                matched[key] = index
                used.add(index)

        kept: list[_Candidate] = []
        lost: list[Track] = []
        for candidate in self._active:
            track = candidate.track
            if candidate.key in matched:
                kept.append(self._matched(candidate, observations[matched[candidate.key]], timestamp))
            elif track.id == 0:
                continue  # unconfirmed and missed: forgotten
            elif track.age + 1 > self.options.max_age:
                lost.append(track)
            else:
                kept.append(replace(candidate, track=replace(track, age=track.age + 1)))
        for index, obs in enumerate(observations):
            if index not in used:
                fresh = Track(id=0, observation=obs, hits=0, age=0, first_seen=timestamp, last_seen=timestamp)
                kept.append(self._matched(_Candidate(self._next_key, fresh), obs, timestamp))
                self._next_key += 1
        self._active = kept
        return TrackUpdate(timestamp, self._confirmed(), tuple(lost))

    def finish(self, timestamp: float) -> TrackUpdate:
        """End of stream: every confirmed track is lost and the tracker starts empty."""
        lost = self._confirmed()
        self._active = []
        return TrackUpdate(timestamp, (), lost)

    def _matched(self, candidate: _Candidate, obs: Observation, timestamp: float) -> _Candidate:
        track = replace(candidate.track, observation=obs, hits=candidate.track.hits + 1, age=0,
                        last_seen=timestamp)
        if track.id == 0 and track.hits >= self.options.min_hits:
            track = replace(track, id=self._next_id)
            self._next_id += 1
        return replace(candidate, track=track)

    def _confirmed(self) -> tuple[Track, ...]:
        return tuple(sorted((c.track for c in self._active if c.track.id), key=lambda t: t.id))
