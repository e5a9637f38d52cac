"""The daemon's threads: capture → inference → publish, joined by bounded queues, watching one stop event.

- capture: reads the Source. Replay puts every frame (blocking) and stamps it with media time
  (first frame's wall time + index / native fps), so smoothing does not depend on machine speed. Live keeps
  only the newest frame: a full queue loses its older frame, counted as `frames_dropped`.
- inference: `Inference.process` per frame; odd frames are counted by kind.
- publish: tracker → smoother → sinks; state on change, stats every `stats_interval`; READY=1 after the
  first frame, the watchdog fed per frame. On its way out it sends `end` events for open tracks.

A thread that raises logs its traceback once, sets stop and makes `Summary.failed` name it.
Shutdown: watchdog stopped → STOPPING=1 → stop set (a live source is closed at once, waking capture) →
threads joined (publish sends `end` events for open tracks on its way out) → source and models closed →
sinks closed (MQTT flushed within `flush_timeout`, then `available=offline`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from edge.capture import Source
from edge.events import Frame, FrameResult, State
from edge.infer import Inference
from edge.service import Notifier, Watchdog
from edge.sinks import Sink
from edge.smooth import Smoother
from edge.stats import Stats
from edge.track import Tracker

log = logging.getLogger(__name__)
Item = TypeVar("Item")
END = object()  # sentinel: the source is done; passed down the queues after the last frame
POLL_S = 0.2  # how often a waiting thread looks at the stop event


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    """`warmup`: frames processed but left out of latencies and the `measured` figures (bench)."""

    mode: Literal["replay", "live"] = "replay"
    frame_queue: int = 2
    result_queue: int = 8
    stats_interval: float = 30.0
    flush_timeout: float = 30.0
    warmup: int = 0

    def __post_init__(self) -> None:
        checks = [("mode", self.mode in ("replay", "live"), "'replay' or 'live'"),
                  ("frame_queue", 1 <= self.frame_queue <= 64, "1-64"),
                  ("result_queue", 1 <= self.result_queue <= 1024, "1-1024"),
                  ("stats_interval", self.stats_interval > 0, "> 0"),
                  ("flush_timeout", self.flush_timeout >= 0, ">= 0"), ("warmup", self.warmup >= 0, ">= 0")]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"pipeline.{name}: expected {allowed}, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class Measured:
    """Frames after warm-up, from the first such frame's capture to the last publish, and CPU seconds in it."""

    frames: int
    faces: int
    wall_s: float
    cpu_s: float

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Summary:
    frames: int
    faces: int
    events: int
    drops: int  # frames dropped by the source's newest-frame slot and by the frame queue
    unsent: int  # messages the sinks could not deliver
    failed: str | None  # the thread that died, if one did
    measured: Measured
    stats: dict[str, Any]


