"""systemd integration without libsystemd: sd_notify datagrams, a frame-fed watchdog, stop signals.

Outside systemd (no $NOTIFY_SOCKET) every notification is a no-op, so `run` behaves the same anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator, Mapping
from types import FrameType

log = logging.getLogger(__name__)
SEND_TIMEOUT_S = 0.5


class Notifier:
    """Sends `KEY=value` lines to systemd's notify socket; a path, or '@name' for an abstract socket."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._socket: socket.socket | None = None
        self._failed = False
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send one datagram of `fields` (e.g. "READY=1", "STATUS=running"); False if not delivered."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    self._socket.settimeout(SEND_TIMEOUT_S)  # a listener that stopped reading must not stall us
                self._socket.sendto("\n".join(fields).encode(), target)
            except OSError as exc:
                if not self._failed:  # once: a vanished socket must not flood the log
                    log.warning("systemd notify socket %s: %s", self.address, exc)
                self._failed = True
                return False
        return True

    def ready(self, status: str = "running") -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between pings: half of systemd's WatchdogSec, or None when no watchdog is set for us."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2


class Watchdog:
    """Pings systemd every `interval` seconds, but only if `frame_seen()` was called since the last ping,
    so a stalled pipeline lets WatchdogSec expire and systemd restarts the service."""

    def __init__(self, notifier: Notifier, interval: float) -> None:
        if not 0 < interval <= 3600:
            raise ValueError(f"interval must be in (0, 3600] seconds, got {interval!r}")
        self.notifier, self.interval = notifier, interval
        self._seen = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def frame_seen(self) -> None:
        """Called by the pipeline for every processed frame."""
        self._seen.set()

    def pet(self) -> bool:
        """One ping if frames flowed since the last one; returns whether WATCHDOG=1 was sent."""
        if not self._seen.is_set():
            return False
        self._seen.clear()
        return self.notifier.watchdog()

    def start(self) -> Watchdog:
        self._thread = threading.Thread(target=self._run, name="fer-watchdog", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.pet()
        except Exception:  # a dead pinger means systemd restarts us: say why
            log.exception("watchdog thread failed")
            raise


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event,
                    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[threading.Event]:
    """Within the block, the first SIGTERM/SIGINT sets `stop`; a second one raises KeyboardInterrupt.
    Must be entered from the main thread; the previous handlers are restored on exit."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            raise KeyboardInterrupt(f"second {name} while stopping")
        log.info("%s received: stopping", name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
