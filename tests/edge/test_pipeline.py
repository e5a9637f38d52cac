"""The pipeline's threads on real parts: the hamilton clip, BlazeFace, the int8 classifier, real sinks."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.capture import CaptureOptions, Source
from edge.config import Config, load_config
from edge.daemon import Plan, build_inference, build_pipeline
from edge.events import EmotionEvent, Face, Frame, State
from edge.infer import Inference
from edge.pipeline import Pipeline, PipelineOptions
from edge.smooth import Smoother, SmootherOptions
from edge.stats import Stats
from edge.track import Tracker
from tests.shared import hamilton_clip

CLIP_FRAMES = 275


def config_for(model: Path, source: str, **keys: object) -> Config:
    overrides = {"classifier.model": str(model), "source.source": source, "mqtt.enabled": False,
                 "device.name": "test-cam", **keys}
    return load_config(None, overrides)


class Recorder:
    """A sink that keeps what it is given, for the assertions (thread-safe enough: lists append atomically)."""

    def __init__(self) -> None:
        self.events: list[EmotionEvent] = []
        self.states: list[State] = []
        self.snapshots: list[Mapping[str, Any]] = []

    def event(self, event: EmotionEvent) -> None:
        self.events.append(event)

    def state(self, state: State) -> None:
        self.states.append(state)

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        self.snapshots.append(snapshot)

    def close(self, timeout: float) -> int:
        return 0


def pipeline_on(inference: Inference, source: Source, options: PipelineOptions) -> tuple[Pipeline, Recorder]:
    recorder = Recorder()
    smoother = Smoother(SmootherOptions(labels=inference.labels, device="test-cam"))
    return Pipeline(source, inference, Tracker(), smoother, recorder, Stats(), options), recorder


def replay(config: Config, events_out: Path) -> tuple[Any, list[dict[str, Any]]]:
    summary = build_pipeline(config, Plan(mode="replay", events_out=events_out)).run()
    return summary, [json.loads(line) for line in events_out.read_text().splitlines()]


def test_replay_processes_every_frame_and_is_deterministic(edge_model: Path, tmp_path: Path) -> None:
    """Two replays give the same events: tracking and smoothing run on media time, not machine speed."""
    config = config_for(edge_model, str(hamilton_clip()))
    first, events = replay(config, tmp_path / "a.jsonl")
    second, again = replay(config, tmp_path / "b.jsonl")
    assert (first.frames, first.drops, first.failed, first.unsent) == (CLIP_FRAMES, 0, None, 0)
    assert first.faces == second.faces > 0

    def without_time(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in item.items() if k != "timestamp"} for item in items]

    assert without_time(events) == without_time(again)
    starts = [e["track_id"] for e in events if e["type"] == "start"]
    ends = [e["track_id"] for e in events if e["type"] == "end"]
    assert starts and sorted(starts) == sorted(ends), "every started track ends, at the latest at end of replay"
    fps = cv2.VideoCapture(str(hamilton_clip())).get(cv2.CAP_PROP_FPS)
    for event in events:  # media time: frame n is n / fps seconds after frame 0
        assert event["timestamp"] - events[0]["timestamp"] == pytest.approx(
            (event["frame"] - events[0]["frame"]) / fps, abs=2e-3)
    latency = first.stats["latency_ms"]
    assert {"decode", "detect", "preprocess", "classify", "track", "publish", "e2e"} <= set(latency)
    assert latency["classify"]["count"] == CLIP_FRAMES
    every = config.detector.detect_every  # the detector runs on frames 0, every, 2 * every, ...
    assert latency["detect"]["count"] == len(range(0, CLIP_FRAMES, every))


def test_live_mode_keeps_the_newest_frame_and_counts_every_drop(edge_model: Path) -> None:
    """A source far faster than inference: frames are dropped, never queued, and every one is counted."""
    inference = build_inference(config_for(edge_model, "demo"))
    source = Source.create(CaptureOptions(source=str(hamilton_clip()), mode="live", realtime=False))
    pipeline, recorder = pipeline_on(inference, source, PipelineOptions(mode="live"))
    summary = pipeline.run()
    assert summary.failed is None
    assert summary.drops > 0
    assert summary.frames + summary.drops == CLIP_FRAMES
    assert summary.stats["source"]["frames_read"] == CLIP_FRAMES


class BreaksOnCall:
    """Test double of a detector (the one stand-in in these tests): call `n` raises, as a stage failing at
    run time would. It lets the test hold the capture thread on a full queue when inference dies."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def detect(self, image_bgr: np.ndarray) -> tuple[Face, ...]:
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("detector exploded")
        return ()

    def close(self) -> None:
        pass


