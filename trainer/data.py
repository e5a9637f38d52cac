"""FER-2013 from its CSV (plain or .gz) or an image-folder tree, FER+ votes, and the tf.data pipeline.

Splits keep FER-2013's names: Training (fit), PublicTest (model selection), PrivateTest (final report).
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from edge.errors import UserError
from edge.manifest import FER2013_LABELS

SPLITS = ("Training", "PublicTest", "PrivateTest")
LabelMode = Literal["fer2013", "ferplus", "ferplus-soft", "fer2013+ferplus"]
IMAGE_SIZE = 48
PIXELS = IMAGE_SIZE * IMAGE_SIZE
# FER+ vote columns, in the file's order, mapped to FER-2013 label ids (None: no FER-2013 class).
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF")
FERPLUS_TO_FER = (6, 3, 5, 4, 0, 1, 2, None, None, None)
FOLDER_SPLITS = {"train": "Training", "val": "PublicTest", "validation": "PublicTest", "test": "PrivateTest"}


@dataclass(frozen=True, slots=True)
class Split:
    """Faces of one split: uint8 images (n, 48, 48) and label distributions (n, 7), one-hot or soft."""

    images: np.ndarray
    targets: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return self.targets.argmax(axis=1)

    def __len__(self) -> int:
        return len(self.images)

    def take(self, count: int, seed: int = 0) -> Split:
        """A random subset of `count` faces (all of them if fewer)."""
        if count >= len(self):
            return self
        index = np.sort(np.random.default_rng(seed).choice(len(self), count, replace=False))
        return Split(self.images[index], self.targets[index])


@dataclass(frozen=True, slots=True)
class Dataset:
    splits: dict[str, Split]
    source: str

    def split(self, name: str) -> Split:
        if name not in self.splits or not len(self.splits[name]):
            raise UserError(f"{self.source}: split {name!r} is empty or missing (have {', '.join(self.splits)})")
        return self.splits[name]


def load(path: Path, labels: LabelMode = "fer2013", ferplus: Path | None = None) -> Dataset:
    """Load a FER-2013 CSV(.gz) or an image-folder root. FER+ label modes read `ferplus_labels.csv` beside the
    CSV; fer2013+ferplus blends the votes into the Training targets only, so the tests keep FER-2013 labels."""
    if not path.exists():
        raise UserError(f"{path}: not found (expected fer2013.csv, fer2013.csv.gz or an image folder)")
    if path.is_dir():
        if labels != "fer2013":
            raise UserError(f"{path}: --labels {labels} needs the FER-2013 CSV, not an image folder")
        return _load_folder(path)
    images, targets, usage = _read_csv(path.resolve(), path.stat().st_mtime_ns)
    ferplus = ferplus or path.with_name("ferplus_labels.csv")
    if labels == "fer2013+ferplus":
        shares, voted = _read_ferplus(ferplus, len(images), soft=True)
        blend = ((usage == "Training") & voted)[:, None]
        targets = np.where(blend, 0.5 * targets + 0.5 * shares, targets)
    elif labels != "fer2013":
        targets, keep = _read_ferplus(ferplus, len(images), soft=labels == "ferplus-soft")
        images, targets, usage = images[keep], targets[keep], usage[keep]
    splits = {name: Split(images[usage == name], targets[usage == name]) for name in SPLITS}
    return Dataset(splits, f"{path} (labels: {labels})")


def _open_text(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")


@functools.lru_cache(maxsize=2)
def _read_csv(path: Path, mtime_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parsed once per file version and process (the full CSV takes ~10 s); callers never mutate the arrays."""
    images, label_ids, usage = [], [], []
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:3]] != ["emotion", "pixels", "Usage"]:
                raise UserError(f"{path}: row 1: expected header emotion,pixels,Usage, got {header}")
            for row_number, row in enumerate(reader, start=2):
                image, label, split = _parse_row(path, row_number, row)
                images.append(image)
                label_ids.append(label)
                usage.append(split)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read as FER-2013 CSV ({exc})") from None
    if not images:
        raise UserError(f"{path}: no rows")
    targets = np.eye(len(FER2013_LABELS), dtype=np.float32)[label_ids]
    return np.stack(images), targets, np.array(usage)


