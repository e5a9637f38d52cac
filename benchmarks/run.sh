#!/usr/bin/env bash
# Every figure in benchmarks/README.md, written to benchmarks/results/. Run from anywhere:
#   benchmarks/run.sh [PEER_VENV]      (default /tmp/fer-peer; build it with ../shared/bench/setup_peer.sh)
# Each `--compare-peer` run measures fer-edge, then the fer library on the same clip, in one command, so
# that each ratio compares one machine state. Nothing else should run meanwhile; the JSON records the load
# average and any fer-trainer processes it saw.
set -euo pipefail
cd "$(dirname "$0")/.."
PEER=${1:-${FER_PEER_VENV:-/tmp/fer-peer}}
CLIP=${FER_SHARED:-../shared}/media/short_hamilton_clip.mp4
OUT=benchmarks/results
BENCH=(.venv/bin/fer-edge bench --source "$CLIP")
mkdir -p "$OUT"
"${BENCH[@]}" --config config.toml --compare-peer --peer-venv "$PEER" --out "$OUT/replay_blazeface.json"
"${BENCH[@]}" --config benchmarks/configs/every1.toml --compare-peer --peer-venv "$PEER" \
  --out "$OUT/replay_blazeface_every1.json"
"${BENCH[@]}" --config benchmarks/configs/haar.toml --compare-peer --peer-venv "$PEER" --out "$OUT/replay_haar.json"
"${BENCH[@]}" --config benchmarks/configs/haar-every1.toml --compare-peer --peer-venv "$PEER" \
  --out "$OUT/replay_haar_every1.json"
"${BENCH[@]}" --config config.toml --live --fps 30 --out "$OUT/live_30fps_blazeface.json"
"${BENCH[@]}" --config benchmarks/configs/every1.toml --live --fps 30 --out "$OUT/live_30fps_blazeface_every1.json"
.venv/bin/python benchmarks/ablation.py --out "$OUT/ablation.json" > /dev/null
.venv/bin/python benchmarks/stages.py --out "$OUT/stages.json" > /dev/null
.venv/bin/python benchmarks/detection_quality.py --out "$OUT/detection_quality.json" > /dev/null
.venv/bin/python benchmarks/skipping_quality.py --out "$OUT/skipping_quality.json" > /dev/null
.venv/bin/python benchmarks/framing.py --out "$OUT/framing.json" > /dev/null
if [ -x .venv/bin/py-spy ] || command -v py-spy > /dev/null; then  # pip install py-spy
  .venv/bin/python benchmarks/profile.py --config benchmarks/configs/before.toml --out "$OUT/profile_before.json" > /dev/null
  .venv/bin/python benchmarks/profile.py --config config.toml --out "$OUT/profile_after.json" > /dev/null
fi
if .venv/bin/python -c "import tensorflow" 2> /dev/null; then  # the train extra: the Pi yardstick
  .venv/bin/python benchmarks/mobilenet_reference.py --out "$OUT/mobilenet_reference.json" > /dev/null
fi
echo "results in $OUT"
