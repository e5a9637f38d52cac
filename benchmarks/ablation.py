"""What each configurable change bought: `fer-edge bench` on the hamilton clip, one variant at a time.

    python benchmarks/ablation.py [--rounds 3] [--out FILE.json]

Variants (benchmarks/configs/), each adding one change to the one before:
  before        BlazeFace through MediaPipe Tasks, 2 interpreter threads, detector on every frame
  threads1      ... 1 interpreter thread
  litert        ... BlazeFace on LiteRT directly (edge/blazeface.py)
  every2        ... detector on every 2nd frame: the shipped defaults
  classify3     ... adaptive classification, a stable face classified every 3rd frame (optional, off by default)
The BGR→RGB conversion fix is in all of them (it is not configurable; benchmarks/stages.py measures it).
The variants run in turn, `--rounds` times, each as its own process; the report keeps every run and the
median FPS and CPU% per variant. Replay mode, no MQTT, 30 warm-up frames then the rest of the clip.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench import emit, machine  # noqa: E402

CONFIGS = ROOT / "benchmarks" / "configs"
VARIANTS = {"before": CONFIGS / "before.toml", "threads1": CONFIGS / "tasks-every1.toml",
            "litert": CONFIGS / "every1.toml", "every2": ROOT / "config.toml", "classify3": CONFIGS / "classify3.toml"}


def bench(config: Path, video: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "edge", "bench", "--source", str(video), "--config", str(config),
                           "--json"], capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{config.name}: fer-edge bench exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args()
    video = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared")) / "media" / "short_hamilton_clip.mp4"
    state = machine()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, config in VARIANTS.items():
            report = bench(config, video)
            runs[name].append({key: report[key] for key in ("fps", "cpu_percent", "rss_mb", "faces")} |
                              {"detect_p50_ms": report["latency_ms"].get("detect", {}).get("p50")})
    summary = {name: {"config": str(VARIANTS[name].relative_to(ROOT)),
                      "fps_median": round(statistics.median(r["fps"] for r in rows), 1),
                      "cpu_percent_median": round(statistics.median(r["cpu_percent"] for r in rows), 1),
                      "runs": rows} for name, rows in runs.items()}
    report = {"machine_before": state, "machine_after": machine(), "rounds": args.rounds, "variants": summary}
    emit(report, args.out)


if __name__ == "__main__":
    main()
