"""What `detect_every` and `classify_every` cost in quality on the hamilton clip, against doing everything every frame.

    python benchmarks/skipping_quality.py [--out FILE.json]

- boxes: for each detector and `detect_every` n in 2, 3, on the frames where the detector did not run,
  the carried faces against a fresh detection of the same frame: faces matched (IoU >= 0.3), missing and
  extra, the IoU of the matches (median, 5th percentile) and how often the top emotion agrees;
- jitter: for comparison, how often the top emotion of a face agrees between consecutive frames when both
  are detected fresh (the classifier's own frame-to-frame jitter, which smoothing absorbs);
- events: the `replay` event stream (type, emotion, frame) for each setting, and whether it equals the
  stream with every frame detected and classified (`classify_every` with the default `detect_every`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench import emit, machine  # noqa: E402
from edge.capture import CaptureOptions, Source  # noqa: E402
from edge.config import Config, load_config  # noqa: E402
from edge.daemon import Plan, build_inference, build_pipeline  # noqa: E402

VIDEO = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared")) / "media" / "short_hamilton_clip.mp4"


def config(backend: str, detect_every: int = 1, classify_every: int = 1) -> Config:
    return load_config(None, {"source.source": str(VIDEO), "mqtt.enabled": False, "detector.backend": backend,
                              "detector.detect_every": detect_every, "classifier.classify_every": classify_every})


def carried_boxes(backend: str, every: int) -> dict[str, Any]:
    with Source.create(CaptureOptions(source=str(VIDEO), mode="replay")) as source:
        frames = list(source)
    fresh, skipping = build_inference(config(backend)), build_inference(config(backend, every))
    ious, agree, matched, missing, extra = [], 0, 0, 0, 0
    for frame in frames:
        reference, result = fresh.process(frame), skipping.process(frame)
        if result.detected or reference.result is None or result.result is None:
            continue
        carried = list(result.result.observations)
        for truth in reference.result.observations:
            best = max(carried, key=lambda o: truth.box.iou(o.box), default=None)
            if best is None or truth.box.iou(best.box) < 0.3:
                missing += 1
                continue
            carried.remove(best)
            matched += 1
            ious.append(truth.box.iou(best.box))
            agree += int(np.argmax(truth.probabilities) == np.argmax(best.probabilities))
        extra += len(carried)
    fresh.close()
    skipping.close()
    return {"backend": backend, "detect_every": every, "matched": matched, "missing": missing, "extra": extra,
            "iou_median": round(float(np.median(ious)), 3) if ious else None,
            "iou_p5": round(float(np.percentile(ious, 5)), 3) if ious else None, "top_emotion_agrees": agree}


def jitter(backend: str) -> dict[str, Any]:
    with Source.create(CaptureOptions(source=str(VIDEO), mode="replay")) as source:
        inference = build_inference(config(backend))
        results = [r.result.observations if (r := inference.process(frame)).result else () for frame in source]
        inference.close()
    agree = pairs = 0
    for before, after in zip(results, results[1:], strict=False):
        for face in after:
            best = max(before, key=lambda o: face.box.iou(o.box), default=None)
            if best is not None and face.box.iou(best.box) >= 0.3:
                pairs += 1
                agree += int(np.argmax(face.probabilities) == np.argmax(best.probabilities))
    return {"backend": backend, "consecutive_fresh_pairs": pairs, "top_emotion_agrees": agree}


def events(settings: Config) -> list[list[Any]]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "events.jsonl"
        summary = build_pipeline(settings, Plan(mode="replay", events_out=out, mqtt=False)).run()
        if summary.failed:
            raise SystemExit(f"replay failed in {summary.failed}")
        return [[e["type"], e["emotion"], e["frame"]] for e in map(json.loads, out.read_text().splitlines())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    boxes = [carried_boxes(backend, every) for backend in ("blazeface", "haar") for every in (2, 3)]
    jitters = [jitter(backend) for backend in ("blazeface", "haar")]
    streams = []
    for backend in ("blazeface", "haar"):
        baseline = events(config(backend))
        for detect_every, classify_every in ((1, 1), (2, 1), (3, 1), (2, 2), (2, 3)):
            stream = baseline if (detect_every, classify_every) == (1, 1) else events(
                config(backend, detect_every, classify_every))
            streams.append({"backend": backend, "detect_every": detect_every, "classify_every": classify_every,
                            "events": len(stream), "same_as_every_frame": stream == baseline, "stream": stream})
    report = {"machine": machine(), "carried_boxes": boxes, "jitter": jitters, "event_streams": streams}
    emit(report, args.out, indent=1)


if __name__ == "__main__":
    main()
