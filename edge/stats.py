"""Thread-safe run statistics: per-stage latency percentiles, rates, counters and process health.

`snapshot()` is the payload of <prefix>/<device>/stats and of `fer-edge bench --json`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import psutil

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


class Stats:
    """Record from any thread; `samples` latencies are kept per stage, rates cover `fps_window_s`."""

    def __init__(self, samples: int = 512, fps_window_s: float = 5.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if not 16 <= samples <= 100_000:
            raise ValueError(f"samples must be 16-100000, got {samples!r}")
        if not 0 < fps_window_s <= 600:
            raise ValueError(f"fps_window_s must be in (0, 600], got {fps_window_s!r}")
        self.samples, self.fps_window_s, self._clock = samples, fps_window_s, clock
        self._lock = threading.Lock()
        self._latency: dict[str, deque[float]] = {}
        self._ticks: dict[str, deque[float]] = {}
        self._counters: dict[str, int] = {}
        self._sources: dict[str, Callable[[], Mapping[str, Any]]] = {}
        self._process = psutil.Process()
        self._started = clock()
        self._cpu_mark = (self._started, time.process_time())
        self._vcgencmd = shutil.which("vcgencmd")

    def record(self, stage: str, seconds: float) -> None:
        """One latency sample of `stage`, in seconds."""
        with self._lock:
            self._latency.setdefault(stage, deque(maxlen=self.samples)).append(seconds)

    @contextlib.contextmanager
    def time(self, stage: str) -> Iterator[None]:
        """Time the body of a `with` block as one sample of `stage`."""
        start = self._clock()
        try:
            yield
        finally:
            self.record(stage, self._clock() - start)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def tick(self, name: str = "frames") -> None:
        """Count one `name` and include it in the rate of `name` per second."""
        now = self._clock()
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + 1
            ticks = self._ticks.setdefault(name, deque())
            ticks.append(now)
            self._prune(ticks, now)

    def register(self, name: str, source: Callable[[], Mapping[str, Any]]) -> None:
        """Include `source()` under `name` in every snapshot (e.g. the MQTT publisher's counters)."""
        with self._lock:
            self._sources[name] = source

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def rate(self, name: str = "frames") -> float:
        with self._lock:
            return self._rate(name, self._clock())

    def latency(self, stage: str) -> dict[str, float]:
        """p50/p95/p99/mean in milliseconds over the kept samples, and how many there are."""
        with self._lock:
            values = np.array(self._latency.get(stage, ()), dtype=np.float64) * 1000.0
        if not values.size:
            return {"count": 0}
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return {"count": int(values.size), "p50": round(float(p50), 3), "p95": round(float(p95), 3),
                "p99": round(float(p99), 3), "mean": round(float(values.mean()), 3)}

    def snapshot(self) -> dict[str, Any]:
        """Everything at once. CPU% is over the time since the previous snapshot (100 = one core)."""
        now, cpu = self._clock(), time.process_time()
        with self._lock:
            stages = sorted(self._latency)
            rates = {name: round(self._rate(name, now), 2) for name in sorted(self._ticks)}
            counters = dict(sorted(self._counters.items()))
            sources = dict(self._sources)
            (then, cpu_then), self._cpu_mark = self._cpu_mark, (now, cpu)
        wall = now - then
        memory = self._process.memory_info()
        data: dict[str, Any] = {
            "timestamp": round(time.time(), 3),
            "uptime_s": round(now - self._started, 1),
            "fps": rates.get("frames", 0.0),
            "rates": rates,
            "counters": counters,
            "latency_ms": {stage: self.latency(stage) for stage in stages},
            "cpu_percent": round(100.0 * (cpu - cpu_then) / wall, 1) if wall > 0 else 0.0,
            "cpu_count": os.cpu_count(),
            "rss_mb": round(memory.rss / 2**20, 1),
            "threads": self._process.num_threads(),
            "open_fds": self._process.num_fds(),
            "temperature_c": cpu_temperature(),
            "throttled": self._throttled(),
        }
        for name, source in sources.items():
            data[name] = dict(source())
        return data

    def _rate(self, name: str, now: float) -> float:
        ticks = self._ticks.get(name)
        if not ticks:
            return 0.0
        self._prune(ticks, now)
        if len(ticks) < 2 or ticks[-1] <= ticks[0]:
            return 0.0
        return (len(ticks) - 1) / (ticks[-1] - ticks[0])

    def _prune(self, ticks: deque[float], now: float) -> None:
        while ticks and ticks[0] < now - self.fps_window_s:
            ticks.popleft()

    def _throttled(self) -> int | None:
        """Raspberry Pi firmware throttling bits (`vcgencmd get_throttled`); None where unavailable."""
        if not self._vcgencmd:
            return None
        try:
            out = subprocess.run([self._vcgencmd, "get_throttled"], capture_output=True, text=True,
                                 timeout=2, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        match = re.search(r"throttled=(0x[0-9a-fA-F]+)", out)
        return int(match.group(1), 16) if match else None


def cpu_temperature(zone: Path = THERMAL_ZONE) -> float | None:
    """Degrees Celsius from the first thermal zone (millidegrees in sysfs); None where there is none."""
    try:
        return round(int(zone.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None
