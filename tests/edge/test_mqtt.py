"""The MQTT adapter against real mosquitto processes: availability and Last Will, delivery across a broker
restart, overflow accounting, bad credentials and TLS with certificates made here, discovery, privacy."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.config import MqttConfig
from edge.events import Box, EmotionEvent, State, TrackState
from edge.mqtt import Publisher, PublisherOptions
from edge.topics import TOPICS, TopicNames, topics_markdown
from tests.broker import Mosquitto
from tests.payloads import image_data_problem
from tests.shared import REPO

SCHEMA = json.loads((REPO / "edge" / "schemas" / "event.schema.json").read_text())
FAST = {"reconnect_min_s": 0.2, "reconnect_max_s": 0.8, "keepalive": 5}


class Subscriber:
    """A real paho subscriber recording (topic, text, retained) for every message."""

    def __init__(self, broker: Mosquitto, topic: str = "#", client_id: str = "", persistent: bool = False,
                 tls: dict[str, str] | None = None) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.problems: list[str] = []
        self._changed = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=not persistent)
        if tls:
            self.client.tls_set(**tls)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.3)
        self.client.connect(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        assert subscribed.wait(10), f"subscriber {client_id or topic} got no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        problem = image_data_problem(message.payload)  # privacy: checked on every payload, reported by close()
        with self._changed:
            self.problems += [f"{message.topic}: {problem}"] if problem else []
            self.messages.append((message.topic, message.payload.decode("utf-8", "replace"), bool(message.retain)))
            self._changed.notify_all()

    def wait(self, predicate: Callable[[list[tuple[str, str, bool]]], bool], timeout: float = 10.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.messages), timeout)

    def payloads(self, topic: str) -> list[str]:
        with self._changed:
            return [text for name, text, _ in self.messages if name == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        assert not self.problems, f"privacy: {self.problems[:3]}"


def retained(broker: Mosquitto, topic: str, **kwargs: object) -> str | None:
    """What a fresh subscriber gets as the retained message of `topic`."""
    subscriber = Subscriber(broker, topic, **kwargs)  # type: ignore[arg-type]
    try:
        subscriber.wait(lambda m: bool(m), timeout=2.0)
        return subscriber.payloads(topic)[-1] if subscriber.messages else None
    finally:
        subscriber.close()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def publisher(broker: Mosquitto, device: str = "hall", **options: object) -> Publisher:
    return Publisher(PublisherOptions(device, host=broker.host, port=broker.port, **{**FAST, **options}))


def event(track_id: int, kind: str = "start") -> EmotionEvent:
    return EmotionEvent(kind, track_id, "happy", 0.8, {"happy": 0.8, "sad": 0.2}, 1700000000.0 + track_id,  # type: ignore[arg-type]
                        Box(1, 2, 30, 40), "hall", track_id)


@pytest.fixture
def subscriber(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto, TopicNames("fer", "hall").subscription())
    yield sub
    sub.close()


def test_available_is_online_while_running_and_offline_after_close(mosquitto: Mosquitto) -> None:
    with publisher(mosquitto) as pub:
        assert pub.wait_online(10) and pub.flush(10) == 0
        assert retained(mosquitto, "fer/hall/available") == "online"
    assert retained(mosquitto, "fer/hall/available") == "offline"


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_events_and_state_arrive_schema_valid(mosquitto: Mosquitto, subscriber: Subscriber, qos: int) -> None:
    state = State("hall", 1700000000.5, (TrackState(1, "happy", np.float32(0.8), Box(1, 2, 30, 40)),))  # type: ignore[arg-type]
    with publisher(mosquitto, qos=qos) as pub:
        for track_id in (1, 2, 3):
            pub.publish_event(event(track_id))
        pub.publish_state(state)
        pub.publish_stats({"fps": np.float64(14.5), "counters": {"frames": np.int64(9)}})
        assert pub.wait_online(10) and pub.flush(10) == 0
        assert subscriber.wait(lambda m: len([x for x in m if x[0] == "fer/hall/events"]) == 3)
        assert pub.counters()["sent"] == 5
    events = [json.loads(text) for text in subscriber.payloads("fer/hall/events")]
    for payload in events:
        jsonschema.validate(payload, SCHEMA)
    assert [e["track_id"] for e in events] == [1, 2, 3] and events[0] == event(1).to_dict()
    assert json.loads(retained(mosquitto, "fer/hall/state") or "{}")["dominant"] == "happy"
    assert json.loads(subscriber.payloads("fer/hall/stats")[0]) == {"fps": 14.5, "counters": {"frames": 9}}


def test_last_will_is_offline_after_kill_9_and_online_after_restart(mosquitto: Mosquitto) -> None:
    code = textwrap.dedent("""
        import sys, time
        from edge.mqtt import Publisher, PublisherOptions
        pub = Publisher(PublisherOptions("victim", host=sys.argv[1], port=int(sys.argv[2]))).start()
        pub.publish("events", {"alive": True})
        print("online", pub.wait_online(20), pub.flush(20), flush=True)
        time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", code, mosquitto.host, str(mosquitto.port)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "online True 0"
        assert retained(mosquitto, "fer/victim/available") == "online"
        watcher = Subscriber(mosquitto, "fer/victim/available")
        assert watcher.wait(lambda m: m == [("fer/victim/available", "online", True)])
        child.kill()  # SIGKILL: no clean exit, the broker sees the socket close
        assert watcher.wait(lambda m: m[-1][1] == "offline")
        watcher.close()
    finally:
        child.kill()
        child.wait()
    assert retained(mosquitto, "fer/victim/available") == "offline"
    with publisher(mosquitto, "victim") as pub:
        assert pub.wait_online(10) and pub.flush(10) == 0
        assert retained(mosquitto, "fer/victim/available") == "online"


