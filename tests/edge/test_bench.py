"""`fer-edge bench` beyond its basic report (test_cli): the peer comparison and live mode, on a few frames.

No timing assertions: the figures only have to be there and be consistent with each other. The peer is
a stand-in script where a real one would need TensorFlow; the real one is benchmarks/README.md's business.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from edge.bench import SPEED_FEATURES, machine, run_peer
from tests.edge.test_cli import fer_edge, write_config
from tests.shared import hamilton_clip


def fake_peer(folder: Path, body: str) -> Path:
    """A venv whose bin/python is a shell script: `body` decides what the 'peer' prints and returns."""
    python = folder / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\n{body}\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return folder / "venv"


def bench(tmp_path: Path, model: Path, *args: str) -> dict:
    out = tmp_path / "report.json"
    result = fer_edge("bench", "--source", str(hamilton_clip()), "--frames", "6", "--warmup", "2", "--json",
                      "--out", str(out), "--config", str(write_config(tmp_path, model)), *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert json.loads(out.read_text()) == report, "--out holds the printed report"
    return report


def test_compare_peer_without_a_peer_venv_is_a_note_not_a_failure(edge_model: Path, tmp_path: Path) -> None:
    report = bench(tmp_path, edge_model, "--compare-peer", "--peer-venv", str(tmp_path / "missing"))
    assert report["frames"] == 6 and report["fps"] > 0
    assert report["ratio"] is None and report["peer"]["result"] is None
    assert report["peer"]["note"].startswith(f"no peer venv at {tmp_path / 'missing'} (build it: bash ")
    table = fer_edge("bench", "--source", str(hamilton_clip()), "--frames", "2", "--warmup", "0", "--compare-peer",
                     "--peer-venv", str(tmp_path / "missing"), "--config", str(tmp_path / "config.toml"), cwd=tmp_path)
    assert table.returncode == 0 and "peer: no peer venv" in table.stdout.replace("\n", " ")


def test_compare_peer_runs_the_peer_on_the_same_video_and_reports_the_ratio(edge_model: Path, tmp_path: Path) -> None:
    venv = fake_peer(tmp_path, 'echo "loading..." >&2\n'
                               'echo "{\\"peer\\": \\"stand-in\\", \\"video\\": \\"$3\\", \\"frames\\": 275, '
                               '\\"faces\\": 3, \\"fps\\": 2.5}"')
    report = bench(tmp_path, edge_model, "--compare-peer", "--peer-venv", str(venv))
    peer = report["peer"]
    assert peer["note"] is None and peer["result"]["peer"] == "stand-in"
    assert peer["result"]["video"] == str(hamilton_clip()), "the peer gets the video that we measured"
    assert report["ratio"] == pytest.approx(report["fps"] / 2.5, rel=0.01)
    assert report["machine"]["cpu_count"] and report["machine"]["load_avg_1m"] >= 0
    assert report["machine"]["fer_trainer_processes"] >= 0
    features = report["machine"]["cpu_features"]
    assert set(features) <= set(SPEED_FEATURES)
    cpuinfo = Path("/proc/cpuinfo")
    assert ("avx2" in features) == (cpuinfo.exists() and " avx2" in cpuinfo.read_text())


def test_a_training_paused_with_sigstop_is_not_counted_as_load() -> None:
    before = machine()["fer_trainer_processes"]
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "fer-trainer", "fit"])
    try:
        assert machine()["fer_trainer_processes"] == before + 1
        trainer.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while psutil.Process(trainer.pid).status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert machine()["fer_trainer_processes"] == before
    finally:
        trainer.kill()
        trainer.wait()


@pytest.mark.parametrize(("body", "note"), [
    ('echo "TensorFlow is broken" >&2; exit 3', "peer exited 3: TensorFlow is broken"),
    ('echo "fps: lots"', "peer exited 0: no output"),
])
def test_a_failing_peer_is_a_note_naming_what_it_said(tmp_path: Path, body: str, note: str) -> None:
    result = run_peer(str(hamilton_clip()), fake_peer(tmp_path, body))
    assert (result.result, result.fps, result.note) == (None, None, note)


def test_the_peer_needs_a_video_file(tmp_path: Path) -> None:
    result = run_peer("demo", fake_peer(tmp_path, "exit 0"))
    assert result.note == "peer runs on video files only, not 'demo'"


def test_live_bench_paces_the_file_and_reports_cpu_and_capture_to_publish_latency(
        edge_model: Path, tmp_path: Path) -> None:
    report = bench(tmp_path, edge_model, "--live", "--fps", "30", "--compare-peer", "--peer-venv",
                   str(tmp_path / "missing"))
    assert (report["mode"], report["target_fps"]) == ("live", 30.0)
    assert 1 <= report["frames"] <= 6 and report["cpu_percent"] >= 0 and report["peak_rss_mb"] >= report["rss_mb"]
    assert report["latency_ms"]["e2e"]["count"] == report["frames"]
    assert report["peer"]["note"] == "the peer comparison runs in replay mode only" and report["ratio"] is None
