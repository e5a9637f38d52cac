"""fer-edge at its command line, as separate processes, against a real mosquitto and real paho subscribers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edge.config import ROOT
from tests.broker import Mosquitto, free_port
from tests.edge.test_service import SystemdSocket
from tests.payloads import assert_no_image_data
from tests.shared import faces_dir, hamilton_clip

FER_EDGE = [sys.executable, "-m", "edge"]
DEVICE = "test-cam"
SCHEMA = json.loads((ROOT / "edge" / "schemas" / "event.schema.json").read_text())


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    return env | extra


def fer_edge(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FER_EDGE, *args], cwd=cwd, env=env or environment(), capture_output=True, text=True,
                          timeout=timeout)


def write_config(folder: Path, model: Path, port: int | None = None, extra: str = "") -> Path:
    """A config for one test: its own device name, its model, MQTT at 127.0.0.1:`port` (None: disabled)."""
    mqtt_section = (f'enabled = true\nhost = "127.0.0.1"\nport = {port}\nflush_timeout = 10.0'
                    if port else "enabled = false")
    path = folder / "config.toml"
    path.write_text(f'[device]\nname = "{DEVICE}"\n[classifier]\nmodel = "{model}"\n[mqtt]\n{mqtt_section}\n{extra}')
    return path


class Subscriber:
    """A real paho client that records every message under `topic` (QoS 1), retained ones included."""

    def __init__(self, broker: Mosquitto, topic: str = f"fer/{DEVICE}/#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, bool(m.retain)))
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "subscription not acknowledged"

    def payloads(self, key: str) -> list[bytes]:
        return [payload for topic, payload, _ in self.messages if topic == f"fer/{DEVICE}/{key}"]

    def wait_for(self, condition: Callable[[], bool], limit: float = 60.0) -> bool:
        deadline = time.monotonic() + limit
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
        return condition()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        for _, payload, _ in self.messages:  # privacy: every payload any test received
            assert_no_image_data(payload)


def retained_available(broker: Mosquitto) -> bytes | None:
    """What a subscriber arriving now gets on `available`: the retained value."""
    late = Subscriber(broker, f"fer/{DEVICE}/available")
    late.wait_for(lambda: bool(late.messages), 5.0)
    late.close()
    return late.messages[0][1] if late.messages else None


@dataclass
class Replayed:
    result: subprocess.CompletedProcess[str]
    written: list[dict[str, Any]]
    messages: list[tuple[str, bytes, bool]]
    events: list[dict[str, Any]]
    available: list[bytes]
    retained: bytes | None


@pytest.fixture(scope="module")
def replayed(edge_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    """`fer-edge replay` of the hamilton clip at QoS 1, watched by a subscriber from before it starts."""
    folder = tmp_path_factory.mktemp("replay")
    broker = Mosquitto(folder).start()
    subscriber = Subscriber(broker)
    events_out = folder / "events.jsonl"
    result = fer_edge("replay", str(hamilton_clip()), "--events-out", str(events_out),
                      "--config", str(write_config(folder, edge_model, broker.port)), cwd=folder)
    written = [json.loads(line) for line in events_out.read_text().splitlines()] if events_out.exists() else []
    subscriber.wait_for(lambda: len(subscriber.payloads("events")) >= len(written)
                        and b"offline" in subscriber.payloads("available"), 10.0)
    subscriber.close()
    events = [json.loads(p) for p in subscriber.payloads("events")]
    yield Replayed(result, written, subscriber.messages, events, subscriber.payloads("available"),
                   retained_available(broker))
    broker.stop()


def test_replay_exits_0_and_writes_schema_valid_events(replayed: Replayed) -> None:
    assert replayed.result.returncode == 0, replayed.result.stderr
    assert replayed.written
    for event in replayed.written:
        jsonschema.validate(event, SCHEMA)
    types = {event["type"] for event in replayed.written}
    assert {"start", "end"} <= types  # `change` depends on the model's accuracy: not asserted
    assert "Traceback" not in replayed.result.stderr


def test_the_subscriber_receives_exactly_what_was_written(replayed: Replayed) -> None:
    assert replayed.events == replayed.written
    for event in replayed.events:
        jsonschema.validate(event, SCHEMA)


def test_available_is_online_while_running_and_offline_after_exit(replayed: Replayed) -> None:
    assert replayed.available[-2:] == [b"online", b"offline"]
    assert replayed.retained == b"offline"


def test_no_payload_on_any_topic_carries_image_data(replayed: Replayed) -> None:
    topics = {topic for topic, _, _ in replayed.messages}
    assert {f"fer/{DEVICE}/{key}" for key in ("available", "events", "state")} <= topics
    for _, payload, _ in replayed.messages:
        assert_no_image_data(payload)


def test_replay_of_a_missing_video_is_one_line_and_exit_2(edge_model: Path, tmp_path: Path) -> None:
    result = fer_edge("replay", str(tmp_path / "absent.mp4"), "--config", str(write_config(tmp_path, edge_model)),
                      cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"fer-edge: {tmp_path / 'absent.mp4'}: cannot open video"
    assert "Traceback" not in result.stderr


def test_replay_with_the_broker_down_reports_unsent_messages_and_exits_3(edge_model: Path, tmp_path: Path) -> None:
    """Issue 4: a replay that ends while the broker is down waits `flush_timeout`, then names what is lost."""
    config = write_config(tmp_path, edge_model, free_port())
    config.write_text(config.read_text().replace("flush_timeout = 10.0", "flush_timeout = 1.0"))
    result = fer_edge("replay", str(hamilton_clip()), "--events-out", str(tmp_path / "events.jsonl"),
                      "--config", str(config), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    written = len((tmp_path / "events.jsonl").read_text().splitlines())
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"fer-edge: (\d+) messages not delivered to MQTT broker 127\.0\.0\.1:\d+ "
                        r"within flush_timeout 1 s", last), last
    assert int(last.split()[1]) >= written > 0  # every event, plus state


def test_a_thread_that_dies_stops_the_daemon_loudly(edge_model: Path, tmp_path: Path) -> None:
    """A real fault on a real path: the events file is on a full disk (/dev/full), so the publish thread's
    first write fails. The traceback is logged once and the exit code is 1."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    result = fer_edge("replay", str(hamilton_clip()), "--events-out", "/dev/full",
                      "--config", str(write_config(tmp_path, edge_model)), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("Traceback") == 1
    assert "No space left on device" in result.stderr
    assert "fer-edge: pipeline thread 'publish' failed" in result.stderr.strip().splitlines()[-1]