def test_broker_restart_loses_nothing_with_qos1(mosquitto: Mosquitto) -> None:
    """Messages published before, during and after a ~3 s outage all reach a persistent subscriber."""
    sub = Subscriber(mosquitto, "fer/hall/events", client_id="counter", persistent=True)
    sent: list[int] = []
    with publisher(mosquitto) as pub:
        def produce() -> None:
            for i in range(600):
                pub.publish("events", {"n": i})
                sent.append(i)
                time.sleep(0.01)

        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(1.0)
        mosquitto.stop()
        outage_counts = pub.counters()
        time.sleep(3.0)
        assert not pub.connected and pub.counters()["buffered"] > 0
        mosquitto.start()
        producer.join()
        assert pub.flush(30) == 0
        counts = pub.counters()
    seen = lambda m: {json.loads(text)["n"] for _, text, _ in m}  # noqa: E731
    assert sub.wait(lambda m: len(seen(m)) == 600, timeout=30), f"missing {sorted(set(sent) - seen(sub.messages))[:20]}"
    sub.close()
    firsts = list(dict.fromkeys(json.loads(text)["n"] for _, text, _ in sub.messages))
    assert firsts == sorted(firsts)  # in order, duplicates aside
    assert counts["dropped"] == 0 and counts["disconnects"] >= 1 and counts["connects"] >= 2
    assert counts["sent"] >= 600 and outage_counts["sent"] > 0


def test_unacknowledged_messages_at_a_broker_crash_are_sent_again(tmp_path: Path) -> None:
    """Regression: messages handed to paho but never PUBACKed were lost when the broker died (clean session)."""
    broker = Mosquitto(tmp_path, extra_conf=["allow_anonymous true", "autosave_interval 1"]).start()
    try:
        sub = Subscriber(broker, "fer/hall/events", client_id="counter", persistent=True)
        time.sleep(1.5)  # the subscription is autosaved, so it survives SIGKILL
        with publisher(broker) as pub:
            assert pub.wait_online(10)
            assert broker.process is not None
            broker.process.send_signal(signal.SIGSTOP)  # frozen: reads nothing, acknowledges nothing
            for i in range(10):
                pub.publish("events", {"n": i})
            assert wait_until(lambda: pub.counters()["inflight"] == 10)
            broker.process.kill()
            broker.process.wait()
            assert wait_until(lambda: pub.counters()["requeued"] == 10 and pub.counters()["buffered"] == 10)
            broker.start()
            assert pub.flush(20) == 0
        assert sub.wait(lambda m: len(m) >= 10)
        sub.close()
        assert [json.loads(text)["n"] for text in sub.payloads("fer/hall/events")] == list(range(10))
    finally:
        broker.stop()


