"""Both detectors on real photos with ground truth, the real clip, the demo source and odd frames."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture import CaptureOptions, Source
from edge.detect import (
    DEFAULT_MODELS,
    DETECTORS,
    BlazeFaceDetector,
    BlazeFaceLiteRT,
    DetectorOptions,
    FaceDetector,
    HaarDetector,
    create_detector,
    crop,
)
from edge.errors import UserError
from edge.events import Box
from tests.shared import faces_dir, hamilton_clip

# Annotation conventions differ: training.xml's boxes (dlib imglab) are tight squares from brow to chin,
# while BlazeFace and Haar boxes take in the forehead and are 1.2-2x as wide. A detection centred on a
# 37 px face can therefore score IoU 0.3-0.5 against its annotation. IoU >= 0.3 counts it as found, and
# still rejects a box on the neighbour's face. The figures at 0.5 are in each case's comment.
MATCH_IOU = 0.3


def ground_truth() -> dict[Path, list[Box]]:
    root = faces_dir()
    tree = ET.parse(root / "training.xml")
    return {
        root / image.get("file", ""): [
            Box(int(b.get("left", 0)), int(b.get("top", 0)), int(b.get("width", 0)), int(b.get("height", 0)))
            for b in image.iter("box")
        ]
        for image in tree.getroot().iter("image")
    }


def recall_precision(detector: FaceDetector) -> tuple[float, float]:
    """Greedy one-to-one matching of detections (best score first) to annotations at MATCH_IOU."""
    found = detections = annotated = 0
    for path, boxes in ground_truth().items():
        faces = detector.detect(cv2.imread(str(path)))
        unmatched = list(boxes)
        for face in faces:
            best = max(unmatched, key=face.box.iou, default=None)
            if best is not None and face.box.iou(best) >= MATCH_IOU:
                unmatched.remove(best)
                found += 1
        detections += len(faces)
        annotated += len(boxes)
    return found / annotated, found / max(detections, 1)


@pytest.fixture(scope="module")
def detectors() -> Iterator[dict[str, FaceDetector]]:
    """Every registered backend with its defaults: BlazeFace on LiteRT, BlazeFace through MediaPipe Tasks, Haar."""
    made = {"blazeface": BlazeFaceLiteRT.create(), "blazeface-tasks": BlazeFaceDetector.create(),
            "haar": HaarDetector.create()}
    yield made
    for detector in made.values():
        detector.close()


def test_ground_truth_has_the_four_photos_and_eighteen_faces() -> None:
    truth = ground_truth()
    assert len(truth) == 4 and sum(len(boxes) for boxes in truth.values()) == 18


@pytest.mark.parametrize(("backend", "tiles", "haar_width", "min_recall", "min_precision"), [
    # Haar at the photos' full width (no haar_width cap). Measured: recall 15/18 = 0.83, precision 15/16
    # (at IoU 0.5: 13/18, 13/16). The older equalised, 5-neighbour cascade measured 14/18, 14/14.
    ("haar", 1, 0, 0.70, 0.90),
    # Haar at its default 320 px, the setting `bench` runs. Measured: recall 10/18 = 0.56, precision
    # 10/11 (at 0.5: 9/18, 9/11). Lower than at full width: the group photos' 37 px faces shrink to
    # 24 px, the cascade's smallest window. This is the speed trade (benchmarks/README.md), pinned here.
    ("haar", 1, 320, 0.50, 0.85),
    # BlazeFace on LiteRT, measured: recall 6/18 = 0.33, precision 6/6 (at 0.5: the same). The short-range
    # model sees the whole frame at 128x128, where the group photos' 37 px faces shrink to 9 px.
    ("blazeface", 1, 320, 0.27, 0.80),
    # measured: recall 15/18 = 0.83, precision 15/15 (at 0.5: 14/18, 14/15)
    ("blazeface", 2, 320, 0.75, 0.90),
    # The same model through MediaPipe Tasks, measured: recall 6/18, precision 6/7 (at 0.5: the same)...
    ("blazeface-tasks", 1, 320, 0.27, 0.80),
    # ...and with tiles 15/18, 15/15 (at 0.5: 14/18, 14/15)
    ("blazeface-tasks", 2, 320, 0.75, 0.90),
])
def test_recall_and_precision_on_the_annotated_photos(
        backend: str, tiles: int, haar_width: int, min_recall: float, min_precision: float) -> None:
    options = DetectorOptions(model=DEFAULT_MODELS[backend], tiles=tiles, min_face_size=16, haar_width=haar_width)
    with create_detector(backend, options) as detector:
        recall, precision = recall_precision(detector)
    assert recall >= min_recall, f"{backend} tiles={tiles} haar_width={haar_width}: recall {recall:.2f}"
    assert precision >= min_precision, f"{backend} tiles={tiles} haar_width={haar_width}: precision {precision:.2f}"


@pytest.mark.parametrize(("name", "min_share"), [("blazeface", 0.75), ("blazeface-tasks", 0.75), ("haar", 0.50)])
def test_faces_are_found_on_most_frames_of_the_hamilton_clip(
        name: str, min_share: float, detectors: dict[str, FaceDetector]) -> None:
    """Every 5th frame of 275. Measured: BlazeFace 45/55 frames on LiteRT, 46/55 through Tasks; Haar
    30/55 at its default 320 px (it was 36/55 at 640 px with an equalised histogram, at 6-10x the time;
    the `fer` library's full-resolution cascade finds 33/55). Profiles and a wide shot with tiny faces
    account for the misses."""
    detector = detectors[name]
    with Source.create(CaptureOptions(source=str(hamilton_clip()), mode="replay")) as source:
        hits = [bool(detector.detect(f.image)) for f in source if f.index % 5 == 0]
    assert len(hits) == 55
    assert sum(hits) / len(hits) >= min_share


@pytest.mark.parametrize("blazeface", ["blazeface", "blazeface-tasks"])
def test_both_detectors_find_the_demo_face_and_agree_on_where_it_is(
        blazeface: str, detectors: dict[str, FaceDetector]) -> None:
    """A full 12 s zoom cycle of the demo, every 15th frame. BlazeFace finds exactly one face; Haar's
    best face is the same one. Haar adds a second box on the suit in 2 of these 24 frames (measured at
    320 px with its default threshold), which a tracker's min_hits filters; allow at most 3 of 24."""
    tasks, haar = detectors[blazeface], detectors["haar"]
    extra = 0
    with Source.create(CaptureOptions(source="demo", mode="replay", max_frames=360)) as source:
        for frame in source:
            if frame.index % 15:
                continue
            (blaze,), cascade = tasks.detect(frame.image), haar.detect(frame.image)
            assert cascade and blaze.box.iou(cascade[0].box) >= 0.5, f"frame {frame.index}: {blaze} {cascade}"
            extra += len(cascade) > 1
    assert extra <= 3


@pytest.mark.parametrize("name", ["blazeface", "blazeface-tasks", "haar"])
def test_downscaled_detection_maps_boxes_back_to_full_frame_pixels(name: str) -> None:
    """Detecting on a 1500 px frame with max_width 500 gives the boxes found on the 500 px frame, ×3."""
    image = cv2.imread(str(faces_dir() / "2008_001322.jpg"))
    large = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(large, (500, 375), interpolation=cv2.INTER_AREA)
    model = DEFAULT_MODELS[name]
    with create_detector(name, DetectorOptions(model=model, max_width=500, haar_width=0)) as detector:
        scaled = detector.detect(large)
    with create_detector(name, DetectorOptions(model=model, max_width=0, min_face_size=8, haar_width=0)) as detector:
        expected = [Box(f.box.x * 3, f.box.y * 3, f.box.w * 3, f.box.h * 3) for f in detector.detect(small)]
    assert len(scaled) == len(expected) >= 2
    for face, box in zip(scaled, expected, strict=True):
        assert max(abs(a - b) for a, b in zip(face.box.as_list(), box.as_list(), strict=True)) <= 3


@pytest.mark.parametrize(("name", "threshold", "min_size"), [
    ("blazeface", 0.5, 78), ("blazeface-tasks", 0.5, 78), ("haar", 0.3, 95)])
def test_min_face_size_and_score_threshold_filter_faces(name: str, threshold: float, min_size: int) -> None:
    """BlazeFace boxes are 75-80 px; Haar's (at 320 px) 81, 92 and 100 px, the 100 px one scoring 0.33
    (3 merged windows), so the default threshold 0.5 keeps two of them."""
    image = cv2.imread(str(faces_dir() / "2008_001322.jpg"))
    model = DEFAULT_MODELS[name]
    options = DetectorOptions(model=model, min_face_size=16, score_threshold=threshold)
    with create_detector(name, options) as detector:
        assert len(detector.detect(image)) == 3
    with create_detector(name, replace(options, min_face_size=min_size)) as detector:
        faces = detector.detect(image)
        assert 1 <= len(faces) < 3 and all(min(f.box.w, f.box.h) >= min_size for f in faces)
    with create_detector(name, replace(options, score_threshold=0.5)) as detector:
        assert len(detector.detect(image)) == (2 if name == "haar" else 3)
    with create_detector(name, replace(options, score_threshold=1.0)) as detector:
        assert detector.detect(image) == ()


def odd_frames() -> dict[str, np.ndarray]:
    bgr = cv2.imread(str(faces_dir() / "2008_001009.jpg"))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return {
        "gray-2d": gray, "gray-3d": gray[:, :, None], "bgra": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "4k": cv2.resize(bgr, None, fx=8, fy=8), "empty": np.zeros((0, 0, 3), np.uint8),
        "one-pixel": np.zeros((1, 1, 3), np.uint8), "flat-1d": np.zeros(100, np.uint8),
        "float": bgr.astype(np.float32), "five-channels": np.zeros((50, 50, 5), np.uint8),
    }


@pytest.mark.parametrize("kind", list(odd_frames()))
@pytest.mark.parametrize("name", ["blazeface", "blazeface-tasks", "haar"])
def test_odd_frames_give_faces_or_nothing_and_never_raise(
        name: str, kind: str, detectors: dict[str, FaceDetector]) -> None:
    image = odd_frames()[kind]
    before = image.copy()
    faces = detectors[name].detect(image)
    assert np.array_equal(image, before), "detect must not modify its input"
    height, width = image.shape[:2] if image.ndim >= 2 else (0, 0)
    assert all(f.box.x >= 0 and f.box.y >= 0 and f.box.x + f.box.w <= width and f.box.y + f.box.h <= height
               for f in faces)
    if kind in ("gray-2d", "gray-3d", "bgra"):
        assert len(faces) == 2, f"{kind}: {faces}"
    if kind == "4k":  # both faces, strongly (Haar: 0.93 and 0.89, 26 and 17 merged windows)
        assert len([f for f in faces if f.score >= 0.8]) == 2, f"{kind}: {faces}"


@pytest.mark.parametrize(("box", "margin", "shape"), [
    (Box(10, 20, 30, 40), 0.0, (40, 30, 3)),
    (Box(20, 20, 30, 40), 0.5, (80, 60, 3)),  # grown by half the size on every side
    (Box(-15, -15, 30, 30), 0.0, (15, 15, 3)),  # cut by the top-left corner
    (Box(90, 50, 30, 30), 0.2, (42, 16, 3)),  # grown by 6 px, then cut by the right edge
    (Box(80, 100, 30, 30), 0.0, (20, 20, 3)),  # cut by the bottom-right corner
])
def test_crop_grows_by_the_margin_and_clips_to_the_frame(box: Box, margin: float, shape: tuple) -> None:
    image = np.arange(120 * 100 * 3, dtype=np.uint32).reshape(120, 100, 3).astype(np.uint8)
    region = crop(image, box, margin)
    assert region is not None and region.shape == shape
    region[:] = 0
    assert image.any(), "crop must return a copy"


@pytest.mark.parametrize("box", [Box(105, 10, 20, 20), Box(-30, -30, 20, 20), Box(10, 10, 0, 5)])
def test_crop_of_a_box_outside_the_frame_is_none_never_an_empty_array(box: Box) -> None:
    assert crop(np.zeros((60, 100, 3), np.uint8), box, 0.1) is None


@pytest.mark.parametrize(("name", "content", "problem"), [
    ("blazeface", None, "BlazeFace model not found"),
    ("blazeface", b"", "BlazeFace model not found"),
    ("blazeface", bytes(range(256)) * 40, "not a usable BlazeFace model"),
    ("blazeface", "truncated", "not a usable BlazeFace model"),
    ("blazeface-tasks", None, "BlazeFace model not found"),
    ("blazeface-tasks", bytes(range(256)) * 40, "not a usable BlazeFace model"),
    ("blazeface-tasks", "truncated", "not a usable BlazeFace model"),
    ("haar", None, "Haar cascade missing or empty"),
    ("haar", b"", "Haar cascade missing or empty"),
    ("haar", b"<opencv_storage><cascade>", "not a valid Haar cascade XML"),
])
def test_a_bad_model_file_is_a_one_line_user_error_naming_it(
        tmp_path: Path, name: str, content: bytes | str | None, problem: str) -> None:
    path = tmp_path / "model.bin"
    if content == "truncated":
        path.write_bytes(DEFAULT_MODELS[name].read_bytes()[:100_000])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(UserError) as error:
        create_detector(name, DetectorOptions(model=path))
    message = str(error.value)
    assert message.startswith(f"{path}: {problem}") and "\n" not in message


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("score_threshold", 1.5, "0.0-1.0"), ("score_threshold", -0.1, "0.0-1.0"),
    ("min_face_size", 0, "1-4096 pixels"), ("max_width", 10, "0 \\(off\\) or 64-8192 pixels"),
    ("tiles", 0, "1-4"), ("tiles", 9, "1-4"), ("haar_width", 32, "0 \\(max_width\\) or 64-8192 pixels"),
])
def test_bad_options_are_rejected_naming_the_option_range_and_value(field: str, value: object, allowed: str) -> None:
    with pytest.raises(ValueError, match=rf"^detector\.{field}: expected {allowed}, got {value!r}$"):
        DetectorOptions(model=DEFAULT_MODELS["haar"], **{field: value})  # type: ignore[arg-type]


def test_an_unknown_backend_names_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"detector.backend: expected one of \['blazeface', 'blazeface-tasks', "
                                         r"'haar'\], got 'yolo'"):
        create_detector("yolo")
    assert set(DETECTORS) == {"blazeface", "blazeface-tasks", "haar"}
