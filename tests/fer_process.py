"""`fer-edge` as a background process for fault tests: its output is collected line by line as it comes,
so a test can wait for a log line, inject a fault (stop the broker, delete the source, kill -9) and go on."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def wait_until(condition: Callable[[], bool], limit: float = 60.0, step: float = 0.05) -> bool:
    """Poll until `condition` holds or `limit` seconds pass: a hang guard, never a speed assertion."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def toml_config(folder: Path, model: Path, **sections: Mapping[str, object]) -> Path:
    """`folder`/config.toml with the emotion model and one table per keyword (`mqtt={"port": 1883}`)."""

    def value(item: object) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        return json.dumps(str(item) if isinstance(item, Path) else item)

    tables = {"device": {"name": "test-cam"}, "classifier": {"model": model}, **sections}
    lines = [f"[{name}]\n" + "".join(f"{key} = {value(item)}\n" for key, item in table.items())
             for name, table in tables.items()]
    path = folder / "config.toml"
    path.write_text("".join(lines))
    return path


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines written so far (a partly written last line is left out)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


class FerEdge:
    """`python -m edge ARGS` in `cwd`, without systemd's variables unless given in `env`."""

    def __init__(self, *args: str | Path, cwd: Path, env: Mapping[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES} | dict(env or {})
        self.args = [str(arg) for arg in args]
        self.process = subprocess.Popen([sys.executable, "-m", "edge", *self.args], cwd=cwd, env=environ,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        for line in iter(stream.readline, ""):
            lines.append(line.rstrip("\n"))

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def logged(self, pattern: str) -> list[str]:
        """stderr lines that match the regular expression `pattern`."""
        return [line for line in list(self.stderr) if re.search(pattern, line)]

    def wait_logged(self, pattern: str, limit: float = 120.0) -> bool:
        """Wait until a stderr line matches `pattern`; False if the process exits or `limit` passes first."""
        wait_until(lambda: bool(self.logged(pattern)) or not self.running, limit)
        return bool(self.logged(pattern))

    def wait(self, limit: float = 180.0) -> int:
        code = self.process.wait(limit)
        for reader in self._readers:
            reader.join(10)
        return code

    def terminate(self, limit: float = 60.0) -> int:
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(limit)

    def kill(self) -> None:
        """SIGKILL (a no-op once it has exited): no handler runs, no clean exit, the socket just closes."""
        if self.running:
            self.process.kill()
        self.process.wait(30)

    def errors(self) -> list[str]:
        """The one-line `fer-edge: ...` messages on stderr."""
        return [line for line in self.stderr if line.startswith("fer-edge:")]

    def describe(self) -> str:
        return f"fer-edge {' '.join(self.args)} -> {self.process.poll()}\n" + "\n".join(self.stderr[-40:])
