"""FER-2013 loading: CSV (plain and .gz), image folders, FER+ votes, and the tf.data pipeline."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import UserError
from edge.manifest import FER2013_LABELS
from tests.shared import shared_path
from trainer import data


def test_csv_subset_keeps_splits_apart(fer_small: Path) -> None:
    dataset = data.load(fer_small)
    sizes = {name: len(split) for name, split in dataset.splits.items()}
    assert sizes == {"Training": 512, "PublicTest": 200, "PrivateTest": 200}
    train = dataset.split("Training")
    assert train.images.shape == (512, 48, 48) and train.images.dtype == np.uint8
    assert set(np.unique(train.labels)) <= set(range(7))


def test_gzip_reads_like_plain(fer_small: Path, tmp_path: Path) -> None:
    packed = tmp_path / "fer.csv.gz"
    with open(fer_small, "rb") as source, gzip.open(packed, "wb") as target:
        shutil.copyfileobj(source, target)
    plain, gz = data.load(fer_small).split("PublicTest"), data.load(packed).split("PublicTest")
    np.testing.assert_array_equal(plain.images, gz.images)
    np.testing.assert_array_equal(plain.labels, gz.labels)


def test_image_folders_with_mixed_case_classes(fer_small: Path, tmp_path: Path) -> None:
    source = data.load(fer_small)
    for folder, split in (("train", "Training"), ("test", "PrivateTest")):
        faces = source.split(split).take(40)
        for index, (image, label) in enumerate(zip(faces.images, faces.labels, strict=True)):
            class_dir = tmp_path / folder / FER2013_LABELS[label].capitalize()
            class_dir.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(class_dir / f"{index}.png"), image)
    loaded = data.load(tmp_path)
    train = loaded.split("Training")
    assert len(train) == 40
    assert sorted(train.labels.tolist()) == sorted(source.split("Training").take(40).labels.tolist())
    assert len(loaded.split("PublicTest")) == 40  # test/ doubles as validation in the tutorials' layout


def _with_votes(tmp_path: Path, rows: int, public_test: int = 0) -> tuple[Path, list[str]]:
    """The first `rows` FER-2013 rows (all Training; the last `public_test` relabelled PublicTest) and their
    FER+ votes beside them; returns the CSV and the votes file's lines."""
    csv_path, votes_path = tmp_path / "fer.csv", tmp_path / "ferplus_labels.csv"
    with gzip.open(shared_path("data", "fer2013.csv.gz"), "rt") as source:
        lines = [source.readline() for _ in range(rows + 1)]
    split = rows + 1 - public_test
    csv_path.write_text("".join(lines[:split] + [line.replace(",Training", ",PublicTest") for line in lines[split:]]))
    with open(shared_path("data", "ferplus_labels.csv")) as source:
        votes = [source.readline() for _ in range(rows + 1)]
    votes_path.write_text("".join(votes))
    return csv_path, votes


def test_ferplus_soft_labels_drop_non_faces(tmp_path: Path) -> None:
    rows = 400
    csv_path, lines = _with_votes(tmp_path, rows)
    non_faces = sum(1 for line in lines[1:] if line.split(",")[1] == "")
    soft = data.load(csv_path, labels="ferplus-soft")
    majority = data.load(csv_path, labels="ferplus")
    kept = sum(len(s) for s in soft.splits.values())
    assert non_faces > 0 and kept <= rows - non_faces
    targets = soft.split("Training").targets
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-5)
    assert (targets.max(axis=1) < 1).any(), "soft labels should spread votes"
    np.testing.assert_array_equal(majority.split("Training").labels, soft.split("Training").labels)


def test_blended_labels_soften_training_only(tmp_path: Path) -> None:
    csv_path, _ = _with_votes(tmp_path, rows=400, public_test=100)
    plain, blended = data.load(csv_path), data.load(csv_path, labels="fer2013+ferplus")
    for name in data.SPLITS:
        assert len(blended.splits[name]) == len(plain.splits[name])
    train, labels = blended.split("Training").targets, plain.split("Training").targets
    np.testing.assert_allclose(train.sum(axis=1), 1.0, rtol=1e-5)
    assert (train[labels == 1] >= 0.5).all(), "the FER-2013 label keeps at least half the target"
    assert (train.max(axis=1) < 1).any() and (train.max(axis=1) < 1).mean() < 1
    np.testing.assert_array_equal(blended.split("PublicTest").targets, plain.split("PublicTest").targets)


def _csv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("emotion,pixels,Usage\n" + body)
    return path


