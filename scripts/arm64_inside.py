"""The checks that scripts/arm64_check.sh runs inside the arm64 root, with the installed venv's Python.

It checks that the install is the headless, TensorFlow-free edge install reading its models from the venv,
times imports and pipeline stages, replays the hamilton clip to a JSONL log and a mosquitto in the root, and
runs the edge tests against the installed package. Every timing is taken under qemu-user emulation on an x86
host: it says nothing about a Raspberry Pi's speed. Writes OUT/arm64_bookworm.json; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from statistics import median
from typing import Any

import cv2

import edge
from edge.classify import ClassifierOptions, EmotionClassifier
from edge.paths import INSTALLED, MODELS, ROOT

SRC = Path("/opt/fer-edge")
sys.path.append(str(SRC))  # after site-packages: the tests' helpers, never the checkout's edge/
from tests.broker import Mosquitto  # noqa: E402

BIN = Path(sys.prefix) / "bin"
CLIP = Path(os.environ.get("FER_SHARED", "/mnt/shared")) / "media" / "short_hamilton_clip.mp4"
LABEL = ("emulated: arm64 (qemu-aarch64-static in proot) on an x86_64 host; not Raspberry Pi figures. Timings on "
         "an emulated Cortex-A72 (Pi 4), tests on an emulated Cortex-A76 (Pi 5)")
PI5 = os.environ | {"QEMU_CPU": "cortex-a76"}  # qemu starts each program on the CPU its QEMU_CPU names
IMPORTS = ("cv2", "ai_edge_litert.interpreter", "mediapipe.tasks.python.vision", "edge.classify", "edge.detect",
           "edge.cli")
TESTS = ["test_paths.py", "test_classify.py", "test_detect.py", "test_capture.py", "test_infer.py",
         "test_acceptance.py", "test_mqtt.py"]
DESELECTED = {  # node id prefix under tests/edge/: why it cannot run here
    **{f"test_classify.py::{name}": "builds its model with TensorFlow, which the edge install does not have"
       for name in ("test_the_int8_model_gives", "test_one_batched_call", "test_max_batch_splits",
                    "test_gray_and_bgra", "test_every_runtime", "test_a_model_that_refuses_batching",
                    "test_a_bad_model_is")},
    "test_mqtt.py::test_unacknowledged_messages_at_a_broker_crash": "freezes the broker with SIGSTOP, which a "
                                                                    "process traced by proot ignores",
}
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  {'ok' if ok else 'FAILED'}: {what}", flush=True)
    if not ok:
        failures.append(what)


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """CMD from /tmp, never from the source tree; its result and its wall time."""
    start = time.perf_counter()
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, cwd="/tmp", env=env)
    return result, round(time.perf_counter() - start, 2)


def platform_and_install(install_s: int, venv_mb: int) -> dict[str, Any]:
    release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    dists = {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}
    libgl = sorted(p.name for p in Path("/usr/lib/aarch64-linux-gnu").glob("libGL.so*"))
    facts = {"os": release["PRETTY_NAME"].strip('"'), "machine": platform.machine(),
             "python": platform.python_version(), "glibc": platform.libc_ver()[1], "libGL": libgl,
             "install_s": install_s, "venv_mb": venv_mb, "edge_package": edge.__file__, "data_root": str(ROOT),
             "versions": {name: dists.get(name) for name in (
                 "ai-edge-litert", "opencv-python-headless", "opencv-python", "opencv-contrib-python", "mediapipe",
                 "numpy", "scikit-image", "paho-mqtt", "tensorflow", "tensorflow-cpu")}}
    versions = facts["versions"]
    check(facts["machine"] == "aarch64" and facts["python"].startswith("3.11"), f"{facts['os']}, "
          f"{facts['machine']}, Python {facts['python']}, glibc {facts['glibc']}")
    check(not libgl, f"no libGL in the root; cv2 {cv2.__version__} imported")
    check(versions["opencv-python"] is None and versions["opencv-contrib-python"] is None,
          f"headless OpenCV only ({versions['opencv-python-headless']})")
    check(versions["tensorflow"] is None and versions["tensorflow-cpu"] is None, "no TensorFlow")
    check("site-packages" in edge.__file__ and ROOT == INSTALLED, f"edge from site-packages, data in {ROOT}")
    print(f"  install {install_s} s, venv {venv_mb} MB", flush=True)
    return facts


def import_seconds() -> dict[str, float]:
    """Best of two fresh interpreters per module (the second finds the files in the page cache)."""
    code = "import importlib, sys, time; t = time.perf_counter(); importlib.import_module(sys.argv[1]); " \
           "print(time.perf_counter() - t)"
    seconds = {}
    for module in IMPORTS:
        runs = [run(BIN / "python", "-c", code, module)[0] for _ in range(2)]
        check(all(r.returncode == 0 for r in runs), f"import {module}")
        seconds[module] = round(min(float(r.stdout or "nan") for r in runs), 2)
    print(f"  import seconds: {seconds}", flush=True)
    return seconds


def pi_layout_check_config() -> dict[str, Any]:
    """The README's Pi install: /etc/fer-edge/config.toml copied from the venv, its model the shipped default."""
    etc = Path("/etc/fer-edge")
    shutil.rmtree(etc, ignore_errors=True)
    etc.mkdir()
    shutil.copy(INSTALLED / "config.toml", etc / "config.toml")
    result, seconds = run(BIN / "fer-edge", "check-config", "--config", etc / "config.toml")
    check(result.returncode == 0, f"fer-edge check-config --config /etc/fer-edge/config.toml ({seconds} s)")
    return {"seconds": seconds, "output": (result.stdout or result.stderr).strip()}


