"""Soak: `fer-edge run` for a long time on a looping video, with its memory, threads and open files sampled.

    .venv/bin/python benchmarks/soak.py --minutes 30 --out benchmarks/results/soak.json

The daemon runs as its own process, as systemd runs it: `fer-edge run` on the hamilton clip with
`[source] loop = true` (each loop reopens the file, and tracks start and end again), publishing events,
state and stats at QoS 1 to a mosquitto that this script starts on a free port (or to --mqtt-host and
--mqtt-port). Every --interval seconds it samples the daemon's RSS, thread count and open file descriptors
with psutil, prints the sample as one JSON line, and rewrites the report at --out, so a run cut short still
leaves its figures. At the end it stops the daemon with SIGTERM, as systemd would.

The summary covers the samples after --warmup: RSS growth (last minus first, and the least-squares slope
per hour), the range of threads and of open files, frames and events processed, and whether a
`fer-trainer` process shared the machine (`under_training_load`), since that slows the daemon down.
Exit code: 0 when the daemon ran to the end and stopped with 0, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import psutil

REPO = Path(__file__).resolve().parents[1]
CLIP = Path(os.environ.get("FER_SHARED", REPO.parent / "shared")) / "media" / "short_hamilton_clip.mp4"


@dataclass(frozen=True, slots=True)
class Sample:
    t_s: float  # seconds since the daemon started
    rss_mb: float
    threads: int
    fds: int
    frames: int  # processed so far, from the daemon's periodic log line
    events: int  # written to stdout so far


class Daemon:
    """`fer-edge run` with its stdout (events) counted and its stderr (log) scanned as they come."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=workdir,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_",
                                                                                                      "WATCHDOG_"))})
        self.events = self.frames = 0
        self.log_tail: list[str] = []
        self.tracebacks = 0
        self._threads = [threading.Thread(target=self._stdout, daemon=True),
                         threading.Thread(target=self._stderr, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _stdout(self) -> None:
        for _ in iter(self._stream(self.process.stdout).readline, ""):
            self.events += 1

    def _stderr(self) -> None:
        for line in iter(self._stream(self.process.stderr).readline, ""):
            if match := re.search(r"source (?:up|down), (\d+) frames", line):
                self.frames = int(match.group(1))
            self.tracebacks += line.startswith("Traceback")
            self.log_tail = [*self.log_tail[-19:], line.rstrip()]

    @staticmethod
    def _stream(stream: IO[str] | None) -> IO[str]:
        assert stream is not None
        return stream

    def stop(self, timeout: float = 120.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        for thread in self._threads:
            thread.join(10)
        return code


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    """mosquitto on a free port of 127.0.0.1, for the length of the soak."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n" + ("user root\n" if os.geteuid() == 0 else ""))
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return broker, port
        except OSError:
            time.sleep(0.05)
    broker.kill()
    raise SystemExit(f"soak: mosquitto did not listen on {port}")


def write_config(folder: Path, args: argparse.Namespace, host: str, port: int) -> Path:
    model = f'[classifier]\nmodel = "{args.model.resolve()}"\n' if args.model else ""
    mqtt = (f'enabled = true\nhost = "{host}"\nport = {port}\nstats_interval = {args.interval:g}\n'
            if port else "enabled = false\n")
    path = folder / "config.toml"
    path.write_text(f'[device]\nname = "soak"\n[source]\nsource = "{args.source.resolve()}"\nloop = true\n'
                    f"{model}[mqtt]\n{mqtt}[log]\nlevel = \"info\"\n")
    return path


def training_running() -> bool:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if any("fer-trainer" in part for part in cmdline) and "fit" in cmdline:
            return True
    return False


def slope_per_hour(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time, MB per hour (0 with fewer than two samples)."""
    if len(samples) < 2:
        return 0.0
    ts = [s.t_s for s in samples]
    mean_t, mean_r = sum(ts) / len(ts), sum(s.rss_mb for s in samples) / len(samples)
    spread = sum((t - mean_t) ** 2 for t in ts)
    return 3600.0 * sum((s.t_s - mean_t) * (s.rss_mb - mean_r) for s in samples) / spread if spread else 0.0


def summarise(samples: list[Sample], warmup_s: float) -> dict[str, Any]:
    after = [s for s in samples if s.t_s >= warmup_s]
    if not after:
        return {"samples_after_warmup": 0}
    first, last = after[0], after[-1]
    wall = last.t_s - first.t_s
    return {
        "samples_after_warmup": len(after),
        "rss_mb_after_warmup": first.rss_mb, "rss_mb_end": last.rss_mb, "rss_mb_max": max(s.rss_mb for s in after),
        "rss_growth_mb": round(last.rss_mb - first.rss_mb, 2), "rss_slope_mb_per_h": round(slope_per_hour(after), 2),
        "threads_min": min(s.threads for s in after), "threads_max": max(s.threads for s in after),
        "fds_min": min(s.fds for s in after), "fds_max": max(s.fds for s in after),
        "frames": last.frames, "events": last.events,
        "fps_after_warmup": round((last.frames - first.frames) / wall, 2) if wall > 0 else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the daemon runs (default 30)")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds left out of the summary (default 120)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--source", type=Path, default=CLIP, help="video looped by the daemon (the hamilton clip)")
    parser.add_argument("--model", type=Path, help="emotion model (default: the config's, the shipped model)")
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=None, help="an existing broker (default: start mosquitto)")
    parser.add_argument("--no-mqtt", action="store_true", help="do not publish at all")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"{args.source}: no such video (set FER_SHARED or pass --source)")

    with tempfile.TemporaryDirectory(prefix="fer-soak-") as tmp:
        folder = Path(tmp)
        broker, port = (None, 0) if args.no_mqtt else (
            (None, args.mqtt_port) if args.mqtt_port else start_broker(folder))
        daemon = Daemon(write_config(folder, args, args.mqtt_host, port), folder)
        process = psutil.Process(daemon.process.pid)
        started, samples, loaded = time.monotonic(), [], False
        report: dict[str, Any] = {}
        try:
            while (elapsed := time.monotonic() - started) < args.minutes * 60 and daemon.process.poll() is None:
                time.sleep(min(args.interval, max(0.0, args.minutes * 60 - elapsed)))
                with process.oneshot():
                    sample = Sample(round(time.monotonic() - started, 1), round(process.memory_info().rss / 2**20, 2),
                                    process.num_threads(), process.num_fds(), daemon.frames, daemon.events)
                samples.append(sample)
                loaded = loaded or training_running()
                print(json.dumps(asdict(sample)), flush=True)
                report = {"minutes": args.minutes, "warmup_s": args.warmup, "interval_s": args.interval,
                          "source": str(args.source), "mqtt": bool(port), "cpu_count": os.cpu_count(),
                          "under_training_load": loaded, "summary": summarise(samples, args.warmup),
                          "samples": [asdict(s) for s in samples]}
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(report, indent=1) + "\n")
        except psutil.NoSuchProcess:
            pass
        finally:
            ran_to_end = daemon.process.poll() is None
            code = daemon.stop()
            if broker is not None:
                broker.terminate()
                broker.wait(10)
        report |= {"daemon_exit_code": code, "ran_to_end": ran_to_end, "tracebacks": daemon.tracebacks,
                   "log_tail": daemon.log_tail}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps({"summary": report.get("summary"), "daemon_exit_code": code, "ran_to_end": ran_to_end,
                          "under_training_load": loaded}), flush=True)
    return 0 if ran_to_end and code == 0 and not daemon.tracebacks else 1


if __name__ == "__main__":
    sys.exit(main())
