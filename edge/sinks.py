"""Where the publish thread sends what it produces: JSON lines (console or file) and MQTT.

Every sink takes events, state and stats, and reports on `close` how many messages it could not deliver.
Only JSON text leaves through a sink: events, state and stats carry boxes and numbers, never pixels.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from edge.errors import UserError
from edge.events import EmotionEvent, State
from edge.mqtt import Publisher


class Sink(Protocol):
    def event(self, event: EmotionEvent) -> None: ...
    def state(self, state: State) -> None: ...
    def stats(self, snapshot: Mapping[str, Any]) -> None: ...
    def close(self, timeout: float) -> int: ...  # messages not delivered


class JsonLines:
    """Each event as one JSON line, written through at once (unbuffered) so that a reader sees it and a
    write error (a full disk) surfaces in the thread that wrote it. State and stats are not written."""

    def __init__(self, stream: BinaryIO, name: str, owned: bool) -> None:
        self._stream, self.name, self._owned = stream, name, owned

    @classmethod
    def stdout(cls) -> JsonLines:
        return cls(sys.stdout.buffer, "stdout", owned=False)

    @classmethod
    def file(cls, path: Path) -> JsonLines:
        try:
            stream = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise UserError(f"{path}: cannot write events ({exc.strerror or exc})") from None
        return cls(stream, str(path), owned=True)

    def event(self, event: EmotionEvent) -> None:
        data = memoryview((event.to_json() + "\n").encode())
        while data:
            written = self._stream.write(data)
            data = data[written or 0:]
        self._stream.flush()

    def state(self, state: State) -> None:
        pass

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        pass

    def close(self, timeout: float) -> int:
        if self._owned:
            self._stream.close()
        return 0


class Mqtt:
    """Events, retained state and periodic stats through the one MQTT adapter.

    `wait_offline`: on close, wait up to the timeout for delivery even while the broker is unreachable
    (replay: it may come back). Otherwise (`run` on a signal) an unreachable broker is not waited for.
    """

    def __init__(self, publisher: Publisher, wait_offline: bool = True) -> None:
        self.publisher, self._wait_offline = publisher, wait_offline

    def event(self, event: EmotionEvent) -> None:
        self.publisher.publish_event(event)

    def state(self, state: State) -> None:
        self.publisher.publish_state(state)

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        self.publisher.publish_stats(snapshot)

    def close(self, timeout: float) -> int:
        if not self._wait_offline and not self.publisher.connected:
            timeout = 0.0
        return self.publisher.close(timeout)


class Fanout:
    """Several sinks as one, in order."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = tuple(sinks)

    def event(self, event: EmotionEvent) -> None:
        for sink in self.sinks:
            sink.event(event)

    def state(self, state: State) -> None:
        for sink in self.sinks:
            sink.state(state)

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            sink.stats(snapshot)

    def close(self, timeout: float) -> int:
        return sum(sink.close(timeout) for sink in self.sinks)
