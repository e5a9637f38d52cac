"""sd_notify over a real AF_UNIX datagram socket bound by the test, the frame-fed watchdog, signals."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.service import Notifier, Watchdog, stop_on_signals, watchdog_interval
from tests.shared import REPO


class SystemdSocket:
    """What systemd listens on: a datagram socket; `messages()` drains what arrived."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def messages(self, wait: float = 0.3) -> list[str]:
        got = []
        self.sock.settimeout(wait)
        while True:
            try:
                got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return got
            self.sock.settimeout(0.05)


@pytest.fixture(params=["path", "abstract"])
def systemd(request: pytest.FixtureRequest) -> Iterator[SystemdSocket]:
    folder = tempfile.mkdtemp(prefix="fer-")  # short: AF_UNIX paths are limited to 108 bytes
    address = f"{folder}/notify" if request.param == "path" else f"@fer-test-{uuid.uuid4().hex}"
    server = SystemdSocket(address)
    yield server
    server.sock.close()
    if request.param == "path":
        os.unlink(address)
        os.rmdir(folder)


def test_ready_status_stopping_arrive_as_datagrams(systemd: SystemdSocket) -> None:
    notifier = Notifier(systemd.address)
    assert notifier.enabled and notifier.ready("watching") and notifier.status("source down")
    assert notifier.stopping()
    notifier.close()
    assert systemd.messages() == ["READY=1\nSTATUS=watching", "STATUS=source down", "STOPPING=1\nSTATUS=stopping"]


def test_child_process_notifies_through_its_environment(systemd: SystemdSocket) -> None:
    code = "from edge.service import Notifier; import sys; sys.exit(0 if Notifier.from_environment().ready() else 1)"
    env = {**os.environ, "NOTIFY_SOCKET": systemd.address}
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True, timeout=60)
    assert systemd.messages() == ["READY=1\nSTATUS=running"]


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled and not notifier.ready() and not notifier.watchdog()


def test_vanished_socket_is_logged_once_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(Path(tempfile.gettempdir()) / f"fer-absent-{uuid.uuid4().hex}"))
    with caplog.at_level(logging.WARNING, logger="edge.service"):
        assert [notifier.watchdog() for _ in range(3)] == [False, False, False]
    assert len(caplog.records) == 1 and "notify socket" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ) == expected


def test_watchdog_pings_only_after_frames(systemd: SystemdSocket) -> None:
    watchdog = Watchdog(Notifier(systemd.address), interval=1.0)
    assert not watchdog.pet()
    watchdog.frame_seen()
    watchdog.frame_seen()
    assert watchdog.pet() and not watchdog.pet()
    assert systemd.messages() == ["WATCHDOG=1"]


def test_watchdog_thread_stops_pinging_when_frames_stall(systemd: SystemdSocket) -> None:
    interval = 0.05
    with Watchdog(Notifier(systemd.address), interval=interval) as watchdog:
        flowing = time.monotonic() + 20 * interval
        while time.monotonic() < flowing:
            watchdog.frame_seen()
            time.sleep(interval / 5)
        assert len(systemd.messages(wait=2 * interval)) >= 2
        systemd.messages(wait=10 * interval)  # drain the one ping owed to the last frames
        assert systemd.messages(wait=10 * interval) == []  # stalled: no pings, so systemd would restart us


def test_watchdog_interval_is_checked() -> None:
    with pytest.raises(ValueError, match=r"^interval must be in \(0, 3600\] seconds, got 0$"):
        Watchdog(Notifier(None), interval=0)


def test_first_signal_sets_stop_second_interrupts_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
        with pytest.raises(KeyboardInterrupt, match="second SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGTERM) is before