def classify_one_face() -> dict[str, float]:
    """Model load, then one 37 px face of the annotated photos (its first box) classified 50 times."""
    faces = CLIP.parent / "faces"
    image = next(ET.parse(faces / "training.xml").getroot().iter("image"))
    box = {k: int(v) for k, v in next(image.iter("box")).attrib.items()}
    frame = cv2.imread(str(faces / image.get("file", "")))
    face = frame[box["top"]:box["top"] + box["height"], box["left"]:box["left"] + box["width"]]
    start = time.perf_counter()
    with EmotionClassifier.create(ClassifierOptions(model=MODELS / "fer_cnn_int8.tflite")) as classifier:
        load_s = time.perf_counter() - start
        times = []
        for _ in range(50):
            start = time.perf_counter()
            classifier.classify([face])
            times.append(time.perf_counter() - start)
    return {"model_load_ms": round(load_s * 1000, 1), "classify_one_face_ms_p50": round(median(times) * 1000, 2)}


def bench(detector: str) -> dict[str, Any]:
    result, seconds = run(BIN / "fer-edge", "bench", "--source", CLIP, "--frames", "100", "--warmup", "10",
                          "--detector", detector, "--json")
    check(result.returncode == 0, f"fer-edge bench --detector {detector} ({seconds} s)")
    if result.returncode != 0:
        return {"error": result.stderr.strip()[-500:]}
    report = json.loads(result.stdout)
    return {"fps": report["fps"], "faces": report["faces"], "rss_mb": report["rss_mb"],
            "p50_ms": {stage: v["p50"] for stage, v in report["latency_ms"].items() if v["count"]},
            "p95_ms": {stage: v["p95"] for stage, v in report["latency_ms"].items() if v["count"]}}


def mediapipe_tasks_by_cpu() -> dict[str, str]:
    """The blazeface-tasks backend on each Pi's core. MediaPipe 1.2.2's library dies of SIGILL as it loads on
    an emulated Cortex-A72 (Pi 4) and works on a Cortex-A76 (Pi 5); the default backend needs no MediaPipe."""
    code = ("import cv2, sys; from edge.detect import BlazeFaceDetector; d = BlazeFaceDetector.create(); "
            "print(len(d.detect(cv2.imread(sys.argv[1]))), 'faces'); d.close()")
    outcomes = {}
    for cpu in ("cortex-a72", "cortex-a76"):
        result, seconds = run(BIN / "python", "-c", code, CLIP.parent / "faces" / "2008_001322.jpg",
                              env=os.environ | {"QEMU_CPU": cpu})
        last_error = (result.stderr.replace("\0", "").strip().splitlines() or [""])[-1]  # qemu writes a NUL
        outcomes[cpu] = result.stdout.strip() if result.returncode == 0 else f"exit {result.returncode}: {last_error}"
        print(f"  blazeface-tasks on {cpu}: {outcomes[cpu]} ({seconds} s)", flush=True)
    check(outcomes["cortex-a76"].endswith("faces"), "blazeface-tasks runs on a Cortex-A76")
    return outcomes


