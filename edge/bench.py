"""`fer-edge bench`: the report of a replay or live run, optionally beside the `fer` library, as JSON and a table.

- replay: every frame as fast as it goes; FPS is the throughput.
- live: the source paced in real time (a file played at its own rate stands in for a camera) and read at
  `--fps`; CPU% of one core and the capture→publish latency are what count.
- `--compare-peer` runs ../shared/bench/peer_fer.py `fps` on the same video with the peer venv's Python,
  right after our run, in the same command, so that the ratio compares one machine state. The peer decodes
  every frame into memory first and times detection and classification only; our FPS includes decoding.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import psutil
from rich.table import Table

from edge.config import ROOT, Config
from edge.pipeline import Summary

STAGES = ("decode", "detect", "preprocess", "classify", "track", "publish", "e2e")
PEER_VENV = Path(os.environ.get("FER_PEER_VENV", "/tmp/fer-peer"))
PEER_SCRIPT = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared")) / "bench" / "peer_fer.py"
PEER_TIMEOUT_S = 900.0


def best_ms(items: list[Any], work: Callable[[Any], object], repeats: int, warmup: int = 0) -> float:
    """Milliseconds per item: the best of `repeats` timed passes of `work` over `items`, after `warmup`
    untimed calls, so that figures from one run compare with each other."""
    for item in items[:warmup]:
        work(item)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for item in items:
            work(item)
        best = min(best, (time.perf_counter() - started) / len(items))
    return round(best * 1000, 3)


def emit(report: dict[str, Any], out: Path | None, indent: int = 2) -> None:
    """Print a benchmark script's JSON report and, with `out`, write it there too."""
    text = json.dumps(report, indent=indent)
    print(text)
    if out:
        out.write_text(text + "\n")


@dataclass(frozen=True, slots=True)
class PeerResult:
    """The peer's own JSON line (`fps`, `frames`, `faces`), or None and a `note` saying why there is none."""

    venv: str
    command_s: float  # the peer command's wall time, TensorFlow start-up included
    result: dict[str, Any] | None = None
    note: str | None = None

    @property
    def fps(self) -> float | None:
        value = (self.result or {}).get("fps")
        return float(value) if isinstance(value, int | float) and value > 0 else None


