"""IoU tracker: confirmation, stable ids, ageing on empty updates, loss, and no mutation of inputs."""

from __future__ import annotations

import dataclasses
import re

import pytest

from edge.events import Box, Observation
from edge.track import Tracker, TrackerOptions

PROBS = (0.1, 0.9)


def face(x: int, y: int = 0, size: int = 50) -> Observation:
    return Observation(Box(x, y, size, size), 0.9, PROBS)


def run(tracker: Tracker, frames: list[list[Observation]], start: float = 0.0) -> list:
    return [tracker.update(obs, start + i * 0.1) for i, obs in enumerate(frames)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(iou_threshold=0.0), "iou_threshold must be in (0, 1], got 0.0"),
        (dict(iou_threshold=1.5), "iou_threshold must be in (0, 1], got 1.5"),
        (dict(min_hits=0), "min_hits must be 1-100, got 0"),
        (dict(max_age=-1), "max_age must be 0-1000, got -1"),
    ],
)
def test_options_are_checked_at_once(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TrackerOptions(**options)


def test_track_is_confirmed_after_min_hits_with_id_1() -> None:
    tracker = Tracker(TrackerOptions(min_hits=3))
    updates = run(tracker, [[face(0)], [face(2)], [face(4)], [face(6)]])
    assert [len(u.tracks) for u in updates] == [0, 0, 1, 1]
    track = updates[2].tracks[0]
    assert (track.id, track.hits, track.age, track.first_seen) == (1, 3, 0, 0.0)
    assert updates[3].tracks[0].observation.box == Box(6, 0, 50, 50)


def test_ids_are_stable_and_sequential_for_confirmed_tracks_only() -> None:
    """Regression: tentative tracks (one-frame noise) must not consume public ids."""
    tracker = Tracker(TrackerOptions(min_hits=2))
    noise = [[face(500)], [face(900)], [face(300, 300)], [face(300, 300)]]
    frames = [[face(0), *extra] for extra in noise]
    updates = run(tracker, frames)
    assert [t.id for t in updates[1].tracks] == [1]
    assert [t.id for t in updates[3].tracks] == [1, 2]
    assert updates[3].tracks[1].observation.box.x == 300


def test_empty_update_still_ages_tracks_until_lost() -> None:
    tracker = Tracker(TrackerOptions(min_hits=1, max_age=2))
    first = tracker.update([face(0)], 0.0)
    assert [t.id for t in first.tracks] == [1]
    aged = [tracker.update([], t) for t in (0.1, 0.2, 0.3)]
    assert [[t.age for t in u.tracks] for u in aged] == [[1], [2], []]
    assert aged[2].lost[0].id == 1 and aged[2].lost[0].last_seen == 0.0
    assert tracker.update([], 0.4).lost == ()


def test_coasting_track_is_resumed_with_the_same_id() -> None:
    tracker = Tracker(TrackerOptions(min_hits=1, max_age=3))
    tracker.update([face(0)], 0.0)
    tracker.update([], 0.1)
    resumed = tracker.update([face(3)], 0.2)
    assert [(t.id, t.age, t.hits) for t in resumed.tracks] == [(1, 0, 2)]


def test_unconfirmed_track_that_misses_is_forgotten() -> None:
    tracker = Tracker(TrackerOptions(min_hits=3))
    updates = run(tracker, [[face(0)], [face(0)], [], [face(0)], [face(0)], [face(0)]])
    assert all(not u.lost for u in updates)
    assert [len(u.tracks) for u in updates] == [0, 0, 0, 0, 0, 1]


def test_greedy_matching_prefers_highest_overlap() -> None:
    tracker = Tracker(TrackerOptions(min_hits=1, iou_threshold=0.1))
    tracker.update([face(0), face(60)], 0.0)
    swapped = tracker.update([face(55), face(5)], 0.1)
    assert {t.id: t.observation.box.x for t in swapped.tracks} == {1: 5, 2: 55}


def test_low_overlap_starts_a_new_track() -> None:
    tracker = Tracker(TrackerOptions(min_hits=1, iou_threshold=0.5, max_age=0))
    tracker.update([face(0)], 0.0)
    moved = tracker.update([face(40)], 0.1)  # IoU 10/90 < 0.5
    assert [t.id for t in moved.tracks] == [2] and [t.id for t in moved.lost] == [1]


def test_finish_loses_every_confirmed_track() -> None:
    tracker = Tracker(TrackerOptions(min_hits=1))
    tracker.update([face(0), face(200)], 0.0)
    done = tracker.finish(0.5)
    assert [t.id for t in done.lost] == [1, 2] and done.tracks == () and done.timestamp == 0.5
    assert tracker.update([], 0.6).tracks == ()


def test_inputs_are_not_mutated_and_outputs_are_frozen() -> None:
    tracker = Tracker(TrackerOptions(min_hits=1))
    observations = [face(0)]
    before = list(observations)
    update = tracker.update(observations, 0.0)
    assert observations == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        update.tracks[0].age = 5  # type: ignore[misc]
    tracker.update([face(1)], 0.1)
    assert update.tracks[0].observation.box.x == 0  # an earlier update keeps its values
