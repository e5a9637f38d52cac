#!/usr/bin/env bash
# Re-extract BlazeFace short-range from the mediapipe 0.10.18 wheel and check it against the shipped copy.
set -euo pipefail
want=bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux2014_x86_64 -d "$tmp" mediapipe==0.10.18
python3 -m zipfile -e "$tmp"/mediapipe-0.10.18-*.whl "$tmp/x"
got=$(sha256sum "$tmp/x/mediapipe/modules/face_detection/face_detection_short_range.tflite" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "sha256 mismatch: got $got, expected $want" >&2; exit 1; }
cp "$tmp/x/mediapipe/modules/face_detection/face_detection_short_range.tflite" "$(dirname "$0")/../models/detectors/"
echo "models/detectors/face_detection_short_range.tflite: sha256 $got"