def test_overflow_drops_the_oldest_counts_them_and_logs_once(mosquitto: Mosquitto,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    Subscriber(mosquitto, "fer/hall/events", client_id="late", persistent=True).close()  # session kept
    mosquitto.stop()
    with caplog.at_level(logging.INFO, logger="edge.mqtt"):
        pub = publisher(mosquitto, buffer_size=5).start()
        for i in range(12):
            pub.publish("events", {"n": i})
        assert pub.counters()["dropped"] == 7 and pub.counters()["buffered"] == 5
        assert pub.flush(0.3) == 5
        mosquitto.start()
        assert pub.close(20) == 0
    full = [r for r in caplog.records if "buffer full" in r.getMessage()]
    assert len(full) == 1 and full[0].levelno == logging.WARNING
    late = Subscriber(mosquitto, "fer/hall/events", client_id="late", persistent=True)
    assert late.wait(lambda m: len(m) == 5)
    late.close()
    assert [json.loads(text)["n"] for text in late.payloads("fer/hall/events")] == [7, 8, 9, 10, 11]


def test_close_with_broker_down_reports_unsent_within_the_timeout(mosquitto: Mosquitto) -> None:
    mosquitto.stop()
    pub = publisher(mosquitto).start()
    for i in range(3):
        pub.publish_event(event(i + 1))
    started = time.monotonic()
    assert pub.close(1.0) == 3
    assert time.monotonic() - started < 10


def test_latest_only_topics_keep_one_buffered_message(mosquitto: Mosquitto) -> None:
    mosquitto.stop()
    pub = publisher(mosquitto).start()
    for i in range(4):
        pub.publish("state", {"n": i})
        pub.publish("events", {"n": i})
    assert pub.counters()["buffered"] == 5
    mosquitto.start()
    assert pub.close(20) == 0
    assert retained(mosquitto, "fer/hall/state") == '{"n":3}'


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "cam", "s3cret"], check=True)
    passwords.chmod(0o644)
    broker = Mosquitto(tmp_path, extra_conf=["allow_anonymous false", f"password_file {passwords}"]).start()
    yield broker
    broker.stop()


