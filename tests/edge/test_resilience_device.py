"""Issue 4, the device's side: a lost source and the watchdog (item 3), a bad model (4), a bad config (5),
odd frames (7). Each fault goes through `fer-edge` as its own process, or the real pipeline for odd frames;
the broker's side (items 1, 2, 6) is in test_resilience.py."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.capture import CaptureOptions, Source
from edge.config import load_config
from edge.daemon import build_inference
from edge.pipeline import Pipeline, PipelineOptions
from edge.smooth import Smoother, SmootherOptions
from edge.stats import Stats
from edge.track import Tracker
from tests.broker import Mosquitto
from tests.edge.test_classify import BAD_MODELS
from tests.edge.test_mqtt import Subscriber
from tests.edge.test_pipeline import Recorder
from tests.edge.test_resilience import CLIP_FRAMES, DEVICE, cli, mqtt_table, one_line, received, topic
from tests.edge.test_service import SystemdSocket
from tests.fer_process import FerEdge, toml_config, wait_until
from tests.shared import hamilton_clip

# 3. Lost source


class Notifications:
    """A real notify socket, drained while the daemon runs (as systemd does): (arrival time, field)."""

    def __init__(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="fer-")  # short: AF_UNIX paths are limited to 108 bytes
        self.socket = SystemdSocket(f"{self._folder}/notify")
        self.fields: list[tuple[float, str]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._done.is_set():
            for message in self.socket.messages(0.1):
                self.fields += [(time.monotonic(), field) for field in message.split("\n")]

    def since(self, moment: float, field: str) -> list[str]:
        return [text for at, text in list(self.fields) if at >= moment and text.startswith(field)]

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.socket.sock.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def test_3_a_deleted_source_is_retried_the_daemon_stays_up_and_the_watchdog_starves(
        edge_model: Path, mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Fails if a looping file source that is deleted kills the daemon, is not retried with backoff, is not
    shown as down in the retained state, the stats topic and systemd's STATUS, or if WATCHDOG=1 keeps
    arriving while no frame flows (systemd would then never restart a stalled service); and if frames,
    pings and the state's `source: up` do not return once the file is back."""
    clip = tmp_path / "clip.mp4"
    shutil.copy(hamilton_clip(), clip)
    config = toml_config(tmp_path, edge_model, source={"loop": True, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
                         mqtt=mqtt_table(mosquitto))
    stats = Subscriber(mosquitto, topic("stats"))
    state = Subscriber(mosquitto, topic("state"))
    systemd = Notifications()
    daemon = FerEdge("run", "--source", clip, "--config", config, cwd=tmp_path,
                     env={"NOTIFY_SOCKET": systemd.socket.address, "WATCHDOG_USEC": "1000000"})  # pings every 0.5 s

    def source() -> dict[str, Any]:
        snapshots = received(stats.messages, "stats")
        return snapshots[-1]["source"] if snapshots else {"frames_read": 0, "down": False}

    def drained() -> bool:  # the frames read before the loss have left the pipeline: two snapshots agree
        last = received(stats.messages, "stats")[-2:]
        frames = [snapshot["counters"].get("frames", 0) for snapshot in last]
        return len(last) == 2 and last[-1]["source"]["down"] and frames[0] == frames[1]

    try:
        assert wait_until(lambda: source()["frames_read"] > CLIP_FRAMES, 120), daemon.describe()  # it looped
        assert systemd.since(0, "READY=1") and systemd.since(0, "WATCHDOG=1")
        clip.unlink()
        assert wait_until(lambda: source()["down"], 60), daemon.describe()
        assert wait_until(drained, 60), daemon.describe()
        quiet = time.monotonic()
        time.sleep(4.0)  # eight watchdog intervals without a frame
        assert daemon.running, daemon.describe()
        assert systemd.since(quiet + 1.0, "WATCHDOG=1") == [], "no frames, no pings"
        assert any("source down" in text for text in systemd.since(0, "STATUS="))
        assert wait_until(lambda: (received(state.messages, "state") or [{}])[-1].get("source") == "down", 10)
        assert source()["reconnects"] >= 3 and source()["outages"] == 1
        shutil.copy(hamilton_clip(), clip)
        assert wait_until(lambda: not source()["down"], 60), daemon.describe()
        assert wait_until(lambda: (received(state.messages, "state") or [{}])[-1].get("source") == "up", 10)
        back = time.monotonic()
        assert wait_until(lambda: bool(systemd.since(back, "WATCHDOG=1")), 30), "pings resume with the frames"
    finally:
        code = daemon.terminate()
        systemd.close()
        stats.close()
        state.close()
    assert code == 0, daemon.describe()
    assert len(daemon.logged(r"source .*clip\.mp4 is down: retrying with backoff")) == 1
    assert len(daemon.logged(r"source .*clip\.mp4 is back")) == 1
    assert "STOPPING=1" in [field for _, field in systemd.fields]


class MjpegStream:
    """A real MJPEG-over-HTTP stream (what IP cameras serve) that the test can make stall: the connection
    stays open and nothing more arrives, like a camera that hangs or a network path that goes silent."""

    def __init__(self) -> None:
        self.stalled = threading.Event()
        jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 128, np.uint8))[1].tobytes()
        part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg)
        stalled = self.stalled

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                with contextlib.suppress(OSError):
                    while True:
                        if not stalled.is_set():
                            self.wfile.write(part)
                        time.sleep(0.05)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_3_a_stalled_stream_is_lost_after_stall_timeout_and_reopened() -> None:
    """Fails if a stream that stops delivering frames without closing (FFmpeg decoding real MJPEG over HTTP)
    blocks the reader forever instead of counting as lost after `stall_timeout_s`, or if it is not reopened
    with backoff and does not deliver again once the stream flows."""
    stream = MjpegStream()
    options = CaptureOptions(source=stream.url, mode="live", stall_timeout=2.0, reconnect_initial=0.2,
                             reconnect_max=0.5)
    try:
        with Source.create(options) as source:
            assert source.read(timeout=30) is not None
            stream.stalled.set()
            assert wait_until(lambda: source.stats().down, 60), source.stats()
            assert wait_until(lambda: source.stats().reconnects >= 1, 60), "a reopen that stalled too, retried"
            assert not source.ended
            stream.stalled.clear()
            assert wait_until(lambda: not source.stats().down, 60), source.stats()
            assert source.read(timeout=30) is not None
            stats = source.stats()
    finally:
        stream.close()
    assert stats.outages == 1 and stats.reconnects >= 1