def replay_to_jsonl_and_mosquitto() -> dict[str, Any]:
    folder = Path("/tmp/arm64-replay")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    broker = Mosquitto(folder).start()
    config = folder / "config.toml"
    config.write_text(f'[device]\nname = "arm64-check"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
    received = folder / "received.txt"
    with received.open("w") as sink:
        subscriber = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                                       "-t", "fer/arm64-check/events"], stdout=sink)
        time.sleep(2)
        result, seconds = run(BIN / "fer-edge", "replay", CLIP, "--config", config, "--events-out",
                              folder / "events.jsonl")
        written = (folder / "events.jsonl").read_text().splitlines() if (folder / "events.jsonl").exists() else []
        deadline = time.monotonic() + 20
        while len(received.read_text().splitlines()) < len(written) and time.monotonic() < deadline:
            time.sleep(0.2)
        subscriber.terminate()
        subscriber.wait()
    broker.stop()
    got = received.read_text().splitlines()
    kinds = sorted({json.loads(line)["type"] for line in written})
    check(result.returncode == 0 and bool(written) and got == written,
          f"fer-edge replay: exit {result.returncode}, {len(written)} events {kinds} in the JSONL log, "
          f"{len(got)} received from mosquitto ({seconds} s)")
    return {"exit_code": result.returncode, "seconds": seconds, "events_written": len(written),
            "events_received": len(got), "types": kinds}


def tests(out: Path) -> dict[str, Any]:
    """The edge tests against the installed package (--import-mode=append puts the checkout after it), on a
    Cortex-A76: the MediaPipe backend they cover does not load on the A72."""
    junit = out / "junit.xml"
    junit.unlink(missing_ok=True)
    deselect = [arg for prefix in DESELECTED for arg in ("--deselect", f"tests/edge/{prefix}")]
    start = time.perf_counter()
    with subprocess.Popen([BIN / "pytest", "-p", "no:cacheprovider", "--import-mode=append", "-q", "-rfEs",
                           "--rootdir", SRC, f"--junitxml={junit}", *deselect,
                           *(SRC / "tests" / "edge" / name for name in TESTS)],
                          cwd="/tmp", env=PI5, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as pytest:
        summary = ""  # pytest's last line: "146 passed, 17 deselected in 229.33s"
        for line in pytest.stdout or []:
            print(line, end="", flush=True)
            summary = line
    suite = ET.parse(junit).getroot().find("testsuite") if junit.exists() else None
    counts = {k: int(suite.get(k, 0)) if suite is not None else 0 for k in ("tests", "failures", "errors", "skipped")}
    result = {"files": TESTS, "deselected_because": DESELECTED,
              "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
              "failed": counts["failures"] + counts["errors"], "skipped": counts["skipped"],
              "deselected": int(found.group(1)) if (found := re.search(r"(\d+) deselected", summary)) else 0,
              "seconds": round(time.perf_counter() - start)}
    check(pytest.returncode == 0 and suite is not None,
          f"pytest: {result['passed']} passed, {result['failed']} failed, {result['skipped']} skipped, "
          f"{result['deselected']} deselected (they need TensorFlow or a real SIGSTOP)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install-s", type=int, required=True, help="seconds the edge install took")
    parser.add_argument("--venv-mb", type=int, required=True, help="venv size after the edge install")
    parser.add_argument("--host", required=True, help="the x86 host, in words")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report: dict[str, Any] = {"label": LABEL, "date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "host": args.host}
    print(f"install (emulated {os.environ.get('QEMU_CPU', 'max')}):", flush=True)
    report["root"] = platform_and_install(args.install_s, args.venv_mb)
    print("timings (emulated):", flush=True)
    report["import_s"] = import_seconds()
    report["check_config"] = pi_layout_check_config()
    report["stages"] = {"classifier": classify_one_face(), "blazeface": bench("blazeface"), "haar": bench("haar")}
    print(f"  stages: {json.dumps(report['stages'])}", flush=True)
    report["blazeface_tasks"] = mediapipe_tasks_by_cpu()
    print("replay:", flush=True)
    report["replay"] = replay_to_jsonl_and_mosquitto()
    print("tests (emulated cortex-a76):", flush=True)
    report["tests"] = tests(args.out)
    report["failures"] = failures
    report["passed"] = not failures
    (args.out / "arm64_bookworm.json").write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
