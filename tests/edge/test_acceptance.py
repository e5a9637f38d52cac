"""The shipped defaults on real footage: what a subscriber of the hamilton clip is promised."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge.config import ROOT
from tests.shared import hamilton_clip


def test_shipped_model_and_defaults_give_start_change_and_end_on_the_hamilton_clip(tmp_path: Path) -> None:
    """Pins that the default model, detector and smoother report an emotion change on real footage, not
    only starts and ends (a 1 s dwell with the first shipped model never let one through)."""
    config = tmp_path / "config.toml"
    config.write_text("[mqtt]\nenabled = false\n")
    events_out = tmp_path / "events.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "edge", "replay", str(hamilton_clip()), "--config", str(config),
         "--model", str(ROOT / "models" / "fer_cnn_int8.tflite"), "--events-out", str(events_out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in events_out.read_text().splitlines()]
    kinds = {event["type"] for event in events}
    assert kinds == {"start", "change", "end"}, events
    starts = [e["track_id"] for e in events if e["type"] == "start"]
    assert sorted(starts) == sorted(e["track_id"] for e in events if e["type"] == "end")