def run_peer(video: str, venv: Path = PEER_VENV, script: Path = PEER_SCRIPT,
             timeout: float = PEER_TIMEOUT_S) -> PeerResult:
    """`<venv>/bin/python peer_fer.py fps VIDEO`; never raises: a missing peer or a failure is a note."""
    python = venv / "bin" / "python"
    if not python.is_file():
        return PeerResult(str(venv), 0.0, note=f"no peer venv at {venv} (build it: bash {script.parent}/setup_peer.sh "
                                                f"{venv}; or pass --peer-venv / set FER_PEER_VENV)")
    if not script.is_file():
        return PeerResult(str(venv), 0.0, note=f"peer script {script} not found (set FER_SHARED)")
    if not Path(video).is_file():
        return PeerResult(str(venv), 0.0, note=f"peer runs on video files only, not {video!r}")
    started = time.perf_counter()
    try:
        done = subprocess.run([str(python), str(script), "fps", video], capture_output=True, text=True,
                              timeout=timeout, check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return PeerResult(str(venv), time.perf_counter() - started, note=f"peer did not finish: {exc}")
    elapsed = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return PeerResult(str(venv), elapsed, note=f"peer exited {done.returncode}: {last}")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError:
        return PeerResult(str(venv), elapsed, note=f"peer printed no JSON: {lines[-1][:200]}")
    return PeerResult(str(venv), elapsed, result=result)


SPEED_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
                  "asimddp", "i8mm", "bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_info(path: Path = CPUINFO) -> tuple[str | None, frozenset[str] | None]:
    """The CPU's model name and feature flags (x86 `flags`, Arm `Features`) from /proc/cpuinfo; None if unknown."""
    model, flags = None, None
    try:
        for line in path.read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("model name", "Model"):
                model = model or value
            elif key in ("flags", "Features") and flags is None:
                flags = frozenset(value.split())
    except OSError:
        pass
    return model, flags


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was when they were: the 1-minute load average and
    the number of running `fer-trainer` processes (training shares the CPU and slows everything down; one
    paused with SIGSTOP for the measurement does not count). `cpu_features`
    lists the SIMD extensions that int8 and bfloat16 speed hang on (one model name covers CPUs with and
    without them)."""
    model, flags = cpu_info()
    features = [flag for flag in SPEED_FEATURES if flag in (flags or ())]
    trainers = 0
    for process in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error, TypeError):
            trainers += (process.info["status"] != psutil.STATUS_STOPPED
                         and any("fer-trainer" in part for part in process.info["cmdline"] or ()))
    return {"cpu": model or platform.processor() or platform.machine(), "cpu_features": features,
            "cpu_count": os.cpu_count(), "arch": platform.machine(),
            "python": platform.python_version(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "fer_trainer_processes": trainers}


@dataclass(frozen=True, slots=True)
class BenchReport:
    source: str
    mode: Literal["replay", "live"]
    target_fps: float | None  # live: the rate the source is read at
    detector: str
    model: str
    classifier_threads: int
    warmup: int
    frames: int
    faces: int
    fps: float
    wall_s: float
    cpu_percent: float  # process CPU time over wall time; 100 = one core
    cpu_count: int | None
    rss_mb: float
    peak_rss_mb: float
    drops: int
    latency_ms: dict[str, dict[str, float]]
    machine: dict[str, Any]
    started_at: str
    peer: dict[str, Any] | None = None  # PeerResult as a dict
    ratio: float | None = None  # our FPS / the peer's FPS

    @classmethod
    def of(cls, summary: Summary, config: Config, warmup: int, mode: Literal["replay", "live"] = "replay",
           target_fps: float | None = None, machine_state: dict[str, Any] | None = None,
           started_at: str = "") -> BenchReport:
        measured, stats = summary.measured, summary.stats
        return cls(
            source=config.source.source, mode=mode, target_fps=target_fps, detector=config.detector.backend,
            model=config.classifier.model.name, classifier_threads=config.classifier.threads, warmup=warmup,
            frames=measured.frames, faces=measured.faces, fps=round(measured.fps, 2),
            wall_s=round(measured.wall_s, 3), cpu_percent=round(measured.cpu_percent, 1),
            cpu_count=stats.get("cpu_count"), rss_mb=stats["rss_mb"],
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), drops=summary.drops,
            latency_ms={stage: stats["latency_ms"][stage] for stage in STAGES if stage in stats["latency_ms"]},
            machine=machine_state or machine(), started_at=started_at)

    def with_peer(self, peer: PeerResult) -> BenchReport:
        ratio = round(self.fps / peer.fps, 2) if peer.fps else None
        return BenchReport(**{**self.to_dict(), "peer": asdict(peer), "ratio": ratio})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> Table:
        pace = f"live at {self.target_fps:g} FPS" if self.mode == "live" else "replay"
        title = (f"{self.source} ({pace}): {self.frames} frames after {self.warmup} warm-up, {self.fps:.1f} FPS, "
                 f"CPU {self.cpu_percent:.0f}% of one core ({self.cpu_count} cores, load "
                 f"{self.machine.get('load_avg_1m')}, {self.machine.get('fer_trainer_processes')} fer-trainer "
                 f"processes), RSS {self.rss_mb:.0f} MB (peak {self.peak_rss_mb:.0f}), "
                 f"{self.faces} faces, {self.drops} dropped")
        table = Table(title=title, caption=f"detector {self.detector}, model {self.model} "
                                           f"({self.classifier_threads} threads); latency in ms; "
                                           "e2e = capture to publish" + self._peer_line())
        table.add_column("stage")
        for column in ("p50", "p95", "p99", "mean", "samples"):
            table.add_column(column, justify="right")
        for stage, values in self.latency_ms.items():
            table.add_row(stage, *(f"{values[k]:.2f}" for k in ("p50", "p95", "p99", "mean")),
                          str(values["count"]))
        return table

    def _peer_line(self) -> str:
        if self.peer is None:
            return ""
        result, note = self.peer.get("result") or {}, self.peer.get("note")
        if note or self.ratio is None:
            return f"\npeer: {note or 'no FPS figure'}"
        return (f"\npeer {result.get('peer')}: {result.get('fps', 0):.1f} FPS on {result.get('frames')} frames, "
                f"{result.get('faces')} faces; ours {self.fps:.1f} FPS = {self.ratio:.2f}x the peer")