def test_wrong_password_logs_once_and_retries_with_backoff(password_broker: Mosquitto,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edge.mqtt"):
        pub = publisher(password_broker, username="cam", password="wrong").start()
        time.sleep(3.0)  # backoff 0.2, 0.4, 0.8, 0.8 ...: a handful of attempts, not a busy loop
        counts = pub.counters()
        pub.publish_event(event(1))
        assert pub.close(0.2) == 1
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and re.search(r"refused the connection: Not authori[sz]ed", refused[0]), refused
    assert 2 <= counts["attempts"] <= 10 and counts["connects"] == 0 and not counts["connected"]
    with publisher(password_broker, username="cam", password="s3cret") as pub:
        assert pub.wait_online(10) and pub.connected


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a stranger CA."""
    now = dt.datetime.now(dt.UTC)

    def issue(name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool,
              san: list[x509.GeneralName] | None = None) -> tuple[x509.Name, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer_name, issuer_key = issuer or (subject, key)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(issuer_key, hashes.SHA256())
        (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (folder / f"{name}.key").chmod(0o644)  # mosquitto may drop root for its own user
        return subject, key

    ca = issue("ca", None, True)
    issue("server", ca, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    issue("client", ca, False)
    issue("stranger", None, True)
    return {name: folder / f"{name}.{ext}" for name in ("ca", "server", "client", "stranger") for ext in ("pem",)} | {
        "server_key": folder / "server.key", "client_key": folder / "client.key"}


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, dict[str, Path]]]:
    pki = make_pki(tmp_path)
    broker = Mosquitto(tmp_path, extra_conf=[
        f"cafile {pki['ca']}", f"certfile {pki['server']}", f"keyfile {pki['server_key']}",
        "require_certificate true", "allow_anonymous true"]).start()
    yield broker, pki
    broker.stop()


def test_tls_with_ca_and_client_certificate(tls_broker: tuple[Mosquitto, dict[str, Path]]) -> None:
    broker, pki = tls_broker
    tls = {"ca_certs": str(pki["ca"]), "certfile": str(pki["client"]), "keyfile": str(pki["client_key"])}
    with publisher(broker, tls_ca=pki["ca"], tls_cert=pki["client"], tls_key=pki["client_key"]) as pub:
        assert pub.wait_online(10) and pub.connected
        assert retained(broker, "fer/hall/available", tls=tls) == "online"


def test_untrusted_broker_certificate_is_logged_once_and_retried(tls_broker: tuple[Mosquitto, dict[str, Path]],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    broker, pki = tls_broker
    with caplog.at_level(logging.INFO, logger="edge.mqtt"):
        pub = publisher(broker, tls_ca=pki["stranger"], tls_cert=pki["client"], tls_key=pki["client_key"]).start()
        time.sleep(2.5)
        counts = pub.counters()
        pub.close(0.2)
    failures = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(failures) == 1 and "CERTIFICATE_VERIFY_FAILED" in failures[0], failures
    assert 2 <= counts["attempts"] <= 10 and counts["connects"] == 0


def test_home_assistant_discovery_configs_are_retained(mosquitto: Mosquitto) -> None:
    with publisher(mosquitto, device="hall.1", discovery=True) as pub:
        assert pub.wait_online(10) and pub.flush(10) == 0
    watcher = Subscriber(mosquitto, "homeassistant/#")
    assert watcher.wait(lambda m: len(m) == 4)
    watcher.close()
    configs = {topic: json.loads(text) for topic, text, retain in watcher.messages if retain}
    sensors = ("emotion", "faces", "source", "fps")
    assert set(configs) == {f"homeassistant/sensor/hall_1_{key}/config" for key in sensors}
    faces = configs["homeassistant/sensor/hall_1_faces/config"]
    assert faces["state_topic"] == "fer/hall.1/state" and faces["availability_topic"] == "fer/hall.1/available"
    assert faces["unique_id"] == "fer_edge_hall_1_faces" and faces["device"]["name"] == "hall.1"


@pytest.mark.parametrize("payload", [b"\xff\xd8jpeg", bytearray(8), np.zeros((4, 4), np.uint8),
                                     {"crop": b"\x00\x01"}, {"frame": np.zeros((2, 2))}])
def test_binary_and_image_payloads_are_refused(payload: object) -> None:
    pub = Publisher(PublisherOptions("hall"))
    with pytest.raises(TypeError, match="image or binary data"):
        pub.publish("events", payload)  # type: ignore[arg-type]
    assert pub.counters()["buffered"] == 0


def test_availability_is_not_publishable_by_callers() -> None:
    with pytest.raises(ValueError, match="published by the adapter itself"):
        Publisher(PublisherOptions("hall")).publish("available", "online")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(device="a/b"), "device must be a name without '/', '+', '#' or spaces, got 'a/b'"),
        (dict(port=0), "port must be 1-65535, got 0"),
        (dict(qos=3), "qos must be 0, 1 or 2, got 3"),
        (dict(buffer_size=0), "buffer_size must be >= 1, got 0"),
        (dict(reconnect_min_s=5.0, reconnect_max_s=1.0), "reconnect_min_s must be in (0, reconnect_max_s], got 5.0"),
        (dict(tls_cert=Path("c.pem")), "tls_key must be given together with tls_cert, got None"),
    ],
)
def test_options_are_checked_at_once(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        PublisherOptions(**{"device": "hall", **options})


def test_options_from_config_and_topics_table() -> None:
    options = PublisherOptions.from_config(MqttConfig(), "hall")
    assert (options.device, options.qos, options.buffer_size, options.flush_timeout) == ("hall", 1, 1000, 30.0)
    table = topics_markdown()
    for topic in TOPICS:
        assert topic.pattern.split("/")[-1].replace("{sensor}", "<sensor>") in table
    assert "`fer/<device>/events`" in table and "`homeassistant/sensor/<device>_<sensor>/config`" in table
    names = TopicNames("fer", "hall.1")
    assert [names.name(key) for key in ("available", "events", "state", "stats")] == [
        "fer/hall.1/available", "fer/hall.1/events", "fer/hall.1/state", "fer/hall.1/stats"]
    assert names.subscription() == "fer/hall.1/#"
    assert names.name("discovery", "faces") == "homeassistant/sensor/hall_1_faces/config"
