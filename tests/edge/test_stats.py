"""Stats: percentiles over a ring buffer, windowed rates, counters across threads, process health."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from edge.stats import Stats, cpu_temperature


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(samples=4), "samples must be 16-100000, got 4"),
        (dict(fps_window_s=0), "fps_window_s must be in (0, 600], got 0"),
    ],
)
def test_options_are_checked_at_once(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Stats(**options)


def test_percentiles_over_the_last_samples_only() -> None:
    stats = Stats(samples=100)
    for ms in range(1, 201):  # only 101..200 are kept
        stats.record("classify", ms / 1000)
    latency = stats.latency("classify")
    assert latency["count"] == 100
    assert latency["p50"] == pytest.approx(150.5)
    assert latency["p95"] == pytest.approx(195.05)
    assert latency["p99"] == pytest.approx(199.01)
    assert stats.latency("detect") == {"count": 0}


def test_time_context_records_even_when_the_body_raises() -> None:
    clock = FakeClock()
    stats = Stats(clock=clock)
    with pytest.raises(RuntimeError), stats.time("detect"):
        clock.now += 0.25
        raise RuntimeError("boom")
    assert stats.latency("detect")["p50"] == pytest.approx(250.0)


def test_rate_over_the_window_and_zero_after_it() -> None:
    clock = FakeClock()
    stats = Stats(fps_window_s=2.0, clock=clock)
    for _ in range(31):
        stats.tick("frames")
        clock.now += 0.1
    assert stats.rate("frames") == pytest.approx(10.0)
    assert stats.counter("frames") == 31
    clock.now += 5.0
    assert stats.rate("frames") == 0.0 and stats.snapshot()["fps"] == 0.0


def test_counters_are_exact_across_threads() -> None:
    stats = Stats()

    def work() -> None:
        for _ in range(5000):
            stats.count("faces")
            stats.tick("frames")
            stats.record("detect", 0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.counter("faces") == 20000 and stats.counter("frames") == 20000


def test_snapshot_is_json_with_health_and_registered_sources() -> None:
    stats = Stats()
    stats.count("dropped", 3)
    stats.record("capture", 0.002)
    stats.register("mqtt", lambda: {"dropped": 2, "connected": False})
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn CPU so the interval has some
        pass
    snapshot = stats.snapshot()
    json.dumps(snapshot)
    assert snapshot["counters"] == {"dropped": 3}
    assert snapshot["mqtt"] == {"dropped": 2, "connected": False}
    assert snapshot["latency_ms"]["capture"]["count"] == 1
    assert snapshot["cpu_percent"] > 0 and snapshot["rss_mb"] > 1 and snapshot["threads"] >= 1
    assert set(snapshot) >= {"fps", "rates", "temperature_c", "throttled", "open_fds", "uptime_s", "cpu_count"}


def test_open_fds_follow_the_process(tmp_path: Path) -> None:
    stats = Stats()
    before = stats.snapshot()["open_fds"]
    handles = [open(tmp_path / f"f{i}", "w") for i in range(10)]  # noqa: SIM115
    try:
        assert stats.snapshot()["open_fds"] >= before + 10
    finally:
        for handle in handles:
            handle.close()


@pytest.mark.parametrize(("text", "expected"), [("48312\n", 48.3), ("garbage", None)])
def test_cpu_temperature_reads_millidegrees(tmp_path: Path, text: str, expected: float | None) -> None:
    zone = tmp_path / "temp"
    zone.write_text(text)
    assert cpu_temperature(zone) == expected
    assert cpu_temperature(tmp_path / "absent") is None