class Pipeline:
    def __init__(self, source: Source, inference: Inference, tracker: Tracker, smoother: Smoother, sink: Sink,
                 stats: Stats, options: PipelineOptions = PipelineOptions(), notifier: Notifier | None = None,
                 watchdog_interval: float | None = None) -> None:
        self.source, self.inference, self.tracker, self.smoother = source, inference, tracker, smoother
        self.sink, self.stats, self.options = sink, stats, options
        self.notifier = notifier or Notifier(None)
        self.watchdog = Watchdog(self.notifier, watchdog_interval) if watchdog_interval else None
        self.stop = threading.Event()
        self._frames: queue.Queue[Any] = queue.Queue(options.frame_queue)
        self._results: queue.Queue[Any] = queue.Queue(options.result_queue)
        self._failed: str | None = None
        self._start: tuple[float, float] | None = None  # (wall, cpu) at the first measured frame
        self._end: tuple[float, float] = (0.0, 0.0)
        self._measured = self._measured_faces = self._events = 0
        self._next_stats, self._source_down = 0.0, False
        self._state = State(smoother.options.device, time.time(), ())
        stats.register("source", lambda: {"name": source.options.source, **_fields(source.stats())})

    def run(self) -> Summary:
        threads = [threading.Thread(target=self._guard, args=(name, body), name=f"fer-{name}", daemon=True)
                   for name, body in (("capture", self._capture), ("inference", self._infer),
                                      ("publish", self._publish))]
        if self.watchdog:
            self.watchdog.start()
        for thread in threads:
            thread.start()
        while not self.stop.is_set() and any(t.is_alive() for t in threads):
            self.stop.wait(POLL_S)
        if self.watchdog:
            self.watchdog.close()  # no WATCHDOG=1 after STOPPING=1
        self.notifier.stopping()
        self.stop.set()
        if self.options.mode == "live":
            self.source.close()  # wakes a capture thread waiting for a frame or for its pacing slot
        for thread in threads:
            thread.join()
        self.source.close()
        self.inference.close()
        unsent = self.sink.close(self.options.flush_timeout)
        self.notifier.close()
        snapshot = self.stats.snapshot()
        (wall0, cpu0), (wall1, cpu1) = self._start or self._end, self._end
        measured = Measured(self._measured, self._measured_faces, max(0.0, wall1 - wall0), max(0.0, cpu1 - cpu0))
        return Summary(
            frames=self.stats.counter("frames"), faces=self.stats.counter("faces"), events=self._events,
            drops=self.stats.counter("frames_dropped") + self.source.stats().frames_dropped, unsent=unsent,
            failed=self._failed, measured=measured, stats=snapshot)

    def _guard(self, name: str, body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException:
            log.exception("pipeline thread %r failed; stopping", name)
            self._failed = self._failed or name
            self.stop.set()

    def _put(self, target: queue.Queue[Any], item: object) -> bool:
        """Blocking put that gives up when stop is set."""
        while not self.stop.is_set():
            try:
                target.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, source: queue.Queue[Any], idle: Callable[[], None] | None = None) -> Any:
        """The next item, or END once stop is set; `idle` runs whenever the queue stays empty for a poll."""
        while not self.stop.is_set():
            try:
                return source.get(timeout=POLL_S)
            except queue.Empty:
                if idle:
                    idle()
        return END

    def _measure(self, index: int) -> bool:
        return index >= self.options.warmup

    # capture

    def _capture(self) -> None:
        replay, fps, origin = self.options.mode == "replay", self.source.native_fps, None
        while not self.stop.is_set():
            started = time.perf_counter()
            frame = self.source.read(timeout=POLL_S)
            if frame is None:
                if self.source.ended:
                    break
                continue
            if self._measure(frame.index) and self._start is None:
                self._start = (started, time.process_time())
            if replay:
                if self._measure(frame.index):
                    self.stats.record("decode", time.perf_counter() - started)
                origin = frame.timestamp if origin is None else origin
                if fps > 0:
                    frame = replace(frame, timestamp=origin + frame.index / fps)
                if not self._put(self._frames, frame):
                    return
            else:
                self._offer(frame)
        self._put(self._frames, END)

    def _offer(self, frame: Frame) -> None:
        """Live: never wait for inference. A full queue loses its oldest frame, and the drop is counted."""
        while True:
            try:
                self._frames.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self._frames.get_nowait()
                    self.stats.count("frames_dropped")
                except queue.Empty:
                    pass

    # inference

    def _infer(self) -> None:
        while (frame := self._get(self._frames)) is not END:
            inferred = self.inference.process(frame)
            if inferred.kind != "bgr":
                self.stats.count(f"frames_{inferred.kind}")
            if inferred.downscaled:
                self.stats.count("frames_downscaled")
            if inferred.faces_skipped:
                self.stats.count("faces_skipped", inferred.faces_skipped)
            if inferred.result is None:
                continue
            if self._measure(frame.index):
                detect = (("detect", inferred.detect_s),) if inferred.detected else ()  # detect_every: when run
                for stage, seconds in (*detect, ("preprocess", inferred.preprocess_s),
                                       ("classify", inferred.classify_s)):
                    self.stats.record(stage, seconds)
            if not self._put(self._results, inferred.result):
                return
        self._put(self._results, END)

    # publish

    def _publish(self) -> None:
        clock, ready = time.perf_counter, False
        self._next_stats = clock() + self.options.stats_interval
        last: FrameResult | None = None
        while (result := self._get(self._results, self._periodic)) is not END:
            started = clock()
            update = self.tracker.update(result.observations, result.timestamp)
            smoothed = self.smoother.update(update, result.frame_index)
            tracked = clock()
            for event in smoothed.events:
                self.sink.event(event)
            if smoothed.state_changed:
                self._publish_state(smoothed.state)
            done = clock()
            self._events += len(smoothed.events)
            self.stats.tick("frames")
            self.stats.count("faces", len(result.observations))
            self.stats.count("events", len(smoothed.events))
            if self._measure(result.frame_index):
                self.stats.record("track", tracked - started)
                self.stats.record("publish", done - tracked)
                self.stats.record("e2e", done - result.captured_at)
                self._measured += 1
                self._measured_faces += len(result.observations)
                self._end = (done, time.process_time())
            if not ready:
                self.notifier.ready(f"running: {self.source.options.source}")
                ready = True
            if self.watchdog:
                self.watchdog.frame_seen()
            last = result
            self._periodic()
        live = self.options.mode == "live"
        now = time.time() if live or last is None else last.timestamp
        finished = self.smoother.update(self.tracker.finish(now), last.frame_index if last else 0)
        for event in finished.events:
            self.sink.event(event)
        if finished.state_changed:
            self._publish_state(finished.state)
        self._events += len(finished.events)
        self.stats.count("events", len(finished.events))

    def _publish_state(self, state: State) -> None:
        self._state = replace(state, source="down" if self._source_down else "up")
        self.sink.state(self._state)

    def _periodic(self) -> None:
        """Stats every interval, and at once when the source goes down or comes back."""
        now, down = time.perf_counter(), self.source.stats().down
        if down != self._source_down:
            self._source_down = down
            if down:
                log.warning("source %s is down: retrying with backoff", self.source.options.source)
            else:
                log.info("source %s is back", self.source.options.source)
            live = self.options.mode == "live"
            self._publish_state(replace(self._state, timestamp=time.time() if live else self._state.timestamp))
        elif now < self._next_stats:
            return
        self._next_stats = now + self.options.stats_interval
        snapshot = self.stats.snapshot()
        self.sink.stats(snapshot)
        text = f"{snapshot['fps']:.1f} fps, source {'down' if down else 'up'}"
        self.notifier.status(text)
        log.info("%s, %d frames, %d faces, %d events", text, self.stats.counter("frames"),
                 self.stats.counter("faces"), self.stats.counter("events"))


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}
