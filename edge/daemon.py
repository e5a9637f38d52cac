"""Builds the pipeline's parts from a `Config`: the one place where config sections become stage options."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.capture import CaptureOptions, Source
from edge.classify import ClassifierOptions, EmotionClassifier
from edge.config import Config
from edge.detect import DEFAULT_MODELS, DetectorOptions, create_detector
from edge.infer import Inference
from edge.mqtt import Publisher, PublisherOptions
from edge.pipeline import Pipeline, PipelineOptions
from edge.service import Notifier, watchdog_interval
from edge.sinks import Fanout, JsonLines, Mqtt, Sink
from edge.smooth import Smoother, SmootherOptions
from edge.stats import Stats
from edge.track import Tracker, TrackerOptions


@dataclass(frozen=True, slots=True)
class Plan:
    """What a command asks for beyond the config.

    `events_out`: JSONL file for events (None: stdout when `console`). `mqtt`: publish if `[mqtt] enabled`.
    `fps`: replay pacing (None: every frame as fast as it goes; live always uses `[source] fps`).
    `max_frames` 0: until the source ends. `strict_delivery`: wait for an unreachable broker on exit.
    """

    mode: Literal["replay", "live"]
    events_out: Path | None = None
    console: bool = True
    mqtt: bool = True
    fps: float | None = None
    max_frames: int = 0
    warmup: int = 0
    strict_delivery: bool = True


def build_inference(config: Config) -> Inference:
    """The classifier first: a bad model is the likelier mistake, and it fails before MediaPipe starts."""
    d = config.detector
    classifier = EmotionClassifier.create(ClassifierOptions(model=config.classifier.model,
                                                            threads=config.classifier.threads))
    try:
        detector = create_detector(d.backend, DetectorOptions(
            model=d.model or DEFAULT_MODELS[d.backend], score_threshold=d.score_threshold,
            min_face_size=d.min_face_size, max_width=d.detect_width, tiles=d.tiles, haar_width=d.haar_width))
    except BaseException:
        classifier.close()
        raise
    return Inference(detector, classifier, margin=d.margin, detect_width=d.detect_width,
                     detect_every=d.detect_every, classify_every=config.classifier.classify_every)


def build_source(config: Config, plan: Plan) -> Source:
    s, live = config.source, plan.mode == "live"
    return Source.create(CaptureOptions(
        source=s.source, mode=plan.mode, fps=s.fps if live else plan.fps or 0.0, max_frames=plan.max_frames,
        realtime=True, loop=s.loop and live, reconnect_initial=s.reconnect_min_s, reconnect_max=s.reconnect_max_s,
        stall_timeout=s.stall_timeout_s))


def build_publisher(config: Config, plan: Plan) -> Publisher | None:
    """The MQTT adapter, not connected yet (None when MQTT is off). It loads the TLS files, so that a CA or
    certificate that is not one fails here, before any model loads, and in `check-config`."""
    if not (plan.mqtt and config.mqtt.enabled):
        return None
    return Publisher(PublisherOptions.from_config(config.mqtt, config.device.name))


def build_pipeline(config: Config, plan: Plan) -> Pipeline:
    """Every part, opened in order; a part that fails (exit 2) closes the ones opened before it."""
    stats = Stats(config.stats.samples, config.stats.fps_window_s)
    publisher = build_publisher(config, plan)
    with contextlib.ExitStack() as undo:
        inference = build_inference(config)
        undo.callback(inference.close)
        source = build_source(config, plan)
        undo.callback(source.close)
        sinks: list[Sink] = []
        if plan.events_out is not None:
            sinks.append(JsonLines.file(plan.events_out))
        elif plan.console:
            sinks.append(JsonLines.stdout())
        undo.callback(lambda: Fanout(sinks).close(0.0))
        if publisher is not None:
            publisher.start()
            stats.register("mqtt", publisher.counters)
            sinks.append(Mqtt(publisher, wait_offline=plan.strict_delivery))
        tracker = Tracker(TrackerOptions(config.tracker.iou_threshold, config.tracker.min_hits,
                                         config.tracker.max_age))
        smoother = Smoother(SmootherOptions(labels=inference.labels, device=config.device.name,
                                            alpha=config.smoother.alpha, margin=config.smoother.margin,
                                            min_dwell_s=config.smoother.min_dwell_s))
        notifier = Notifier.from_environment()
        interval = watchdog_interval() if config.service.watchdog and notifier.enabled else None
        options = PipelineOptions(mode=plan.mode, stats_interval=config.mqtt.stats_interval,
                                  flush_timeout=config.mqtt.flush_timeout, warmup=plan.warmup)
        pipeline = Pipeline(source, inference, tracker, smoother, Fanout(sinks), stats, options, notifier, interval)
        undo.pop_all()
    return pipeline