def _parse_row(path: Path, row_number: int, row: list[str]) -> tuple[np.ndarray, int, str]:
    where = f"{path}: row {row_number}"
    if len(row) != 3:
        raise UserError(f"{where}: expected 3 fields emotion,pixels,Usage, got {len(row)}")
    emotion, pixels, split = row
    if not emotion.strip().isdigit() or int(emotion) >= len(FER2013_LABELS):
        raise UserError(f"{where}: emotion: expected an integer 0-6, got {emotion!r}")
    if split not in SPLITS:
        raise UserError(f"{where}: Usage: expected one of {', '.join(SPLITS)}, got {split!r}")
    values = pixels.split()
    if len(values) != PIXELS:
        raise UserError(f"{where}: pixels: expected {PIXELS} values, got {len(values)}")
    try:
        image = np.array(values, dtype=np.int32)
    except ValueError:
        raise UserError(f"{where}: pixels: expected integers 0-255") from None
    if image.min() < 0 or image.max() > 255:
        raise UserError(f"{where}: pixels: expected integers 0-255, got {image.min()}..{image.max()}")
    return image.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE), int(emotion), split


def _read_ferplus(path: Path, rows: int, soft: bool) -> tuple[np.ndarray, np.ndarray]:
    """FER+ votes → (targets, keep mask). Not-a-face rows and rows with no vote for a FER-2013 class are left out."""
    if not path.is_file():
        raise UserError(f"{path}: FER+ votes not found (expected ferplus_labels.csv beside the FER-2013 CSV)")
    with open(path, newline="") as handle:
        table = list(csv.reader(handle))
    body = table[1:] if table and not table[0][-1].strip().isdigit() else table
    if len(body) != rows:
        raise UserError(f"{path}: expected {rows} rows aligned with the FER-2013 CSV, got {len(body)}")
    votes = np.zeros((rows, len(FER2013_LABELS)), dtype=np.float32)
    keep = np.ones(rows, dtype=bool)
    for index, row in enumerate(body):
        if len(row) != 2 + len(FERPLUS_COLUMNS):
            raise UserError(f"{path}: row {index + 2}: expected {2 + len(FERPLUS_COLUMNS)} fields, got {len(row)}")
        keep[index] = bool(row[1].strip())
        for column, fer_id in zip(row[2:], FERPLUS_TO_FER, strict=True):
            if fer_id is not None:
                votes[index, fer_id] += float(column or 0)
    keep &= votes.sum(axis=1) > 0
    votes[~keep] = 1.0
    if soft:
        return votes / votes.sum(axis=1, keepdims=True), keep
    return np.eye(len(FER2013_LABELS), dtype=np.float32)[votes.argmax(axis=1)], keep


def _load_folder(root: Path) -> Dataset:
    import cv2

    splits: dict[str, Split] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = FOLDER_SPLITS.get(folder.name.lower())
        if name is None:
            raise UserError(f"{folder}: unknown split folder, expected one of {', '.join(FOLDER_SPLITS)}")
        images, label_ids = [], []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            label = class_dir.name.lower()
            if label not in FER2013_LABELS:
                raise UserError(f"{class_dir}: unknown class folder {class_dir.name!r}, "
                                f"expected one of {', '.join(FER2013_LABELS)}")
            for file in _image_files(class_dir):
                image = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
                if image is None:
                    raise UserError(f"{file}: cannot decode image")
                if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
                    image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
                images.append(image)
                label_ids.append(FER2013_LABELS.index(label))
        targets = np.eye(len(FER2013_LABELS), dtype=np.float32)[np.array(label_ids, dtype=int)]
        splits[name] = Split(np.array(images, dtype=np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE), targets)
    if "Training" not in splits:
        raise UserError(f"{root}: no train/ folder")
    if "PublicTest" not in splits and "PrivateTest" in splits:
        splits["PublicTest"] = splits["PrivateTest"]  # tutorials' layout: test/ doubles as validation
    return Dataset(splits, str(root))