def test_a_thread_that_raises_stops_the_pipeline_loudly(edge_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Regression guard: a dead inference thread must not leave capture blocked on a full queue forever."""
    real = build_inference(config_for(edge_model, "demo"))
    inference = Inference(BreaksOnCall(5), real.classifier)
    source = Source.create(CaptureOptions(source=str(hamilton_clip()), mode="replay"))
    pipeline, _ = pipeline_on(inference, source, PipelineOptions(mode="replay"))
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="edge.pipeline"):
        summary = pipeline.run()
    assert summary.failed == "inference"
    assert summary.frames <= 4  # results still queued when it died may be left unpublished
    assert time.monotonic() - started < 60  # a hang guard, not a timing assertion
    failures = [r for r in caplog.records if r.name == "edge.pipeline" and r.levelno == logging.ERROR]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert "inference" in failures[0].getMessage() and "detector exploded" in caplog.text


def clip_frame_with_a_face(inference: Inference) -> tuple[np.ndarray, Face]:
    with Source.create(CaptureOptions(source=str(hamilton_clip()), mode="replay")) as source:
        for frame in source:
            faces = inference.detector.detect(frame.image)
            if faces and faces[0].box.w >= 60:
                return frame.image, faces[0]
    raise AssertionError("no face of 60 px or more in the clip")


def test_odd_frames_are_converted_skipped_and_reported_never_raised(edge_model: Path) -> None:
    inference = build_inference(config_for(edge_model, "demo"))
    image, face = clip_frame_with_a_face(inference)
    x, w = face.box.x, face.box.w

    def run(pixels: np.ndarray) -> Any:
        return inference.process(Frame(0, time.time(), time.perf_counter(), pixels))

    base = run(image)
    assert (base.kind, base.downscaled) == ("bgr", False) and base.result.observations
    gray, bgra = run(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)), run(cv2.cvtColor(image, cv2.COLOR_BGR2BGRA))
    assert gray.kind == "gray" and gray.result is not None
    assert bgra.kind == "bgra" and len(bgra.result.observations) == len(base.result.observations)
    huge = run(cv2.resize(image, (3840, 2160)))  # 4K: the detector sees it at detect_width, boxes come back 6x
    assert huge.downscaled and huge.result.observations
    assert huge.result.observations[0].box.w == pytest.approx(6 * w, rel=0.15)
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((360, 0), np.uint8)):
        assert (run(empty).kind, run(empty).result) == ("empty", None)
    assert (run(image.astype(np.float32)).kind, run(image.astype(np.float32)).result) == ("unsupported", None)
    cut = run(np.ascontiguousarray(image[:, x + w // 2:]))  # the face cut in half by the frame's left edge
    for observation in cut.result.observations:
        box = observation.box
        assert box.x >= 0 and box.w > 0 and box.x + box.w <= image.shape[1] - (x + w // 2)
    tiny = run(cv2.resize(image, None, fx=10 / w, fy=10 / w))  # the face is now 10 px: below min_face_size
    assert tiny.kind == "bgr" and tiny.result.observations == ()
    inference.close()


def test_a_lost_camera_keeps_the_pipeline_up_and_shows_the_source_down(edge_model: Path) -> None:
    inference = build_inference(config_for(edge_model, "demo"))
    source = Source.create(CaptureOptions(source="/dev/video9", mode="live", reconnect_initial=0.1,
                                          reconnect_max=0.4))
    pipeline, recorder = pipeline_on(inference, source, PipelineOptions(mode="live", stats_interval=3600))
    runner = threading.Thread(target=lambda: setattr(pipeline, "summary", pipeline.run()))
    runner.start()
    deadline = time.monotonic() + 30
    while not any(s["source"]["down"] for s in recorder.snapshots) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a few reconnect attempts while the pipeline stays up
    assert runner.is_alive(), "the pipeline must outlive its source"
    pipeline.stop.set()
    runner.join(30)
    summary = pipeline.summary  # type: ignore[attr-defined]
    assert summary.failed is None and summary.frames == 0
    assert summary.stats["source"]["down"] and summary.stats["source"]["reconnects"] >= 2
    assert recorder.snapshots[0]["source"]["down"], "stats go out at once when the source goes down"
