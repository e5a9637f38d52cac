"""The one MQTT adapter: paho-mqtt 2.x behind a small publish API, with a bounded offline buffer.

Who owns a message: this adapter, until the broker acknowledges it. Messages wait in a bounded deque
(oldest dropped and counted when full) and are handed to paho only while connected, at most
`max_inflight` at a time. If the connection drops, the ones paho holds unacknowledged are taken back
(`drop_out_messages`) and put at the front of the deque, so they are sent again, in order, after the
next CONNACK. The session is clean (the broker keeps nothing for us across connects) and the client id
is stable (`fer-edge-<device>`), so a restarted daemon takes over its old connection at once. Delivery is
at least once: a message whose PUBACK was lost with the connection arrives twice.

Only one thread calls paho's publish: the sender. paho's callbacks never take this adapter's lock; they
post to an inbox that the sender drains, so lock order is always adapter → paho.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from edge.config import MqttConfig
from edge.errors import UserError
from edge.events import EmotionEvent, State
from edge.topics import TOPIC, Keep, TopicNames

log = logging.getLogger(__name__)
FLUSH_RETRY_S = 1.0  # the longest reconnect backoff while waiting for the broker at exit
# Hints appended to connection failures that contain the key.
HINTS = {
    "authori": "check mqtt.username and mqtt.password",
    "user name or password": "check mqtt.username and mqtt.password",
    "CERTIFICATE_VERIFY_FAILED": "check mqtt.tls_ca, or mqtt.tls_insecure for a host name mismatch",
}


@dataclass(frozen=True, slots=True)
class PublisherOptions:
    device: str
    host: str = "localhost"
    port: int = 1883
    topic_prefix: str = "fer"
    qos: int = 1
    username: str = ""
    password: str = ""
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_insecure: bool = False
    keepalive: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    buffer_size: int = 1000
    max_inflight: int = 20
    flush_timeout: float = 30.0
    discovery: bool = False
    discovery_prefix: str = "homeassistant"

    def __post_init__(self) -> None:
        checks = [
            ("device", bool(re.fullmatch(r"[^/+#\s]+", self.device)), "a name without '/', '+', '#' or spaces"),
            ("port", 1 <= self.port <= 65535, "1-65535"), ("qos", self.qos in (0, 1, 2), "0, 1 or 2"),
            ("keepalive", 5 <= self.keepalive <= 3600, "5-3600"),
            ("reconnect_min_s", 0 < self.reconnect_min_s <= self.reconnect_max_s, "in (0, reconnect_max_s]"),
            ("buffer_size", self.buffer_size >= 1, ">= 1"), ("max_inflight", 1 <= self.max_inflight <= 1000, "1-1000"),
            ("flush_timeout", self.flush_timeout >= 0, ">= 0"),
            ("tls_key", (self.tls_cert is None) == (self.tls_key is None), "given together with tls_cert"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def from_config(cls, config: MqttConfig, device: str) -> PublisherOptions:
        # publish_images has nothing to switch on yet: no topic carries images and every topic refuses bytes.
        fields = config.model_dump(exclude={"enabled", "stats_interval", "publish_images"})
        return cls(device=device, **fields)


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: str
    retain: bool
    keep: Keep


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic) and not isinstance(value, np.void):
        return value.item()
    raise TypeError(f"refusing to publish {type(value).__name__}: no image or binary data leaves the device "
                    "(mqtt.publish_images is off and no topic carries images)")


class Publisher:
    """Options, `start()`, publish from any thread, `close()`. Also a context manager."""

    def __init__(self, options: PublisherOptions) -> None:
        self.options = options
        self.names = TopicNames(options.topic_prefix, options.device, options.discovery_prefix)
        self._lock = threading.Condition()
        self._buffer: deque[_Message] = deque()
        self._session: deque[_Message] = deque()
        self._inflight: OrderedDict[int, _Message] = OrderedDict()
        self._inbox: deque[tuple[str, int]] = deque()  # appended by paho's thread, drained by the sender
        self._wake, self._stop = threading.Event(), threading.Event()
        self._connected = self._online = self._closing = False  # connected: CONNACK ok; online: acknowledged
        self._counts = {"sent": 0, "dropped": 0, "requeued": 0, "connects": 0, "disconnects": 0}
        self._drops_logged = False
        self._failure: BaseException | None = None
        # Written by paho's thread only: connect attempts, whether it is up, failures logged since it was.
        self._attempts, self._up, self._reasons = 0, False, set[str]()
        self._sender: threading.Thread | None = None
        self._client = self._make_client()

    def start(self) -> Publisher:
        self._client.connect_async(self.options.host, self.options.port, self.options.keepalive)
        self._client.loop_start()
        self._sender = threading.Thread(target=self._run, name="fer-mqtt-sender", daemon=True)
        self._sender.start()
        return self

    def publish_event(self, event: EmotionEvent) -> None:
        self.publish("events", event.to_dict())

    def publish_state(self, state: State) -> None:
        self.publish("state", state.to_dict())

    def publish_stats(self, snapshot: Mapping[str, Any]) -> None:
        self.publish("stats", snapshot)

    def publish(self, key: str, payload: Mapping[str, Any] | str) -> None:
        """Queue a JSON object or text for topic `key`; never blocks on the network."""
        topic = TOPIC[key]
        if topic.keep == "session":
            raise ValueError(f"topic {key!r} is published by the adapter itself")
        if isinstance(payload, str):
            text = payload
        elif isinstance(payload, Mapping):
            text = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=_jsonable)
        else:
            raise TypeError(f"{key}: payload must be a mapping or str, got {type(payload).__name__}; "
                            "no image or binary data leaves the device")
        message = _Message(self.names.name(key), text, topic.retain, topic.keep)
        with self._lock:
            if self._failure is not None:
                raise RuntimeError("MQTT sender thread failed") from self._failure
            if message.keep == "latest":
                self._buffer = deque(m for m in self._buffer if m.topic != message.topic)
            self._buffer.append(message)
            self._trim()
        self._wake.set()

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def wait_online(self, timeout: float) -> bool:
        """Wait until connected and the retained `online` is acknowledged by the broker."""
        with self._lock:
            return self._lock.wait_for(lambda: self._online or self._failure is not None, timeout) and self._online

    def counters(self) -> dict[str, Any]:
        """For the stats topic: connection, buffer and delivery counts."""
        with self._lock:
            return {"connected": self._connected, "buffered": len(self._buffer), "inflight": len(self._inflight),
                    **self._counts, "attempts": self._attempts}

    def flush(self, timeout: float) -> int:
        """Wait until every queued message is acknowledged or `timeout` passes; return how many are not."""
        self._wake.set()
        with self._lock:
            self._lock.wait_for(lambda: self._failure is not None or not self._pending(), timeout)
            return self._unsent()

    def close(self, timeout: float | None = None) -> int:
        """Flush (default `flush_timeout`), publish retained `offline`, disconnect. Returns messages unsent."""
        if self._sender is None:
            with self._lock:
                return self._unsent()
        wait = self.options.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        if wait > 0:
            self._retry_soon(wait)
        unsent = self.flush(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._closing = True  # a reconnect from now on announces `offline`, not `online`
            if self._connected:
                self._session.append(self._available("offline"))
                self._wake.set()
                self._lock.wait_for(lambda: not self._pending(), min(5.0, max(0.5, deadline - time.monotonic())))
        self._stop.set()
        self._wake.set()
        self._sender.join()
        self._sender = None
        self._client.disconnect()
        self._client.loop_stop()
        return unsent

    def _retry_soon(self, wait: float) -> None:
        """Before the final flush, while the broker is unreachable: retry at least every FLUSH_RETRY_S.

        paho may be asleep in a backoff of up to reconnect_max_s (60 s by default), longer than
        flush_timeout (30 s), and its sleep cannot be cut short. Without this, a broker that came back
        during the flush window was never tried again before the timeout, and the buffer was lost.
        Restarting paho's loop thread ends its sleep; the capped backoff applies from then on.
        """
        with self._lock:
            if self._connected or not self._pending():
                return
            waiting = self._unsent()
        o = self.options
        log.info("waiting up to %g s for MQTT broker %s:%d to take %d unsent messages", wait, o.host, o.port,
                 waiting)
        low, high = min(o.reconnect_min_s, FLUSH_RETRY_S), min(o.reconnect_max_s, FLUSH_RETRY_S)
        self._client.reconnect_delay_set(low, high)  # type: ignore[arg-type]  # floats work
        self._client.loop_stop()
        self._client.loop_start()

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The sender thread: sole caller of paho's publish.

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(0.5)
                self._wake.clear()
                with self._lock:
                    self._step()
                    self._lock.notify_all()
        except BaseException as exc:  # never die silently: publish() re-raises it
            log.exception("MQTT sender thread failed")
            with self._lock:
                self._failure = exc
                self._lock.notify_all()

    def _step(self) -> None:
        while self._inbox:
            kind, mid = self._inbox.popleft()
            if kind == "ack":
                message = self._inflight.pop(mid, None)
                if message is not None and message.keep != "session":
                    self._counts["sent"] += 1
                elif message is not None and message.payload == "online":
                    self._online = True
            elif kind == "connected":
                self._connected = True
                self._counts["connects"] += 1
                hello = [self._available("online"), *self._discovery()]
                self._session = deque([self._available("offline")] if self._closing else hello)
            elif kind == "disconnected":
                self._counts["disconnects"] += self._connected
                self._connected = self._online = False
                self._client.drop_out_messages()  # ours to resend; the broker forgot them (clean session)
                again = [m for m in self._inflight.values() if m.keep != "session"]
                self._counts["requeued"] += len(again)
                self._inflight.clear()
                self._session.clear()
                self._buffer.extendleft(reversed(again))
                self._trim()
        while self._connected and len(self._inflight) < self.options.max_inflight and (self._session or self._buffer):
            message = (self._session or self._buffer).popleft()
            info = self._client.publish(message.topic, message.payload, self.options.qos, message.retain)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                raise RuntimeError(f"paho refused a publish: {mqtt.error_string(info.rc)}")
            self._inflight[info.mid] = message  # NO_CONN: a disconnect notice follows and requeues it
        if not self._buffer and self._drops_logged:
            log.info("MQTT offline buffer delivered; %d messages dropped in total", self._counts["dropped"])
            self._drops_logged = False

    def _pending(self) -> int:
        return len(self._buffer) + len(self._session) + len(self._inflight)

    def _unsent(self) -> int:
        return len(self._buffer) + sum(m.keep != "session" for m in self._inflight.values())

    def _trim(self) -> None:
        """Drop the oldest beyond `buffer_size`. While connected, the messages that the sender can hand to
        paho at once (free in-flight slots) are not waiting for the broker and do not count: a burst (the
        `end` events of every open track at once) must not be dropped by a broker that is there."""
        room = self.options.max_inflight - len(self._inflight) - len(self._session) if self._connected else 0
        while len(self._buffer) > self.options.buffer_size + max(0, room):
            self._buffer.popleft()
            self._counts["dropped"] += 1
            if not self._drops_logged:
                log.warning("MQTT offline buffer full (%d messages): dropping the oldest, counted in stats "
                            "as mqtt.dropped", self.options.buffer_size)
                self._drops_logged = True

    def _available(self, payload: str) -> _Message:
        return _Message(self.names.name("available"), payload, True, "session")

    def _discovery(self) -> list[_Message]:
        configs = self.names.discovery() if self.options.discovery else []
        return [_Message(topic, json.dumps(config), True, "session") for topic, config in configs]

    # paho: construction and callbacks (the callbacks run on paho's thread and never take self._lock).

    def _make_client(self) -> mqtt.Client:
        o = self.options
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fer-edge-{o.device}", clean_session=True)
        client.will_set(self.names.name("available"), "offline", qos=o.qos, retain=True)  # before connecting
        if o.username:
            client.username_pw_set(o.username, o.password or None)
        if o.tls_ca or o.tls_cert:
            client.tls_set_context(self._tls_context())
            client.tls_insecure_set(o.tls_insecure)
        client.reconnect_delay_set(o.reconnect_min_s, o.reconnect_max_s)  # type: ignore[arg-type]  # floats work
        client.max_inflight_messages_set(o.max_inflight)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _tls_context(self) -> ssl.SSLContext:
        o = self.options
        try:
            context = ssl.create_default_context(cafile=str(o.tls_ca) if o.tls_ca else None)
        except (OSError, ssl.SSLError) as exc:
            raise UserError(f"mqtt.tls_ca: cannot use {o.tls_ca}: {exc}") from None
        if o.tls_cert and o.tls_key:
            try:
                context.load_cert_chain(str(o.tls_cert), str(o.tls_key))
            except (OSError, ssl.SSLError) as exc:
                raise UserError(f"mqtt.tls_cert: cannot use {o.tls_cert} with {o.tls_key}: {exc}") from None
        return context

    def _log_once(self, reason: str, what: str) -> None:
        if reason not in self._reasons:
            self._reasons.add(reason)
            hint = next((f" ({hint})" for key, hint in HINTS.items() if key in reason), "")
            log.warning("MQTT broker %s:%d %s: %s%s; retrying with backoff up to %g s", self.options.host,
                        self.options.port, what, reason, hint, self.options.reconnect_max_s)

    def _post(self, kind: str, mid: int = 0) -> None:
        self._inbox.append((kind, mid))
        self._wake.set()

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self._attempts += 1

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:  # not connected: never mark it so (Frigate's wart)
            self._log_once(str(reason), "refused the connection")
            return
        log.info("MQTT connected to %s:%d", self.options.host, self.options.port)
        self._up = True
        self._reasons.clear()
        self._post("connected")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        error = sys.exception()  # paho calls this from inside its `except OSError`
        self._log_once(str(error) if error else "connection failed", "unreachable")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self._up and not self._stop.is_set():
            log.warning("MQTT connection to %s:%d lost (%s): buffering until it is back", self.options.host,
                        self.options.port, reason)
        self._up = False
        self._post("disconnected")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._post("ack", mid)
