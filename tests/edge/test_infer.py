"""Inference with `detect_every`: which frames run the detector, and what the frames in between get."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture import CaptureOptions, Source
from edge.classify import ClassifierOptions, EmotionClassifier
from edge.detect import BlazeFaceDetector
from edge.events import Face, Frame
from edge.infer import Inference


class CountingDetector:
    """The real BlazeFace, counting its calls."""

    def __init__(self) -> None:
        self.detector, self.calls = BlazeFaceDetector.create(), 0

    def detect(self, image_bgr: np.ndarray) -> tuple[Face, ...]:
        self.calls += 1
        return self.detector.detect(image_bgr)

    def close(self) -> None:
        self.detector.close()


def demo_frames(count: int) -> list[Frame]:
    """The demo: one face in every frame, drifting slowly."""
    with Source.create(CaptureOptions(source="demo", mode="replay", max_frames=count)) as source:
        return list(source)


@pytest.fixture()
def counting(edge_model: Path) -> tuple[Inference, CountingDetector]:
    detector = CountingDetector()
    classifier = EmotionClassifier.create(ClassifierOptions(model=edge_model))
    return Inference(detector, classifier, detect_every=3), detector


def test_detect_every_n_carries_the_boxes_and_classifies_each_frame_anew(
        counting: tuple[Inference, CountingDetector]) -> None:
    inference, detector = counting
    results = [inference.process(frame) for frame in demo_frames(7)]
    assert [r.detected for r in results] == [True, False, False, True, False, False, True]
    assert detector.calls == 3
    for first, later in ((results[0], results[1]), (results[3], results[5])):
        boxes = [o.box for o in first.result.observations]
        assert boxes and [o.box for o in later.result.observations] == boxes
    # the crops come from each frame's own pixels, so the probabilities are computed per frame
    assert results[0].result.observations[0].probabilities != results[2].result.observations[0].probabilities
    inference.close()


def test_a_frame_of_another_size_or_an_unrelated_photo_is_always_detected(
        counting: tuple[Inference, CountingDetector]) -> None:
    inference, detector = counting
    frame = demo_frames(1)[0]
    smaller = Frame(1, time.time(), time.perf_counter(), cv2.resize(frame.image, (320, 240)))
    assert inference.process(frame).detected and inference.process(smaller).detected
    assert inference.process(frame, stream=False).detected and inference.process(frame, stream=False).detected
    assert detector.calls == 4
    inference.close()


@pytest.mark.parametrize(("name", "every"), [("detect_every", 0), ("detect_every", 31), ("classify_every", 0)])
def test_every_out_of_range_is_rejected_naming_it(edge_model: Path, name: str, every: int) -> None:
    classifier = EmotionClassifier.create(ClassifierOptions(model=edge_model))
    with pytest.raises(ValueError, match=rf"^{name} must be 1-30, got {every}$"):
        Inference(CountingDetector(), classifier, **{name: every})  # type: ignore[arg-type]


def test_classify_every_n_keeps_a_stable_face_probabilities_and_reclassifies_a_moved_one(edge_model: Path) -> None:
    classifier = EmotionClassifier.create(ClassifierOptions(model=edge_model))
    inference = Inference(BlazeFaceDetector.create(), classifier, classify_every=3)
    frames = demo_frames(5)
    results = [inference.process(frame) for frame in frames[:4]]
    assert [r.faces_reused for r in results] == [0, 1, 1, 0], "the drifting demo face is stable frame to frame"
    probabilities = [r.result.observations[0].probabilities for r in results]
    assert probabilities[0] == probabilities[1] == probabilities[2] != probabilities[3]
    moved = Frame(4, time.time(), time.perf_counter(), np.roll(frames[4].image, 200, axis=1))
    assert inference.process(moved).faces_reused == 0, "a face that moved is classified at once"
    assert inference.process(frames[4], stream=False).faces_reused == 0, "an unrelated photo never reuses"
    inference.close()