def test_systemd_gets_ready_watchdog_and_stopping(edge_model: Path, tmp_path: Path) -> None:
    folder = tempfile.mkdtemp(prefix="fer-")  # short: AF_UNIX paths are limited to 108 bytes
    systemd = SystemdSocket(f"{folder}/notify")
    messages: list[str] = []
    done = threading.Event()
    drain = threading.Thread(target=lambda: [messages.extend(systemd.messages(0.1)) for _ in iter(done.is_set, True)])
    drain.start()  # like systemd, read while it runs: a datagram queue holds only ~10 messages
    try:
        env = environment(NOTIFY_SOCKET=systemd.address, WATCHDOG_USEC="100000")
        result = fer_edge("replay", str(hamilton_clip()), "--events-out", str(tmp_path / "events.jsonl"),
                          "--config", str(write_config(tmp_path, edge_model)), cwd=tmp_path, env=env)
        done.set()
        drain.join()
        messages.extend(systemd.messages())
    finally:
        done.set()
        systemd.sock.close()
        os.unlink(systemd.address)
        os.rmdir(folder)
    assert result.returncode == 0, result.stderr
    fields = [field for message in messages for field in message.split("\n")]
    assert fields.index("READY=1") < fields.index("WATCHDOG=1") < fields.index("STOPPING=1")
    assert "WATCHDOG=1" not in fields[fields.index("STOPPING=1"):], "the watchdog stops before STOPPING=1"


