"""Frame sources: camera index or /dev/video*, video file, RTSP/HTTP URL, and the built-in `demo`.

Two reading modes share one `Source` interface:
- replay: every frame in order, read in the caller's thread; the source ending ends the iteration.
- live: a reader thread keeps only the newest frame in a one-slot buffer and counts the frames it
  overwrote; a lost camera or stream is reopened with exponential backoff while `down` is shown.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from edge.errors import UserError
from edge.events import Frame

SourceKind = Literal["demo", "camera", "file", "url"]
Mode = Literal["replay", "live"]


class SourceUnavailable(Exception):
    """The source cannot be opened right now (camera unplugged, stream unreachable, file gone)."""


def source_kind(source: str) -> SourceKind:
    if source == "demo":
        return "demo"
    if source.isdigit() or re.fullmatch(r"/dev/video\d+", source):
        return "camera"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source):
        return "url"
    return "file"


class FrameReader(Protocol):
    """One opened source. `fps` is its native rate, 0.0 where unknown (cameras, streams)."""

    fps: float

    def read(self) -> np.ndarray | None: ...  # None: the source ended or failed
    def close(self) -> None: ...


class DemoReader:
    """Endless, deterministic 640×480 BGR frames: scikit-image's public-domain astronaut portrait
    drifting and zooming slowly (periods of 8 s and 12 s at 30 fps), face always in view."""

    fps = 30.0

    def __init__(self, width: int = 640, height: int = 480) -> None:
        from skimage import data  # imported here: only the demo needs scikit-image

        self._portrait = np.ascontiguousarray(data.astronaut()[:, :, ::-1])  # RGB → BGR
        self._size = (width, height)
        self._index = 0

    def read(self) -> np.ndarray:
        t = self._index / self.fps
        self._index += 1
        width, height = self._size
        zoom = height / self._portrait.shape[0] * (1.0 + 0.12 * math.sin(2 * math.pi * t / 12))
        dx = (width - zoom * self._portrait.shape[1]) / 2 + 60 * math.sin(2 * math.pi * t / 8)
        dy = (height - zoom * self._portrait.shape[0]) / 2 + 15 * math.sin(2 * math.pi * t / 6)
        matrix = np.array([[zoom, 0.0, dx], [0.0, zoom, dy]], dtype=np.float64)
        return cv2.warpAffine(self._portrait, matrix, self._size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    def close(self) -> None:
        pass


class VideoReader:
    """OpenCV decoding of a camera, a file or a URL; raises SourceUnavailable when it cannot open."""

    def __init__(self, source: str, kind: SourceKind, stall_timeout: float = 10.0) -> None:
        if kind == "camera":
            target: int | str = int(source) if source.isdigit() else source
            self._capture = cv2.VideoCapture(target)
        elif kind == "url":
            ms = int(stall_timeout * 1000)
            self._capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        else:
            self._capture = cv2.VideoCapture(source) if Path(source).is_file() else cv2.VideoCapture()
        if not self._capture.isOpened():
            raise SourceUnavailable(f"{source}: cannot open video")
        native = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(native) if kind == "file" and 0 < native < 1000 else 0.0

    def read(self) -> np.ndarray | None:
        ok, image = self._capture.read()
        return image if ok and image is not None and image.size else None

    def close(self) -> None:
        self._capture.release()


def open_reader(source: str, stall_timeout: float = 10.0) -> FrameReader:
    kind = source_kind(source)
    return DemoReader() if kind == "demo" else VideoReader(source, kind, stall_timeout)


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """`fps` 0 means unpaced. `max_frames` 0 means no limit. `realtime` paces files and the demo at their
    native rate in live mode, so that they stand in for a camera. `loop` restarts a file at its end."""

    source: str = "demo"
    mode: Mode = "live"
    fps: float = 0.0
    max_frames: int = 0
    realtime: bool = True
    loop: bool = False
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    stall_timeout: float = 10.0

    def __post_init__(self) -> None:
        checks = [
            ("mode", self.mode in ("replay", "live"), "'replay' or 'live'"),
            ("fps", 0.0 <= self.fps <= 240.0, "0-240 (0 = unpaced)"),
            ("max_frames", self.max_frames >= 0, ">= 0 (0 = no limit)"),
            ("reconnect_initial", 0.0 < self.reconnect_initial <= 60.0, "0-60 seconds, above 0"),
            ("reconnect_max", self.reconnect_initial <= self.reconnect_max <= 3600.0,
             f"{self.reconnect_initial}-3600 seconds"),
            ("stall_timeout", 0.0 < self.stall_timeout <= 600.0, "0-600 seconds, above 0"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"capture.{name}: expected {allowed}, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """`reconnects` counts reopen attempts after a loss; `outages` counts the times it went down."""

    frames_read: int
    frames_dropped: int
    reconnects: int
    outages: int
    down: bool


class Backoff:
    """Exponential backoff delays: initial, 2×initial, … capped at `maximum`; `reset()` after success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum, self._next = initial, maximum, initial

    def next_delay(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class Pacer:
    """Sleeps so that successive `wait()` calls are at least 1/fps apart; fps 0 never sleeps."""

    def __init__(self, fps: float, stop: threading.Event) -> None:
        self._period, self._stop, self._due = (1.0 / fps if fps > 0 else 0.0), stop, 0.0

    def wait(self) -> None:
        if self._period:
            now = time.perf_counter()
            if self._due > now:
                self._stop.wait(self._due - now)
            self._due = max(self._due, now) + self._period


class Source:
    """Yields `Frame`s. Use `create(options)`, then iterate or call `read()`, then `close()`.

    `reader`: an already opened FrameReader to start from (frames from elsewhere: an embedding program, a
    test's odd frames); `options.source` still names it and is what a reopen after its end would open."""

    def __init__(self, options: CaptureOptions, reader: FrameReader | None = None) -> None:
        self.options = options
        self.kind = source_kind(options.source)
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._reader: FrameReader | None = reader
        self._read = self._dropped = self._reconnects = self._outages = 0
        self._down, self._ended = False, False
        self._pacer = Pacer(options.fps, self._stop)
        if reader is None and self.kind in ("file", "demo"):  # a bad file fails now, not in a thread
            try:
                self._reader = open_reader(options.source)
            except SourceUnavailable as exc:
                raise UserError(str(exc)) from None
        # The rate the file or demo was made at (0.0: unknown); replay derives media time from it.
        self.native_fps = self._reader.fps if self._reader is not None else 0.0

    @classmethod
    def create(cls, options: CaptureOptions, reader: FrameReader | None = None) -> Source:
        return LiveSource(options, reader) if options.mode == "live" else ReplaySource(options, reader)

    def read(self, timeout: float | None = None) -> Frame | None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    @property
    def ended(self) -> bool:
        return self._ended

    def stats(self) -> CaptureStats:
        with self._lock:
            return CaptureStats(self._read, self._dropped, self._reconnects, self._outages, self._down)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._ended = True
            self._lock.notify_all()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_image(self, backoff: Backoff) -> np.ndarray | None:
        """The next image, reopening after an end or loss; None when done or stopped."""
        limit = self.options.max_frames
        while not self._stop.is_set() and not (limit and self._read >= limit):
            if self._reader is None:
                try:
                    self._reader = open_reader(self.options.source, self.options.stall_timeout)
                    backoff.reset()
                    with self._lock:
                        self._down = False
                except SourceUnavailable:
                    self._set_down()
                    self._stop.wait(backoff.next_delay())
                    with self._lock:
                        self._reconnects += 1
                    continue
            image = self._reader.read()
            if image is not None:
                return image
            self._reader.close()
            self._reader = None
            if self.kind == "file":
                if not self.options.loop:
                    return None  # end of file
            elif self.options.mode == "replay":
                return None  # a replayed camera or stream ended
            else:
                self._set_down()  # a live camera or stream was lost: reopen with backoff
        return None

    def _set_down(self) -> None:
        with self._lock:
            self._outages += 0 if self._down else 1
            self._down = True

    def _stamp(self, image: np.ndarray) -> Frame:
        frame = Frame(index=self._read, timestamp=time.time(), captured_at=time.perf_counter(), image=image)
        self._read += 1
        return frame

    def _release(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class ReplaySource(Source):
    """Every frame in order, in the caller's thread, nothing dropped; `fps` paces it if set."""

    def __init__(self, options: CaptureOptions, reader: FrameReader | None = None) -> None:
        super().__init__(options, reader)
        self._backoff = Backoff(options.reconnect_initial, options.reconnect_max)

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame (`timeout` is ignored: replay blocks), or None once the source is done."""
        image = None if self._ended else self._next_image(self._backoff)
        if image is None:
            self._ended = True
            self._release()
            return None
        self._pacer.wait()
        with self._lock:
            return self._stamp(image)

    def close(self) -> None:
        super().close()
        self._release()


class LiveSource(Source):
    """A reader thread keeps the newest frame in a one-slot buffer; overwritten frames are dropped."""

    def __init__(self, options: CaptureOptions, reader: FrameReader | None = None) -> None:
        super().__init__(options, reader)
        self._slot: Frame | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"capture:{options.source}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = Backoff(self.options.reconnect_initial, self.options.reconnect_max)
        native = Pacer(getattr(self._reader, "fps", 0.0) if self.options.realtime else 0.0, self._stop)
        try:
            while (image := self._next_image(backoff)) is not None:
                native.wait()
                with self._lock:
                    self._dropped += self._slot is not None
                    self._slot = self._stamp(image)
                    self._lock.notify_all()
        except BaseException as exc:  # surfaced by read(): a reader thread never dies silently
            self._error = exc
        finally:
            self._release()
            with self._lock:
                self._ended = True
                self._lock.notify_all()

    def read(self, timeout: float | None = None) -> Frame | None:
        """The newest frame (waiting up to `timeout`), or None on timeout or once the source is done."""
        self._pacer.wait()
        with self._lock:
            self._lock.wait_for(lambda: self._slot is not None or self._ended, timeout)
            if self._error is not None:
                raise RuntimeError(f"{self.options.source}: capture failed: {self._error}") from self._error
            frame, self._slot = self._slot, None
            return frame

    def close(self) -> None:
        super().close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
