"""Architectures by name. Every model takes raw 0-255 grey pixels (48, 48, 1); scaling is its first layer."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

INPUT_SHAPE = (48, 48, 1)


@dataclass(frozen=True, slots=True)
class ModelOptions:
    num_classes: int = 7
    width: float = 1.0  # channel multiplier (cnn) or MobileNet alpha
    input_size: int = 96  # mobilenet only: faces are resized to this inside the model
    dropout: float = 0.4
    stage_convs: tuple[int, ...] = (2, 2, 2, 2)  # cnn only: 3×3 convs in each of the four stages

    def __post_init__(self) -> None:
        if not 0.1 <= self.width <= 4.0:
            raise ValueError(f"width: expected 0.1-4.0, got {self.width}")
        if not 32 <= self.input_size <= 224:
            raise ValueError(f"input_size: expected 32-224, got {self.input_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected 0-1, got {self.dropout}")
        if len(self.stage_convs) != 4 or not all(1 <= convs <= 4 for convs in self.stage_convs):
            raise ValueError(f"stage-convs: expected four counts of 1-4, got {','.join(map(str, self.stage_convs))}")


def tutorial(options: ModelOptions) -> keras.Model:
    """The seed tutorial's CNN, layer for layer: our baseline."""
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            layers.Rescaling(1 / 255),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(1024, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(options.num_classes, activation="softmax", dtype="float32"),
        ],
        name="tutorial",
    )