# 4. Bad model


@pytest.mark.parametrize(("make", "message"), [(make, message) for _, make, message in BAD_MODELS],
                         ids=[name for name, _, _ in BAD_MODELS])
def test_4_a_bad_model_is_one_line_naming_the_file_and_exit_2(int8_model: Path, float_model: Path, tmp_path: Path,
                                                             make: Callable[[Path, Path, Path], Path],
                                                             message: str) -> None:
    """Fails if `fer-edge check-config --model BAD` prints a traceback, more than one line, a line that does not
    name the file, or exits with anything but 2 (systemd's RestartPreventExitStatus=2 relies on it)."""
    model = make(int8_model, float_model, tmp_path)
    expected = message.format(model=re.escape(str(model)), manifest=re.escape(str(model.with_suffix(".json"))))
    result = cli("check-config", "--model", model, "--config",
                 toml_config(tmp_path, int8_model, mqtt={"enabled": False}), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert re.match(f"fer-edge: {expected}", one_line(result)), result.stderr


def test_4_replay_with_a_truncated_model_stops_before_reading_a_frame(edge_model: Path, tmp_path: Path) -> None:
    """Fails if `fer-edge replay` with a truncated .tflite whose manifest matches it gets past loading."""
    model = tmp_path / "cut.tflite"
    model.write_bytes(edge_model.read_bytes()[:30_000])
    manifest = json.loads(edge_model.with_suffix(".json").read_text())
    manifest["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    model.with_suffix(".json").write_text(json.dumps(manifest))
    result = cli("replay", hamilton_clip(), "--model", model, "--events-out", tmp_path / "events.jsonl",
                 "--config", toml_config(tmp_path, edge_model, mqtt={"enabled": False}), cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result).startswith(f"fer-edge: {model}: not a valid TFLite model")
    assert not (tmp_path / "events.jsonl").exists()


# 5. Bad config

BAD_CONFIGS = [
    ("unknown key", '[mqtt]\nhots = "broker"\n', [], "{path}: mqtt.hots: unknown key"),
    ("wrong type", '[mqtt]\nqos = "1"\n', [], '{path}: mqtt.qos: expected an integer 0-2, got "1"'),
    ("port out of range", "[mqtt]\nport = 70000\n", [], "{path}: mqtt.port: expected an integer 1-65535, got 70000"),
    ("--mqtt-port out of range", "", ["--mqtt-port", "0"], "{path}: mqtt.port: expected an integer 1-65535, got 0"),
    ("fps out of range", "[source]\nfps = 500\n", [], "{path}: source.fps: expected a number > 0 and <= 120, got 500"),
    ("--fps out of range", "", ["--fps", "0"], "{path}: source.fps: expected a number > 0 and <= 120, got 0.0"),
    ("unreadable tls file", '[mqtt]\ntls_ca = "nowhere/ca.pem"\n', [],
     "{path}: mqtt.tls_ca: cannot read {folder}/nowhere/ca.pem (No such file or directory)"),
    ("tls file that is no certificate", '[mqtt]\ntls_ca = "notes.txt"\n', [],
     "mqtt.tls_ca: cannot use {folder}/notes.txt"),
    ("bad toml syntax", '[device]\nname = "hall"\n\n[mqtt]\nport = = 1\n', [], "{path}: line 5: invalid value"),
]


@pytest.mark.parametrize(("text", "flags", "message"), [case[1:] for case in BAD_CONFIGS],
                         ids=[case[0] for case in BAD_CONFIGS])
def test_5_fer_edge_run_refuses_a_bad_config_in_one_line_with_exit_2(edge_model: Path, tmp_path: Path, text: str,
                                                                     flags: list[str], message: str) -> None:
    """Fails if the daemon itself (`fer-edge run`, what systemd starts) gets past a bad config, prints more
    than one line or a traceback, does not name the key path (or the TOML line), or exits with anything but
    2, the code that RestartPreventExitStatus=2 keeps from restart loops."""
    path = tmp_path / "config.toml"
    path.write_text(text)
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    result = cli("run", "--config", path, "--model", edge_model, "--source", "demo", *flags, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert line.startswith("fer-edge: " + message.format(path=path, folder=tmp_path)), line


def test_5_check_config_refuses_a_tls_file_that_is_no_certificate(edge_model: Path, tmp_path: Path) -> None:
    """Regression: `check-config` said ok for a tls_ca that is no certificate, and `run` refused it only
    after loading both models, under a screen of runtime log lines."""
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    path = tmp_path / "config.toml"
    path.write_text('[mqtt]\ntls_ca = "notes.txt"\n')
    result = cli("check-config", "--config", path, "--model", edge_model, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"fer-edge: mqtt.tls_ca: cannot use {tmp_path}/notes.txt: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# 7. Odd frames and faces


class Frames:
    """A FrameReader over frames made here: what a driver or a broken decoder could hand over."""

    fps = 30.0

    def __init__(self, images: list[np.ndarray]) -> None:
        self._images = list(images)

    def read(self) -> np.ndarray | None:
        return self._images.pop(0) if self._images else None

    def close(self) -> None:
        pass


def test_7_odd_frames_are_skipped_or_converted_and_counted_in_the_stats(edge_model: Path) -> None:
    """Fails if an empty, gray, 4-channel, 4K or float frame, or a face cut by the frame's edge or shrunk to
    10 px, stops the pipeline, or if what happened to such frames is missing from the stats snapshot (the
    payload of the stats topic)."""
    inference = build_inference(load_config(None, {"classifier.model": str(edge_model), "mqtt.enabled": False}))
    capture = cv2.VideoCapture(str(hamilton_clip()))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 120)
    ok, image = capture.read()
    capture.release()
    faces = inference.detector.detect(image)
    assert ok and faces, "frame 120 of the clip shows a face"
    box = faces[0].box
    odd = [image, np.zeros((0, 0, 3), np.uint8), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY),
           cv2.cvtColor(image, cv2.COLOR_BGR2BGRA), cv2.resize(image, (3840, 2160)), image.astype(np.float32),
           np.ascontiguousarray(image[:, box.x + box.w // 2:]), cv2.resize(image, None, fx=10 / box.w, fy=10 / box.w),
           image]
    source = Source.create(CaptureOptions(source="odd-frames", mode="replay"), reader=Frames(odd))
    smoother = Smoother(SmootherOptions(labels=inference.labels, device=DEVICE))
    pipeline = Pipeline(source, inference, Tracker(), smoother, Recorder(), Stats(), PipelineOptions(mode="replay"))
    summary = pipeline.run()
    counters = summary.stats["counters"]
    assert summary.failed is None
    assert summary.frames == len(odd) - 2, "the empty and the float frame are skipped, the rest processed"
    assert {name: counters.get(name) for name in ("frames_empty", "frames_unsupported", "frames_gray", "frames_bgra",
                                                  "frames_downscaled")} == dict.fromkeys(
        ("frames_empty", "frames_unsupported", "frames_gray", "frames_bgra", "frames_downscaled"), 1)
    assert summary.stats["source"]["frames_read"] == len(odd)