def _image_files(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


Augment = Literal["none", "tutorial", "strong", "heavy"]
Warp = Literal["chained", "single"]


def augmentation(strength: Augment = "tutorial", warp: Warp = "chained"):
    """The seed tutorial's augmentation (rotation, shift, shear, zoom, flip); `strong` adds random erasing; `heavy`
    doubles shift and zoom to 20% and adds brightness and contrast jitter before the erasing. `chained` warps the
    face once per transform (the shipped models' recipe), `single` once for all four (a sharper face)."""
    from keras import layers

    reach = 0.2 if strength == "heavy" else 0.1
    if warp == "single":
        from trainer.affine import RandomAffine

        steps = [RandomAffine(degrees=10, shift=reach, shear=0.1, zoom=reach)]
    else:
        steps = [
            layers.RandomRotation(10 / 360, fill_mode="nearest"),
            layers.RandomTranslation(reach, reach, fill_mode="nearest"),
            layers.RandomShear(x_factor=0.1, y_factor=0.1, fill_mode="nearest"),
            layers.RandomZoom(reach, fill_mode="nearest"),
        ]
    steps.append(layers.RandomFlip("horizontal"))
    if strength == "heavy":
        steps += [layers.RandomBrightness(0.2, value_range=(0, 255)), layers.RandomContrast(0.3, value_range=(0, 255))]
    if strength in ("strong", "heavy"):
        steps.append(layers.RandomErasing(factor=0.5, scale=(0.02, 0.15), value_range=(0, 255)))
    return layers.Pipeline(steps, name=f"augment_{strength}_{warp}")


Mix = Literal["none", "mixup", "cutmix"]


def mix_batch(images, targets, mode: Mix):
    """Mixup (blend whole faces, Beta(0.4, 0.4)) or CutMix (paste a box of another face, Beta(1, 1)), pairing
    each face with the batch reversed; targets are mixed in the same proportion as the pixels."""
    import tensorflow as tf

    alpha = 0.4 if mode == "mixup" else 1.0
    count = tf.shape(images)[0]
    partner_images, partner_targets = tf.reverse(images, [0]), tf.reverse(targets, [0])
    gamma_a, gamma_b = tf.random.gamma([count], alpha), tf.random.gamma([count], alpha)
    share = gamma_a / (gamma_a + gamma_b)  # Beta(alpha, alpha): the share of the face itself
    if mode == "mixup":
        weight = share[:, None, None, None]
        mixed = weight * images + (1.0 - weight) * partner_images
    else:
        side = tf.cast(IMAGE_SIZE * tf.sqrt(1.0 - share), tf.int32)  # box area: (1 - share) of the face
        top = tf.random.uniform([count], 0, IMAGE_SIZE, dtype=tf.int32) - side // 2
        left = tf.random.uniform([count], 0, IMAGE_SIZE, dtype=tf.int32) - side // 2
        rows = tf.range(IMAGE_SIZE)[None, :, None]
        columns = tf.range(IMAGE_SIZE)[None, None, :]
        inside = ((rows >= top[:, None, None]) & (rows < (top + side)[:, None, None])
                  & (columns >= left[:, None, None]) & (columns < (left + side)[:, None, None]))
        box = tf.cast(inside, images.dtype)[..., None]
        mixed = (1.0 - box) * images + box * partner_images
        share = 1.0 - tf.reduce_mean(box, axis=[1, 2, 3])  # boxes clipped at the border paste less
    share = tf.cast(share, targets.dtype)[:, None]
    return mixed, share * targets + (1.0 - share) * partner_targets


def as_tf_dataset(split: Split, batch_size: int, *, train: bool, seed: int = 0,
                  augment: Augment = "tutorial", warp: Warp = "chained", mix: Mix = "none", relabel=None):
    """Batches of (float 0-255 images (n, 48, 48, 1), targets). Augmentation runs in parallel tf.data workers;
    `relabel(images, targets) -> targets` (online distillation) runs last, on the faces as the model sees them."""
    import tensorflow as tf

    images = split.images[..., None].astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, split.targets))
    if train:
        dataset = dataset.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=train)
    if train and augment != "none":
        augmenter = augmentation(augment, warp)
        dataset = dataset.map(lambda x, y: (augmenter(x, training=True), y),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    if train and mix != "none":
        dataset = dataset.map(lambda x, y: mix_batch(x, y, mix), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=False)
    if train and relabel is not None:
        dataset = dataset.map(lambda x, y: (x, relabel(x, y)), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=False)
    return dataset.prefetch(tf.data.AUTOTUNE)