PIXELS = " ".join(["128"] * 2304)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"0,{PIXELS},Training\n3,{PIXELS}\n", "row 3: expected 3 fields"),
        (f"0,{' '.join(['1'] * 2300)},Training\n", "row 2: pixels: expected 2304 values, got 2300"),
        (f"9,{PIXELS},Training\n", "row 2: emotion: expected an integer 0-6, got '9'"),
        (f"0,{PIXELS},Validation\n", "row 2: Usage: expected one of Training, PublicTest, PrivateTest"),
        (f"0,{' '.join(['300'] * 2304)},Training\n", "row 2: pixels: expected integers 0-255"),
    ],
    ids=["fields", "pixel-count", "emotion", "usage", "pixel-range"],
)
def test_malformed_rows_name_the_row(tmp_path: Path, body: str, message: str) -> None:
    path = _csv(tmp_path, body)
    with pytest.raises(UserError, match=message) as error:
        data.load(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_unknown_class_folder(tmp_path: Path) -> None:
    (tmp_path / "train" / "bored").mkdir(parents=True)
    with pytest.raises(UserError, match="unknown class folder 'bored'"):
        data.load(tmp_path)


def test_missing_path() -> None:
    with pytest.raises(UserError, match="nope.csv: not found"):
        data.load(Path("nope.csv"))


@pytest.mark.parametrize(("strength", "warp"), [("strong", "chained"), ("heavy", "chained"), ("strong", "single")])
def test_augmented_batches_keep_shape_and_range(fer_small: Path, strength: str, warp: str) -> None:
    split = data.load(fer_small).split("Training")
    images, targets = next(iter(data.as_tf_dataset(split, 32, train=True, augment=strength, warp=warp)))
    assert images.shape == (32, 48, 48, 1) and targets.shape == (32, 7)
    values = images.numpy()
    assert values.min() >= -1e-3 and values.max() <= 255 + 1e-3  # interpolation rounds a hair past the ends
    originals = split.images[..., None].astype(np.float32)
    assert not any(np.array_equal(values[0], original) for original in originals)


def test_heavy_augmentation_jitters_brightness(fer_small: Path) -> None:
    """`heavy` shifts each face's brightness (±20% of 255); `strong` only moves and erases pixels."""
    faces = data.load(fer_small).split("Training").take(128).images[..., None].astype(np.float32)

    def brightness_spread(strength: str) -> float:
        augmented = np.asarray(data.augmentation(strength)(faces, training=True))
        return float(np.std(augmented.mean(axis=(1, 2, 3)) - faces.mean(axis=(1, 2, 3))))

    assert brightness_spread("heavy") > 2 * brightness_spread("strong")


def test_single_warp_keeps_faces_sharper_than_chained_warps(fer_small: Path) -> None:
    """Each resampling blurs: one warp for all four transforms leaves more fine detail than one per transform."""
    faces = data.load(fer_small).split("Training").take(256).images[..., None].astype(np.float32)

    def detail(warp: str) -> float:
        augmented = np.asarray(data.augmentation("tutorial", warp)(faces, training=True))[..., 0]
        return float(np.mean([cv2.Laplacian(face, cv2.CV_32F).var() for face in augmented]))

    assert detail("single") > 2 * detail("chained")


def test_affine_warp_with_no_reach_is_the_identity(fer_small: Path) -> None:
    from trainer.affine import RandomAffine

    faces = data.load(fer_small).split("Training").take(16).images[..., None].astype(np.float32)
    still = RandomAffine(degrees=0, shift=0, shear=0, zoom=0)(faces, training=True)
    np.testing.assert_allclose(np.asarray(still), faces, atol=1e-3)


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_mixing_gives_each_face_its_pixel_share_of_the_target(fer_small: Path, mode: str) -> None:
    split = data.load(fer_small).split("Training").take(64)
    images = split.images[..., None].astype(np.float32)
    mixed, targets = (t.numpy() for t in data.mix_batch(images, split.targets, mode))
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-5)
    labels, partner_labels = split.labels, split.labels[::-1]
    checked = 0
    for face, partner, mix, target, label, partner_label in zip(images, images[::-1], mixed, targets, labels,
                                                                partner_labels, strict=True):
        if label == partner_label:
            continue
        share = target[label]  # the face's own share; its partner has the rest
        assert target[partner_label] == pytest.approx(1 - share, abs=1e-5)
        if mode == "mixup":
            np.testing.assert_allclose(mix, share * face + (1 - share) * partner, atol=1e-2)
        else:
            assert np.all((mix == face) | (mix == partner))
            rows, columns = np.nonzero((mix != face)[..., 0])
            pasted = 0 if not len(rows) else (np.ptp(rows) + 1) * (np.ptp(columns) + 1)
            assert abs(pasted - (1 - share) * face.size) <= 2 * 48, "the pasted box is the partner's share"
        checked += 1
    assert checked > 32