def cnn(options: ModelOptions) -> keras.Model:
    """A VGG-style CNN: four stages of 3×3 conv + BN + ReLU (two each by default), each halving the resolution."""
    inputs = keras.Input(INPUT_SHAPE)
    x = layers.Rescaling(1 / 255)(inputs)
    for stage, (filters, convs) in enumerate(zip((32, 64, 128, 256), options.stage_convs, strict=True)):
        channels = max(8, int(filters * options.width))
        for conv in range(convs):
            x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"stage{stage}_conv{conv}")(x)
            x = layers.BatchNormalization(name=f"stage{stage}_bn{conv}")(x)
            x = layers.ReLU(name=f"stage{stage}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(options.dropout)(x)
    outputs = layers.Dense(options.num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="cnn")


def mobilenet(options: ModelOptions) -> keras.Model:
    """MobileNetV2 from scratch (no downloaded weights), grey input resized to `input_size` inside the model."""
    inputs = keras.Input(INPUT_SHAPE)
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    if options.input_size != INPUT_SHAPE[0]:
        x = layers.Resizing(options.input_size, options.input_size, interpolation="bilinear")(x)
    backbone = keras.applications.MobileNetV2(
        input_shape=(options.input_size, options.input_size, 1),
        alpha=options.width,
        include_top=False,
        weights=None,
    )
    for layer in backbone.layers:  # Keras' 0.999 suits ImageNet-length epochs; FER-2013 has 450 steps each
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.99
    x = backbone(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(options.dropout)(x)
    outputs = layers.Dense(options.num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"mobilenet_v2_{options.width:g}_{options.input_size}")


ARCHITECTURES: dict[str, Callable[[ModelOptions], keras.Model]] = {
    "cnn": cnn,
    "tutorial": tutorial,
    "mobilenet": mobilenet,
}


def with_flip_average(model: keras.Model) -> keras.Model:
    """The same network scoring a face and its mirror image, averaged: test-time flip inside the graph, as one
    call on the faces and their mirrors stacked into a batch twice as long, so the exported model keeps the
    one-face contract and the interpreter runs each layer once."""
    inputs = keras.Input(INPUT_SHAPE)
    both = keras.ops.concatenate([inputs, keras.ops.flip(inputs, axis=2)], axis=0)
    scores = keras.ops.reshape(model(both), (2, -1, model.output_shape[-1]))  # [faces, mirrors]
    return keras.Model(inputs, keras.ops.mean(scores, axis=0), name=f"{model.name}_flip_average")


def view_matrix(crop: int, sigma: float) -> np.ndarray:
    """The 48×48 map one image axis goes through in the view: keep the central `crop` pixels (offset as Keras's
    CenterCrop), scale them back up to 48 bilinearly (half-pixel centres, as cv2 and tf.image), then soften by a
    Gaussian of `sigma` pixels with the edges mirrored (0: none)."""
    side = INPUT_SHAPE[0]
    if not 24 <= crop <= side:
        raise ValueError(f"expected 24-{side} pixels, got {crop}")
    if not 0.0 <= sigma <= 2.0:
        raise ValueError(f"expected 0-2 pixels, got {sigma:g}")
    offset = (side - crop) // 2
    scale_up = np.zeros((side, side))
    for row, source in enumerate(np.clip((np.arange(side) + 0.5) * crop / side - 0.5, 0, crop - 1)):
        low = min(int(source), crop - 2)
        scale_up[row, offset + low: offset + low + 2] = (low + 1 - source, source - low)
    if sigma == 0.0:
        return on_int8_grid(scale_up)
    radius = math.ceil(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    mirrored = np.pad(np.eye(side), ((radius, radius), (0, 0)), mode="symmetric")  # edge pixels repeated outward
    soften = sum(tap * mirrored[shift:shift + side] for shift, tap in enumerate(taps / taps.sum()))
    return on_int8_grid(soften @ scale_up)


def on_int8_grid(matrix: np.ndarray) -> np.ndarray:
    """Each row of a non-negative map with rows summing to 1, moved to the nearest multiples of 1/N (N integer,
    largest entry 127/N) that still sum to 1: the per-row int8 scale of the export then holds it exactly, so
    int8 keeps every row's brightness."""
    snapped = np.zeros_like(matrix)
    for row, weights in enumerate(matrix):
        steps = round(127 / weights.max())
        units = weights * steps
        whole = np.round(units)
        whole[weights.argmax()] = 127
        while whole.sum() != steps:  # move the remainder by single steps where rounding erred most
            error = units - whole
            error[weights.argmax()] = 0
            if whole.sum() < steps:
                whole[error.argmax()] += 1
            else:
                whole[np.where(whole > 0, error, np.inf).argmin()] -= 1
        snapped[row] = whole / steps
    return snapped


def with_view(model: keras.Model, *, crop: int = 48, blur: float = 0.0) -> keras.Model:
    """The same network scoring a test-time view of the face: its central `crop`×`crop` pixels scaled back up to
    48×48 (a closer framing than training's), softened by a Gaussian of `blur` pixels (the softness every
    training face has after augmentation's resampling). Both are linear in each axis, so the graph applies them
    as one 48×48 matrix to the rows and then the columns: two small int8 matmuls, one-face contract unchanged."""
    side = INPUT_SHAPE[0]
    if crop == side and blur == 0.0:
        return model
    along_axis = layers.Dense(side, use_bias=False, trainable=False, dtype="float32", name="view")
    inputs = keras.Input(INPUT_SHAPE)
    rows = keras.ops.reshape(along_axis(keras.ops.reshape(inputs, (-1, side))), (-1, side, side))
    columns = along_axis(keras.ops.reshape(keras.ops.transpose(rows, (0, 2, 1)), (-1, side)))
    view = keras.ops.reshape(keras.ops.transpose(keras.ops.reshape(columns, (-1, side, side)), (0, 2, 1)),
                             (-1, *INPUT_SHAPE))
    along_axis.set_weights([view_matrix(crop, blur).T.astype(np.float32)])
    name = model.name + ("_blurred" if blur else "") + (f"_crop{crop}" if crop != side else "")
    return keras.Model(inputs, model(view), name=name)


def with_views(model: keras.Model, *, center_crop: int = 48, blur: float = 0.0,
               flip_average: bool = False) -> keras.Model:
    """The test-time views in their one order: crop the face, soften the crop, then average it with its mirror."""
    model = with_view(model, crop=center_crop, blur=blur)
    return with_flip_average(model) if flip_average else model


def load_float32(path) -> keras.Model:
    """Load a checkpoint with every layer computing in float32, whatever precision it was trained in."""
    return load_computing_in(path, "float32")


def load_computing_in(path, policy: str) -> keras.Model:
    """Load a checkpoint with every layer computing in `policy` (float32, mixed_bfloat16, ...); weights unchanged."""
    trained = keras.models.load_model(path)
    model = trained.__class__.from_config(_policy_config(trained.get_config(), policy))
    model.set_weights(trained.get_weights())
    return model


def _policy_config(node, policy: str):
    if isinstance(node, dict):
        if node.get("class_name") == "InputLayer":
            policy = "float32"  # inputs take a plain dtype, not a mixed policy
        return {key: policy if key == "dtype" and _is_policy(value) else _policy_config(value, policy)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_policy_config(value, policy) for value in node]
    return node


def _is_policy(value) -> bool:
    return isinstance(value, str) or (isinstance(value, dict) and value.get("class_name") == "DTypePolicy")


def build(arch: str, options: ModelOptions) -> keras.Model:
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: expected one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    return ARCHITECTURES[arch](options)
