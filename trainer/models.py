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


def with_center_crop(model: keras.Model, crop: int) -> keras.Model:
    """The same network scoring the face's central `crop`×`crop` pixels scaled back up to 48×48: a test-time
    view inside the graph (a closer framing than the crop the model is given), one-face contract unchanged."""
    side = INPUT_SHAPE[0]
    if not 24 <= crop <= side:
        raise ValueError(f"expected 24-{side} pixels, got {crop}")
    if crop == side:
        return model
    inputs = keras.Input(INPUT_SHAPE)
    view = layers.Resizing(side, side, interpolation="bilinear")(layers.CenterCrop(crop, crop)(inputs))
    return keras.Model(inputs, model(view), name=f"{model.name}_crop{crop}")


def with_blur(model: keras.Model, sigma: float) -> keras.Model:
    """The same network scoring the face softened by a Gaussian of `sigma` pixels: a test-time view inside the
    graph that gives a sharp face the softness every training face has after augmentation's resampling steps."""
    if not 0.0 <= sigma <= 2.0:
        raise ValueError(f"expected 0-2 pixels, got {sigma:g}")
    if sigma == 0.0:
        return model
    radius = math.ceil(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    inputs = keras.Input(INPUT_SHAPE)
    padded = keras.ops.pad(inputs, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="symmetric")
    blur = layers.DepthwiseConv2D(2 * radius + 1, use_bias=False, trainable=False, name="blur")
    view = blur(padded)
    blur.set_weights([np.outer(taps, taps)[:, :, None, None]])
    return keras.Model(inputs, model(view), name=f"{model.name}_blurred")


def with_views(model: keras.Model, *, center_crop: int = 48, blur: float = 0.0,
               flip_average: bool = False) -> keras.Model:
    """The test-time views in their one order: crop the face, soften the crop, then average it with its mirror."""
    model = with_center_crop(with_blur(model, blur), center_crop)
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
