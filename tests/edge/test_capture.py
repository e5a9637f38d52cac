"""Capture against real decoding: the hamilton clip, the synthetic demo, missing and vanishing files."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge.capture import Backoff, CaptureOptions, LiveSource, ReplaySource, Source, source_kind
from edge.errors import UserError
from tests.shared import hamilton_clip

CLIP_FRAMES = 275


def wait_until(condition: Callable[[], bool], limit: float = 60.0) -> bool:
    """Poll `condition` until it holds or `limit` seconds pass (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize(("source", "kind"), [
    ("demo", "demo"), ("0", "camera"), ("/dev/video2", "camera"), ("rtsp://cam.local/stream", "url"),
    ("http://10.0.0.5:8080/video", "url"), ("clip.mp4", "file"), ("/data/dev/video2.mp4", "file"),
])
def test_source_kind(source: str, kind: str) -> None:
    assert source_kind(source) == kind


def test_replay_decodes_every_frame_of_the_clip_in_order() -> None:
    with Source.create(CaptureOptions(source=str(hamilton_clip()), mode="replay")) as source:
        assert isinstance(source, ReplaySource)
        frames = list(source)
        stats = source.stats()
    assert len(frames) == CLIP_FRAMES
    assert [f.index for f in frames] == list(range(CLIP_FRAMES))
    assert all(f.image.shape == (360, 640, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(a.captured_at <= b.captured_at for a, b in zip(frames, frames[1:], strict=False))
    assert (stats.frames_read, stats.frames_dropped, stats.down) == (CLIP_FRAMES, 0, False)
    assert source.ended


def test_live_keeps_only_the_newest_frame_and_counts_what_it_overwrote() -> None:
    """A consumer that reads only after the clip ended gets the last frame; all others were dropped."""
    options = CaptureOptions(source=str(hamilton_clip()), mode="live", realtime=False)
    with Source.create(options) as source:
        assert isinstance(source, LiveSource)
        assert wait_until(lambda: source.ended)
        frame = source.read()
        assert source.read() is None
        stats = source.stats()
    assert frame is not None and frame.index == CLIP_FRAMES - 1
    assert (stats.frames_read, stats.frames_dropped) == (CLIP_FRAMES, CLIP_FRAMES - 1)


def test_live_file_at_real_time_drops_for_a_slow_consumer_and_accounts_for_every_frame() -> None:
    options = CaptureOptions(source=str(hamilton_clip()), mode="live", max_frames=60)
    consumed = []
    with Source.create(options) as source:
        for frame in source:
            consumed.append(frame.index)
            time.sleep(0.1)  # about three frame periods of the 29.97 fps clip
        stats = source.stats()
    assert stats.frames_read == 60
    assert stats.frames_dropped > 0
    assert len(consumed) + stats.frames_dropped == stats.frames_read
    assert consumed == sorted(consumed) and consumed[-1] == 59


def test_demo_is_deterministic_moving_and_needs_no_files() -> None:
    def first(n: int) -> list[np.ndarray]:
        with Source.create(CaptureOptions(source="demo", mode="replay", max_frames=n)) as source:
            return [f.image for f in source]

    frames = first(40)
    assert len(frames) == 40
    assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for f in frames)
    assert all(np.array_equal(a, b) for a, b in zip(frames, first(40), strict=True))
    assert not np.array_equal(frames[0], frames[39])


def test_live_demo_delivers_frames_and_stops_on_close() -> None:
    source = Source.create(CaptureOptions(source="demo", mode="live"))
    frames = [source.read(timeout=10.0) for _ in range(3)]
    source.close()
    assert all(f is not None and f.image.shape == (480, 640, 3) for f in frames)
    assert [f.index for f in frames if f] == sorted(f.index for f in frames if f)
    assert source.ended


@pytest.mark.parametrize("make", [
    lambda tmp: tmp / "missing.mp4",
    lambda tmp: (tmp / "notes.mp4").write_text("not a video") and tmp / "notes.mp4",
    lambda tmp: tmp,
], ids=["missing", "text-file", "directory"])
@pytest.mark.parametrize("mode", ["replay", "live"])
def test_a_file_that_cannot_be_opened_is_a_user_error(
        tmp_path: Path, make: Callable[[Path], Path], mode: str) -> None:
    path = make(tmp_path)
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: cannot open video$"):
        Source.create(CaptureOptions(source=str(path), mode=mode))  # type: ignore[arg-type]


def test_a_looping_file_that_vanishes_is_retried_with_backoff_and_comes_back(tmp_path: Path) -> None:
    """Regression: a deleted file must mark the source down and be retried, not kill the reader thread."""
    clip = tmp_path / "clip.mp4"
    shutil.copy(hamilton_clip(), clip)
    options = CaptureOptions(source=str(clip), mode="live", loop=True, realtime=False,
                             reconnect_initial=0.05, reconnect_max=0.2)
    with Source.create(options) as source:
        assert source.read(timeout=10.0) is not None
        clip.unlink()
        assert wait_until(lambda: source.stats().down and source.stats().reconnects >= 3)
        assert not source.ended
        shutil.copy(hamilton_clip(), clip)
        before = source.stats().frames_read
        assert wait_until(lambda: not source.stats().down and source.stats().frames_read > before)
        assert source.read(timeout=10.0) is not None
        stats = source.stats()
    assert stats.outages == 1 and stats.reconnects >= 3 and not stats.down


def test_a_camera_that_is_not_there_stays_down_and_retries_without_raising() -> None:
    options = CaptureOptions(source="/dev/video97", mode="live", reconnect_initial=0.05, reconnect_max=0.1)
    with Source.create(options) as source:
        assert wait_until(lambda: source.stats().reconnects >= 3)
        assert source.read(timeout=0.2) is None
        stats = source.stats()
    assert stats.down and stats.outages == 1 and stats.frames_read == 0


def test_backoff_doubles_up_to_its_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("mode", "fast", "'replay' or 'live'"),
    ("fps", -1.0, "0-240"),
    ("fps", 1000.0, "0-240"),
    ("max_frames", -5, ">= 0"),
    ("reconnect_initial", 0.0, "0-60 seconds"),
    ("reconnect_max", 0.1, "0.5-3600 seconds"),
    ("stall_timeout", 0.0, "0-600 seconds"),
])
def test_bad_options_are_rejected_naming_the_option_range_and_value(field: str, value: object, allowed: str) -> None:
    with pytest.raises(ValueError, match=rf"^capture\.{field}: expected {allowed}.*, got {value!r}$"):
        CaptureOptions(**{field: value})  # type: ignore[arg-type]