class Daemon:
    """`fer-edge run` in the background; stdout lines are collected as they come."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.process = subprocess.Popen([*FER_EDGE, "run", *args], cwd=cwd, env=environment(),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")))
        self._reader.start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]

    def wait_for_event(self, limit: float = 90.0) -> bool:
        deadline = time.monotonic() + limit
        while not self.lines and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return bool(self.lines)

    def terminate(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        self._reader.join(10)
        return code, self.process.stderr.read()


def test_run_on_the_demo_without_a_broker_stays_up_and_stops_cleanly(edge_model: Path, tmp_path: Path) -> None:
    """`make run` on a fresh machine: nothing listens on the MQTT port, events still reach the console."""
    daemon = Daemon("--source", "demo", "--config", str(write_config(tmp_path, edge_model, free_port())),
                    cwd=tmp_path)
    try:
        assert daemon.wait_for_event(), "no event on the console"
        time.sleep(3.0)
        assert daemon.process.poll() is None, "the daemon must keep running without a broker"
    finally:
        code, stderr = daemon.terminate()
    assert code == 0, stderr
    events = daemon.events()
    assert events[0]["type"] == "start" and events[-1]["type"] == "end"
    assert stderr.count("unreachable") == 1, "an unreachable broker is logged once, then retried quietly"
    assert "Traceback" not in stderr


def test_run_publishes_online_while_up_and_offline_after_sigterm(edge_model: Path, mosquitto: Mosquitto,
                                                                  tmp_path: Path) -> None:
    subscriber = Subscriber(mosquitto)
    daemon = Daemon("--source", "demo", "--config", str(write_config(tmp_path, edge_model, mosquitto.port)),
                    cwd=tmp_path)
    try:
        assert subscriber.wait_for(lambda: bool(subscriber.payloads("events")), 90.0), "no event over MQTT"
        assert retained_available(mosquitto) == b"online"
    finally:
        code, stderr = daemon.terminate()
    assert code == 0, stderr
    assert subscriber.wait_for(lambda: b"offline" in subscriber.payloads("available"), 10.0)
    assert retained_available(mosquitto) == b"offline"
    subscriber.close()
    published = [json.loads(p) for p in subscriber.payloads("events")]
    assert published == daemon.events() and published[-1]["type"] == "end"
    for _, payload, _ in subscriber.messages:
        assert_no_image_data(payload)


def test_analyze_prints_one_line_per_face_and_faces_0_for_an_empty_image(edge_model: Path, tmp_path: Path) -> None:
    photo = faces_dir() / "2008_001009.jpg"  # two annotated faces of 76 and 90 px
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    result = fer_edge("analyze", str(photo), str(blank), "--config", str(write_config(tmp_path, edge_model)),
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    faces = [line for line in lines if line["image"] == str(photo)]
    assert len(faces) >= 1
    for face in faces:
        assert set(face) == {"image", "box", "emotion", "confidence", "probabilities"}
        assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
        assert face["emotion"] == max(face["probabilities"], key=face["probabilities"].get)
        assert face["confidence"] == max(face["probabilities"].values())
        assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=0.01)
    assert lines[-1] == {"image": str(blank), "faces": 0}


def test_analyze_of_an_unreadable_image_is_one_line_and_exit_2(edge_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a jpeg")
    result = fer_edge("analyze", str(broken), "--config", str(write_config(tmp_path, edge_model)), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"fer-edge: {broken}: cannot read image"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("text", "args", "expected"), [
    ("[mqtt]\nprot = 1883\n", [], "mqtt.prot: unknown key"),
    ('[mqtt]\nport = "abc"\n', [], 'mqtt.port: expected an integer 1-65535, got "abc"'),
    ("[mqtt\nport = 1\n", [], ": line 1: "),
    ('[classifier]\nmodel = "missing.tflite"\n', [], "missing.tflite: model file not found"),
    ("", ["--detector", "yolo"],
     'detector.backend: expected one of "blazeface", "blazeface-tasks", "haar", got "yolo"'),
    (None, [], "cannot read (No such file or directory)"),
], ids=["unknown-key", "port-type", "toml-syntax", "missing-model", "bad-detector", "missing-file"])
def test_check_config_rejects_bad_files_in_one_line(tmp_path: Path, text: str | None, args: list[str],
                                                    expected: str) -> None:
    path = tmp_path / "bad.toml"
    if text is not None:
        path.write_text(text)
    result = fer_edge("check-config", "--config", str(path), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("fer-edge:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_accepts_the_shipped_config(edge_model: Path, tmp_path: Path) -> None:
    result = fer_edge("check-config", "--config", str(ROOT / "config.toml"), "--model", str(edge_model), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {ROOT / 'config.toml'}: ") and "detector blazeface" in result.stdout


def test_bench_reports_every_stage_as_json_and_as_a_table(edge_model: Path, tmp_path: Path) -> None:
    config = str(write_config(tmp_path, edge_model))
    result = fer_edge("bench", "--source", str(hamilton_clip()), "--frames", "8", "--warmup", "2", "--json",
                      "--config", config, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["frames"], report["warmup"], report["drops"]) == (8, 2, 0)
    assert report["fps"] > 0 and report["rss_mb"] > 0 and report["cpu_percent"] >= 0
    for stage in ("decode", "detect", "preprocess", "classify", "track", "publish", "e2e"):
        assert set(report["latency_ms"][stage]) >= {"p50", "p95", "p99", "count"}
    table = fer_edge("bench", "--source", str(hamilton_clip()), "--frames", "3", "--warmup", "0",
                     "--config", config, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    for word in ("FPS", "p95", "detect", "classify", "e2e"):
        assert word in table.stdout
