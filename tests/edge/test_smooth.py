"""Smoothing and hysteresis: blips are ignored, sustained changes win after the dwell, tracks end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from edge.events import Box, Observation
from edge.smooth import Smoother, SmootherOptions
from edge.track import Track, Tracker, TrackerOptions, TrackUpdate

LABELS = ("angry", "happy", "sad")
HAPPY, SAD, ANGRY = (0.05, 0.9, 0.05), (0.05, 0.05, 0.9), (0.9, 0.05, 0.05)
SCHEMA = json.loads((Path(__file__).parents[2] / "edge" / "schemas" / "event.schema.json").read_text())


def smoother(**options: float) -> Smoother:
    return Smoother(SmootherOptions(LABELS, "hall", **{"alpha": 0.5, "margin": 0.1, "min_dwell_s": 1.0, **options}))


def track(probs: tuple[float, ...], track_id: int = 1, age: int = 0, x: int = 10) -> Track:
    return Track(track_id, Observation(Box(x, 20, 50, 50), 0.9, probs), hits=3, age=age, first_seen=0, last_seen=0)


def at(t: float, *tracks: Track, lost: tuple[Track, ...] = ()) -> TrackUpdate:
    return TrackUpdate(t, tracks, lost)


def feed(s: Smoother, sequence: list[tuple[float, tuple[float, ...]]]) -> list[tuple[str, str, float]]:
    events = []
    for frame, (t, probs) in enumerate(sequence):
        events += [(e.type, e.emotion, e.timestamp) for e in s.update(at(t, track(probs)), frame).events]
    return events


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(labels=()), "labels must be distinct and non-empty, got ()"),
        (dict(labels=("a", "a")), "labels must be distinct and non-empty, got ('a', 'a')"),
        (dict(device=""), "device must be a non-empty name"),
        (dict(alpha=0.0), "alpha must be in (0, 1], got 0.0"),
        (dict(margin=2.0), "margin must be 0-1, got 2.0"),
        (dict(min_dwell_s=-1.0), "min_dwell_s must be 0-60, got -1.0"),
    ],
)
def test_options_are_checked_at_once(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        SmootherOptions(**{"labels": LABELS, "device": "hall", **options})


def test_start_event_when_a_track_first_appears() -> None:
    result = smoother().update(at(5.0, track(HAPPY)), frame=7)
    (event,) = result.events
    assert (event.type, event.track_id, event.emotion, event.device, event.frame) == ("start", 1, "happy", "hall", 7)
    assert event.confidence == pytest.approx(0.9)
    assert event.probabilities == {"angry": 0.05, "happy": 0.9, "sad": 0.05}
    jsonschema.validate(json.loads(event.to_json()), SCHEMA)


def test_one_frame_blip_does_not_change_the_emotion() -> None:
    events = feed(smoother(), [(0.0, HAPPY), (0.1, SAD), (0.2, SAD), (0.3, HAPPY), (0.4, HAPPY), (2.0, HAPPY)])
    assert events == [("start", "happy", 0.0)]


def test_sustained_change_is_emitted_only_after_the_dwell() -> None:
    sequence = [(0.0, HAPPY)] + [(0.1 * i, SAD) for i in range(1, 25)]
    events = feed(smoother(min_dwell_s=1.0), sequence)
    assert [e[:2] for e in events] == [("start", "happy"), ("change", "sad")]
    # At t=0.1 the averages tie (0.475 each); from t=0.2 SAD leads by 0.425, and the switch waits 1 s more.
    assert 1.1 <= events[1][2] <= 1.3


def test_zero_dwell_switches_as_soon_as_the_margin_is_met() -> None:
    events = feed(smoother(min_dwell_s=0.0, margin=0.3), [(0.0, HAPPY), (0.1, SAD), (0.2, SAD)])
    assert [e[:2] for e in events] == [("start", "happy"), ("change", "sad")]
    assert events[1][2] == 0.2  # after one SAD frame the lead (0.425) is 0.05 < 0.3; after two it is 0.7


def test_label_comes_from_the_smoothed_vector_not_the_first_frame() -> None:
    """Regression (supervision's wart): the class must follow the averaged probabilities."""
    s = smoother(min_dwell_s=0.0, margin=0.0, alpha=0.5)
    s.update(at(0.0, track(HAPPY)), 0)
    result = s.update(at(0.1, track(ANGRY)), 1)
    average = dict(zip(LABELS, (0.475, 0.475, 0.05), strict=True))
    assert result.state.faces[0].emotion == "happy"  # a tie keeps the current label
    assert result.events == () and result.state.faces[0].confidence == pytest.approx(0.475)
    result = s.update(at(0.2, track(ANGRY)), 2)
    assert [e.emotion for e in result.events] == ["angry"] and average["angry"] < result.events[0].confidence


def test_interrupted_lead_restarts_the_dwell() -> None:
    sequence = [(0.0, HAPPY), (0.2, SAD), (0.4, SAD), (0.6, HAPPY), (0.8, HAPPY), (1.0, SAD), (1.2, SAD),
                (1.4, SAD), (1.6, SAD)]
    assert [e[0] for e in feed(smoother(min_dwell_s=0.9), sequence)] == ["start"]


def test_coasting_track_keeps_its_average() -> None:
    s = smoother(min_dwell_s=0.0)
    s.update(at(0.0, track(HAPPY)), 0)
    result = s.update(at(0.1, track(SAD, age=1)), 1)  # stale observation of an unmatched track
    assert result.events == () and result.state.faces[0].confidence == pytest.approx(0.9)


def test_end_event_on_loss_with_the_last_emotion_and_box() -> None:
    s = smoother()
    s.update(at(0.0, track(HAPPY, 1), track(SAD, 2, x=300)), 0)
    result = s.update(at(0.5, track(HAPPY, 1), lost=(track(SAD, 2, x=310),)), 1)
    (event,) = result.events
    assert (event.type, event.track_id, event.emotion, event.box.x, event.timestamp) == ("end", 2, "sad", 310, 0.5)
    assert [f.track_id for f in result.state.faces] == [1] and result.state_changed


def test_state_changes_only_when_faces_or_emotions_do() -> None:
    s = smoother(min_dwell_s=0.0, margin=0.0, alpha=1.0)
    flags = [
        s.update(at(0.0), 0).state_changed,                    # first state is always news
        s.update(at(0.1), 1).state_changed,
        s.update(at(0.2, track(HAPPY)), 2).state_changed,      # a face arrives
        s.update(at(0.3, track(HAPPY, x=20)), 3).state_changed,  # it moves: not news
        s.update(at(0.4, track(SAD)), 4).state_changed,        # its emotion changes
        s.update(at(0.5), 5).state_changed,                    # it is gone
    ]
    assert flags == [True, False, True, False, True, True]


def test_state_payload_has_dominant_and_count() -> None:
    s = smoother()
    state = s.update(at(1.0, track(HAPPY, 1), track((0.0, 0.0, 1.0), 2, x=300)), 3).state
    assert state.to_dict()["count"] == 2 and state.dominant == "sad" and state.device == "hall"


def test_wrong_probability_count_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"^track 1: 2 probabilities for 3 labels"):
        smoother().update(at(0.0, track((0.5, 0.5))), 0)


def test_tracker_and_smoother_together_end_open_tracks_on_finish() -> None:
    tracker, s = Tracker(TrackerOptions(min_hits=2)), smoother()
    kinds = []
    for frame in range(4):
        obs = Observation(Box(10 + frame, 10, 60, 60), 0.9, HAPPY)
        kinds += [e.type for e in s.update(tracker.update([obs], frame * 0.1), frame).events]
    kinds += [e.type for e in s.update(tracker.finish(0.5), 4).events]
    assert kinds == ["start", "end"]
